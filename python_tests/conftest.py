"""Shared fixtures: small synthetic datasets."""

from __future__ import annotations

import numpy as np
import pytest

from sgfd_ext.data.dataset import Dataset


def synthetic_dataset(n_users: int = 60, n_items: int = 80, n_classes: int = 4,
                      seed: int = 0) -> Dataset:
    """A small dataset with clustered preferences, so a model can learn something real."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_items)
    taste = rng.integers(0, n_classes, n_users)
    pairs = []
    for u in range(n_users):
        liked = np.flatnonzero(labels == taste[u])
        other = rng.choice(n_items, 2, replace=False)
        items = np.unique(np.concatenate([rng.choice(liked, min(len(liked), 8), replace=False),
                                          other]))
        rng.shuffle(items)
        pairs.append(np.stack([np.full(len(items), u), items], 1))
    train, valid, test = [], [], []
    for p in pairs:
        n = len(p)
        train.append(p[: n - 3])
        valid.append(p[n - 3 : n - 2])
        test.append(p[n - 2 :])
    centroids = rng.normal(size=(n_classes, 24))
    features = {
        "text": (centroids[labels] + 0.3 * rng.normal(size=(n_items, 24))).astype(np.float32),
        "image": rng.random((n_items, 40)).astype(np.float32),
    }
    return Dataset("synthetic", n_users, n_items, np.concatenate(train), np.concatenate(valid),
                   np.concatenate(test), features, labels, n_classes, "generated")


@pytest.fixture
def tiny_dataset() -> Dataset:
    return synthetic_dataset()
