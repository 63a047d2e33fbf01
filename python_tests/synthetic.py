"""Small random datasets for tests: real structure is not needed, only valid shapes."""

import numpy as np

from sgfd_ext.data.dataset import Dataset


def tiny_dataset(n_users: int = 30, n_items: int = 40, per_user: int = 6, dims=(24, 12),
                 n_classes: int = 4, seed: int = 0) -> Dataset:
    """Users with ``per_user`` distinct items each, split 70/10/20; Gaussian features."""
    rng = np.random.default_rng(seed)
    pairs = np.array([(u, int(i)) for u in range(n_users)
                      for i in rng.choice(n_items, per_user, replace=False)])
    pairs = pairs[rng.permutation(len(pairs))]
    a, b = int(0.7 * len(pairs)), int(0.8 * len(pairs))
    features = {f"m{j}": rng.standard_normal((n_items, d)).astype(np.float32)
                for j, d in enumerate(dims)}
    labels = rng.integers(n_classes, size=n_items)
    return Dataset("tiny", n_users, n_items, pairs[:a], pairs[a:b], pairs[b:], features, labels,
                   n_classes, feature_source="generated")
