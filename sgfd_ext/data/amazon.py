"""Reader for the Amazon datasets in the layout released with the SGFD paper.

A dataset folder holds ``train.csv`` and ``test.csv`` (columns ``itemID,userID,reviewerID,asin``,
0-based ids, one interaction per row, LF or CRLF line ends), ``FeatureImage_normal.npy``
(items x 4096), ``FeatureText_normal.npy`` (items x 768) and ``MetaData_normal.npy`` (one
integer category per item). Users and items are counted as max id + 1 over train and test.
The validation split is carved out of train per user by :func:`carve_validation` (10% of a
user's training items, rounded half up, at least one; none for users with fewer than 3).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sgfd_ext.data.checks import (
    DataError,
    check_features,
    check_id_range,
    check_labels,
    count_ids,
    drop_duplicates,
    parse_ints,
    report_test_only_items,
)
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.data.generated import generate_features
from sgfd_ext.data.splits import carve_validation
from sgfd_ext.data.tables import read_table

log = logging.getLogger(__name__)

AMAZON_DATASETS = ("office", "clothing", "toys", "menclothing")
FEATURE_FILES = {"image": "FeatureImage_normal.npy", "text": "FeatureText_normal.npy"}
LABEL_FILE = "MetaData_normal.npy"
ROOT_HINT = (
    "Give the data root with --data-root (data_root= in Python) or the environment variable "
    "SGFD_DATA_ROOT; a dataset is read from <root>/<name> or <root>/amazon/<name>."
)


def data_root(root: str | os.PathLike | None) -> Path | None:
    """The data root: the argument if given, else the environment variable SGFD_DATA_ROOT."""
    root = root if root is not None else os.environ.get("SGFD_DATA_ROOT")
    return Path(root).expanduser() if root else None


def dataset_folder(name: str, root: str | os.PathLike | None) -> Path:
    """The folder of one Amazon dataset under the data root; raises naming the places tried."""
    base = data_root(root)
    if base is None:
        raise DataError(f"dataset {name!r} needs a data root and none was given. {ROOT_HINT}")
    tried = [base / sub / n for sub in ("", "amazon") for n in (name, name.capitalize())]
    for folder in tried:
        if (folder / "train.csv").is_file():
            return folder
    raise DataError(
        f"dataset {name!r}: no folder with train.csv found; tried "
        + ", ".join(str(p) for p in dict.fromkeys(tried))
        + f". {ROOT_HINT}"
    )


def read_interactions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) pairs of one split file and the line number of each row."""
    table = read_table(path, ("itemID", "userID"))
    users = parse_ints(table.columns["userID"], table.lines, path, "userID")
    items = parse_ints(table.columns["itemID"], table.lines, path, "itemID")
    check_id_range(users, table.lines, path, "userID")
    check_id_range(items, table.lines, path, "itemID")
    return np.stack([users, items], axis=1), table.lines


def _missing_features_error(name: str, folder: Path, missing: list[Path]) -> DataError:
    listing = "\n".join(f"  {p}" for p in missing)
    return DataError(
        f"dataset {name!r} in {folder} lacks {len(missing)} item feature file(s):\n{listing}\n"
        "These files are distributed separately from the interaction splits; the expected "
        'layout is described in the README section "Datasets". Put them into that folder, or '
        "pass --generated-features (generated_features=True in Python) to run on generated "
        f"stand-in features. {ROOT_HINT}"
    )


def _load_matrix(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: expected a .npy array, found an unreadable file ({err})") from err


def load_amazon(
    name: str,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    generated_features: bool = False,
    valid_ratio: float = 0.1,
) -> Dataset:
    """Load one Amazon dataset (office, clothing, toys, menclothing) with a seeded validation split.

    Without the three feature files this raises, naming each missing file, unless
    ``generated_features`` is set: then stand-in features and labels of the paper's sizes are
    generated and ``feature_source`` is ``"generated"``.
    """
    folder = dataset_folder(name, root)
    train_path, test_path = folder / "train.csv", folder / "test.csv"
    if not test_path.is_file():
        raise DataError(f"{test_path}: expected the test split next to train.csv, found nothing")

    train, train_lines = read_interactions(train_path)
    test, test_lines = read_interactions(test_path)
    train, _ = drop_duplicates(train, train_lines, train_path)
    test, _ = drop_duplicates(test, test_lines, test_path, seen=train, seen_path=train_path)
    n_users, n_items = count_ids(train, test)
    test_only = report_test_only_items(train, test, test_path)
    train, valid = carve_validation(train, seed, valid_ratio)

    paths = {m: folder / f for m, f in FEATURE_FILES.items()}
    label_path = folder / LABEL_FILE
    missing = [p for p in (*paths.values(), label_path) if not p.is_file()]
    if missing and not generated_features:
        raise _missing_features_error(name, folder, missing)
    if missing:
        features, labels, n_classes = generate_features(name, train, n_users, n_items)
        source = "generated"
    else:
        features = {m: check_features(_load_matrix(p), p, n_items) for m, p in paths.items()}
        labels = check_labels(_load_matrix(label_path), label_path, n_items)
        n_classes = int(labels.max()) + 1
        source = "real"
        if generated_features:
            log.info("%s: feature files found in %s; using them, not generated ones", name, folder)

    info = {
        "folder": str(folder),
        "seed": seed,
        "valid_rule": f"per user {valid_ratio:.0%} of train (half up, >= 1), none below 3 items",
        "test_only_items": test_only.tolist(),
    }
    log.info(
        "%s: %d users, %d items, %d/%d/%d train/valid/test, %d classes, %s features",
        name,
        n_users,
        n_items,
        len(train),
        len(valid),
        len(test),
        n_classes,
        source,
    )
    return Dataset(
        name=name,
        n_users=n_users,
        n_items=n_items,
        train=train,
        valid=valid,
        test=test[np.lexsort((test[:, 1], test[:, 0]))],
        features=features,
        labels=labels,
        n_classes=n_classes,
        feature_source=source,
        info=info,
    )
