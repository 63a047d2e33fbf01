"""Deterministic stand-in item features and labels for datasets whose feature files are private.

Labels are clusters of items by their training users (real categories also group items that
the same people buy), and each modality's features are a class centroid plus a projection of
the item's training profile plus noise, so both the labels and part of the collaborative signal
can be learnt from them. Image features are nonnegative like ReLU CNN outputs; text features are
signed like BERT outputs. Sizes follow the paper: 4096-d image, 768-d text.

Limitation: the stand-ins know nothing beyond the training interactions, so results on them say
whether the pipeline works, not how much real image or text content would help.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

CLASS_COUNTS = {"office": 54, "clothing": 26, "toys": 19, "menclothing": 26}
FEATURE_DIMS = {"image": 4096, "text": 768}
NOISE = {"image": 2.0, "text": 3.0}
MISLABELLED = 0.1
PROFILE_RANK = 32
KMEANS_STEPS = 20


def _profiles(train: np.ndarray, n_users: int, n_items: int, rng: np.random.Generator):
    """Unit-length low-rank item profiles from the training matrix; zero for unseen items.

    The leading singular directions come from a seeded randomised range finder (one power
    step), which is repeatable and far cheaper than an exact sparse SVD.
    """
    x = sp.csr_matrix((np.ones(len(train)), (train[:, 1], train[:, 0])), shape=(n_items, n_users))
    x.data[:] = 1.0
    rank = min(PROFILE_RANK, *x.shape)
    basis = x @ (x.T @ (x @ rng.standard_normal((n_users, rank + 8))))
    basis, _ = np.linalg.qr(basis)
    u, s, _ = np.linalg.svd(basis.T @ x, full_matrices=False)
    z = (basis @ u[:, :rank]) * s[:rank]
    z *= np.sign(z[np.abs(z).argmax(axis=0), np.arange(z.shape[1])])
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 1e-12)


def _cluster(z: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means labels; items without a profile get a random class."""
    seen = np.flatnonzero(np.linalg.norm(z, axis=1) > 0)
    labels = rng.integers(n_classes, size=len(z))
    if len(seen) < n_classes:
        return labels
    centres = z[rng.choice(seen, n_classes, replace=False)]
    for _ in range(KMEANS_STEPS):
        assign = (z[seen] @ centres.T).argmax(axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, z[seen])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] < 1e-12
        sums[empty] = z[rng.choice(seen, int(empty.sum()), replace=False)]
        norms[empty] = 1.0
        centres = sums / norms
    labels[seen] = (z[seen] @ centres.T).argmax(axis=1)
    return labels


def _modality(z, labels, n_classes, dim, noise, nonnegative, rng) -> np.ndarray:
    """Centroid of the (sometimes wrong) class + projected profile + Gaussian noise."""
    centroids = rng.standard_normal((n_classes, dim), dtype=np.float32)
    projection = rng.standard_normal((z.shape[1], dim), dtype=np.float32)
    shown = np.where(
        rng.random(len(labels)) < MISLABELLED, rng.integers(n_classes, size=len(labels)), labels
    )
    out = np.empty((len(labels), dim), dtype=np.float32)
    for start in range(0, len(labels), 1024):
        rows = slice(start, start + 1024)
        block = centroids[shown[rows]] + z[rows].astype(np.float32) @ projection
        block += noise * rng.standard_normal(block.shape, dtype=np.float32)
        out[rows] = np.maximum(block, 0.0) if nonnegative else block
    return out


def generate_features(
    name: str,
    train: np.ndarray,
    n_users: int,
    n_items: int,
    n_classes: int | None = None,
    dims: dict[str, int] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Stand-in features per modality, labels and class count for one dataset.

    The result depends only on the dataset name and the training pairs given, so runs are
    repeatable. ``n_classes`` defaults to the paper's count for the dataset (26 for menclothing,
    as for the paper's Clothing).
    """
    n_classes = n_classes or CLASS_COUNTS.get(name, 20)
    dims = dims or FEATURE_DIMS
    rng = np.random.default_rng(zlib.crc32(name.encode()))

    z = _profiles(train, n_users, n_items, rng)
    labels = _cluster(z, n_classes, rng)
    features = {
        m: _modality(z, labels, n_classes, d, NOISE.get(m, 2.0), m == "image", rng)
        for m, d in dims.items()
    }

    log.info(
        "%s: generated stand-in features (%s) and %d classes; outputs must say features are "
        "generated",
        name,
        ", ".join(f"{m} {d}-d" for m, d in dims.items()),
        n_classes,
    )
    return features, labels.astype(np.int64), n_classes
