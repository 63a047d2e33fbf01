"""One entry point that loads any supported dataset by name."""

from __future__ import annotations

import os

from sgfd_ext.data.amazon import AMAZON_DATASETS, load_amazon
from sgfd_ext.data.checks import DataError
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.data.movielens import NAME as MOVIELENS
from sgfd_ext.data.movielens import load_movielens

ALIASES = {"ml-100k": MOVIELENS}


def known_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, aliases included."""
    return [MOVIELENS, *ALIASES, *AMAZON_DATASETS]


def load_dataset(
    name: str,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    generated_features: bool = False,
) -> Dataset:
    """Load a dataset by name; MovieLens 100K is found or fetched on its own, Amazon ones need a root.

    ``seed`` picks the validation carve-out of the Amazon datasets and ``generated_features``
    lets them run on stand-in features; MovieLens 100K has a fixed chronological split and real
    features, so both are ignored there.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key == MOVIELENS:
        return load_movielens(data_root)
    if key in AMAZON_DATASETS:
        return load_amazon(key, data_root, seed=seed, generated_features=generated_features)
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
