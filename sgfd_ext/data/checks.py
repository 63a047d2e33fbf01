"""Validation of dataset files: every failure names the file, the row, what was expected and found.

Rows of text files are 1-based line numbers (the header is line 1); rows of ``.npy`` matrices are
item ids (0-based), since one row holds one item.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_INTEGER = re.compile(r"[+-]?\d+")
_SHOWN = 5


class DataError(ValueError):
    """A dataset file is missing or does not hold what its layout promises."""


def require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> dict[str, int]:
    """Position of each required column in ``header``; raises when one is absent."""
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path}: line 1 (header): expected columns {', '.join(required)}, "
            f"found {', '.join(header) if header else '<empty line>'} "
            f"(missing: {', '.join(missing)})"
        )
    return {c: list(header).index(c) for c in required}


def parse_ints(values: Sequence[str], lines: np.ndarray, path: Path, column: str) -> np.ndarray:
    """Integer ids of one column as int64; raises on the first value that is not an integer."""
    for k, text in enumerate(values):
        if not _INTEGER.fullmatch(text.strip()):
            raise DataError(
                f"{path}: line {lines[k]}, column {column}: expected an integer id, found {text!r}"
            )
    return np.array([int(v) for v in values], dtype=np.int64)


def parse_floats(values: Sequence[str], lines: np.ndarray, path: Path, column: str) -> np.ndarray:
    """Finite numbers of one column as float64; raises on the first value that is not one."""
    out = np.empty(len(values), dtype=np.float64)
    for k, text in enumerate(values):
        try:
            out[k] = float(text)
        except ValueError:
            out[k] = math.nan
        if not math.isfinite(out[k]):
            raise DataError(
                f"{path}: line {lines[k]}, column {column}: expected a finite number, "
                f"found {text!r}"
            )
    return out


def check_id_range(
    ids: np.ndarray, lines: np.ndarray, path: Path, column: str, upper: int | None = None
) -> None:
    """Ids must be non-negative and, when ``upper`` is given, below it."""
    bad = ids < 0 if upper is None else (ids < 0) | (ids >= upper)
    if bad.any():
        k = int(np.argmax(bad))
        expected = "an id >= 0" if upper is None else f"an id in 0..{upper - 1}"
        raise DataError(
            f"{path}: line {lines[k]}, column {column}: expected {expected}, found {ids[k]}"
        )


def count_ids(*splits: np.ndarray) -> tuple[int, int]:
    """Number of users and items as max id + 1 over all (user, item) splits.

    Ids inside that range that occur in no split are kept (they would shift every later id if
    dropped) and reported in a warning.
    """
    pairs = np.concatenate([s.reshape(-1, 2) for s in splits])
    if len(pairs) == 0:
        raise DataError("expected at least one interaction, found none in any split")
    n_users, n_items = (int(pairs[:, j].max()) + 1 for j in range(2))
    for j, what, n in ((0, "user", n_users), (1, "item", n_items)):
        unused = np.setdiff1d(np.arange(n), pairs[:, j])
        if len(unused):
            log.warning(
                "%d %s ids in 0..%d occur in no split (first: %s); they are kept without "
                "interactions",
                len(unused),
                what,
                n - 1,
                ", ".join(map(str, unused[:_SHOWN])),
            )
    return n_users, n_items


def drop_duplicates(
    pairs: np.ndarray,
    lines: np.ndarray,
    path: Path,
    seen: np.ndarray | None = None,
    seen_path: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (user, item) rows, keeping the first; a warning names the file and rows.

    With ``seen`` (pairs of another file, e.g. train for test) rows repeating one of those pairs
    are dropped as well, so no pair is held out and trained on at once.
    """
    key = pairs[:, 0].astype(np.int64) * (int(pairs[:, 1].max(initial=0)) + 1) + pairs[:, 1]
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(pairs), dtype=bool)
    keep[first] = True
    if not keep.all():
        dropped = lines[~keep]
        log.warning(
            "%s: %d duplicate (user, item) rows dropped (the first occurrence is kept); "
            "first at lines %s",
            path,
            len(dropped),
            ", ".join(map(str, dropped[:_SHOWN])),
        )
    if seen is not None and len(seen) and len(pairs):
        view = np.dtype([("u", np.int64), ("i", np.int64)])
        ours = np.ascontiguousarray(pairs, dtype=np.int64).view(view).ravel()
        theirs = np.ascontiguousarray(seen, dtype=np.int64).view(view).ravel()
        overlap = np.isin(ours, theirs) & keep
        if overlap.any():
            log.warning(
                "%s: %d rows repeat a (user, item) pair of %s and were dropped; first at lines %s",
                path,
                int(overlap.sum()),
                seen_path,
                ", ".join(map(str, lines[overlap][:_SHOWN])),
            )
            keep &= ~overlap
    return pairs[keep], lines[keep]


def report_test_only_items(train: np.ndarray, test: np.ndarray, path: Path) -> np.ndarray:
    """Items that occur in the test file but never in train; a warning names how many and which."""
    only = np.setdiff1d(np.unique(test[:, 1]), train[:, 1])
    if len(only):
        log.warning(
            "%s: %d items occur only in the test split (ids %s%s); they stay in the catalogue "
            "without training interactions",
            path,
            len(only),
            ", ".join(map(str, only[:_SHOWN])),
            ", ..." if len(only) > _SHOWN else "",
        )
    return only


def check_features(matrix: np.ndarray, path: Path, n_items: int) -> np.ndarray:
    """An item feature matrix: 2-D, one row per item, finite; returned as float32."""
    if matrix.ndim != 2:
        raise DataError(
            f"{path}: expected a 2-D matrix (items x dims), found shape {tuple(matrix.shape)}"
        )
    if matrix.shape[0] != n_items:
        raise DataError(
            f"{path}: expected {n_items} rows (one per item, max item id + 1 over train.csv and "
            f"test.csv), found {matrix.shape[0]}"
        )
    if not np.issubdtype(matrix.dtype, np.number) or np.iscomplexobj(matrix):
        raise DataError(f"{path}: expected real numbers, found dtype {matrix.dtype}")
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise DataError(
            f"{path}: row {row} (item {row}, 0-based), column {col}: expected a finite number, "
            f"found {matrix[row, col]}"
        )
    return np.ascontiguousarray(matrix, dtype=np.float32)


def check_labels(labels: np.ndarray, path: Path, n_items: int, n_classes: int | None = None):
    """One integer class per item in ``0..n_classes-1`` (``n_classes`` defaults to max + 1)."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != n_items:
        raise DataError(
            f"{path}: expected {n_items} labels (one per item), found shape {tuple(labels.shape)}"
        )
    if not np.issubdtype(labels.dtype, np.number) or np.iscomplexobj(labels):
        raise DataError(f"{path}: expected integer class labels, found dtype {labels.dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{path}: row {row} (item {row}, 0-based): expected an integer class, "
                f"found {labels[row]}"
            )
    labels = labels.astype(np.int64)
    bad = labels < 0 if n_classes is None else (labels < 0) | (labels >= n_classes)
    if bad.any():
        row = int(np.argmax(bad))
        expected = "a class >= 0" if n_classes is None else f"a class in 0..{n_classes - 1}"
        raise DataError(
            f"{path}: row {row} (item {row}, 0-based): expected {expected}, found {labels[row]}"
        )
    return labels
