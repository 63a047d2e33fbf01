"""One entry point that loads any supported dataset by name."""

from __future__ import annotations

import os
from pathlib import Path

from sgfd_ext.data.amazon import AMAZON_DATASETS, load_amazon
from sgfd_ext.data.checks import DataError
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.data.mmrec import load_mmrec
from sgfd_ext.data.movielens import NAME as MOVIELENS
from sgfd_ext.data.movielens import load_movielens

ALIASES = {"ml-100k": MOVIELENS}


def known_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, aliases included."""
    return [MOVIELENS, *ALIASES, *AMAZON_DATASETS]


def mmrec_folder(name: str, data_root: str | os.PathLike | None) -> Path | None:
    """``<root>/<name>`` when it holds ``<name>.inter`` (the MMRec layout), else None."""
    root = data_root if data_root is not None else os.environ.get("SGFD_DATA_ROOT")
    if not root:
        return None
    folder = Path(root).expanduser() / name
    return folder if (folder / f"{name}.inter").is_file() else None


def load_dataset(
    name: str,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    generated_features: bool = False,
    labels_path: str | None = None,
    n_clusters: int | None = None,
) -> Dataset:
    """Load a dataset by name; MovieLens 100K is found or fetched on its own, others need a root.

    ``seed`` picks the validation carve-out of the Amazon datasets and ``generated_features``
    lets them run on stand-in features; MovieLens 100K has a fixed chronological split and real
    features, so both are ignored there. Any other name is looked up as an MMRec-layout folder
    ``<root>/<name>`` (labels from ``labels_path``, else k-means with ``n_clusters``).
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key == MOVIELENS:
        return load_movielens(data_root)
    if key in AMAZON_DATASETS:
        return load_amazon(key, data_root, seed=seed, generated_features=generated_features)
    folder = mmrec_folder(name, data_root)
    if folder is not None:
        return load_mmrec(str(folder), name, seed=seed, labels_path=labels_path,
                          n_clusters=n_clusters)
    raise DataError(
        f"unknown dataset {name!r}; known: {', '.join(known_datasets())}, or a folder "
        f"<data root>/{name} holding {name}.inter in the MMRec layout"
    )
