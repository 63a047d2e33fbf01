"""Datasets: the in-memory container and the readers for each supported layout."""

from sgfd_ext.data.checks import DataError
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.data.registry import known_datasets, load_dataset

__all__ = ["DataError", "Dataset", "known_datasets", "load_dataset"]
