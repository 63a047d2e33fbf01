"""Per-user splitting rules: a seeded validation carve-out and a chronological split."""

from __future__ import annotations

import numpy as np


def _rank_within_user(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by user: each row's position inside its user's block, and block sizes."""
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(len(users)) - starts[users], counts


def _by_user_item(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def carve_validation(
    train: np.ndarray, seed: int, ratio: float = 0.1, min_items: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Move a random part of each user's training pairs into a validation split.

    A user with ``n >= min_items`` training pairs gives ``max(1, floor(ratio * n + 0.5))`` of them
    (at most ``n - 1``); users with fewer give none. The choice depends only on the seed and the
    set of pairs, not on their order in the file. Both outputs are sorted by (user, item).
    """
    train = _by_user_item(train)
    rng = np.random.default_rng(seed)
    keys = rng.random(len(train))
    order = np.lexsort((keys, train[:, 0]))
    shuffled = train[order]

    rank, counts = _rank_within_user(shuffled[:, 0])
    n_valid = np.maximum(1, np.floor(ratio * counts + 0.5 + 1e-9).astype(np.int64))
    n_valid = np.where(counts >= min_items, np.minimum(n_valid, counts - 1), 0)
    is_valid = rank < n_valid[shuffled[:, 0]]

    return _by_user_item(shuffled[~is_valid]), _by_user_item(shuffled[is_valid])


def split_counts(n: np.ndarray, valid_ratio: float, test_ratio: float) -> tuple[np.ndarray, ...]:
    """Sizes (train, valid, test) of a ratio split of ``n`` interactions per user.

    Test and validation get ``floor(ratio * n)``; a user whose share would round down to zero
    still gives one, test first, as long as at least two stay in train. This is the rounding of
    RecBole's ratio split, so numbers stay comparable with it.
    """
    n = np.asarray(n, dtype=np.int64)
    n_test = np.floor(test_ratio * n + 1e-9).astype(np.int64)
    n_valid = np.floor(valid_ratio * n + 1e-9).astype(np.int64)
    n_train = n - n_test - n_valid
    for part, ratio in ((n_test, test_ratio), (n_valid, valid_ratio)):
        top_up = (part == 0) & (ratio * n > 0) & (n_train > 1)
        part += top_up
        n_train -= top_up
    return n_train, n_valid, n_test


def chronological_split(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.2,
    ties: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, ordered by time: oldest part train, then valid, latest test.

    Equal timestamps are ordered by ``ties`` (for example the rows' line numbers in the raw
    file), else by item id. Sizes follow :func:`split_counts`. Returns three (n, 2) int64
    arrays of (user, item) pairs.
    """
    order = np.lexsort((items if ties is None else ties, times, users))
    users, items = users[order], items[order]
    rank, counts = _rank_within_user(users)
    n_train, n_valid, _ = split_counts(counts, valid_ratio, test_ratio)
    cut1 = n_train[users]
    cut2 = cut1 + n_valid[users]
    pairs = np.stack([users, items], axis=1).astype(np.int64)
    return pairs[rank < cut1], pairs[(rank >= cut1) & (rank < cut2)], pairs[rank >= cut2]
