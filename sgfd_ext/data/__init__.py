"""Datasets: the in-memory container and the readers for each supported layout."""

from sgfd_ext.data.dataset import Dataset

__all__ = ["Dataset"]
