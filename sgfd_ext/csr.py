"""Compressed sparse rows of item ids per user, the shape every evaluation op consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CSR:
    """Row ``r`` holds ``indices[indptr[r]:indptr[r + 1]]`` (int64 tensors)."""

    indptr: torch.Tensor
    indices: torch.Tensor

    @property
    def n_rows(self) -> int:
        return self.indptr.numel() - 1

    @staticmethod
    def from_pairs(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> CSR:
        """Build from parallel arrays of (row, column) pairs; columns are sorted within a row."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return CSR(torch.from_numpy(indptr), torch.from_numpy(cols[order].copy()))

    def rows(self, start: int, stop: int) -> CSR:
        """The contiguous block of rows ``start..stop-1`` with offsets rebased to zero."""
        ptr = self.indptr[start : stop + 1]
        base = int(ptr[0])
        return CSR(ptr - base, self.indices[base : int(ptr[-1])])

    def select(self, rows: torch.Tensor) -> CSR:
        """An arbitrary subset of rows, in the given order."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=indptr[1:])
        offsets = torch.repeat_interleave(starts - indptr[:-1], lengths)
        positions = torch.arange(int(indptr[-1]), dtype=torch.int64) + offsets
        return CSR(indptr, self.indices[positions])

    def merge(self, other: CSR) -> CSR:
        """Row-wise union of two CSR sets with the same number of rows (duplicates kept)."""
        rows_a = torch.repeat_interleave(torch.arange(self.n_rows), self.indptr.diff())
        rows_b = torch.repeat_interleave(torch.arange(other.n_rows), other.indptr.diff())
        rows = torch.cat([rows_a, rows_b]).numpy()
        cols = torch.cat([self.indices, other.indices]).numpy()
        return CSR.from_pairs(rows, cols, self.n_rows)

    def to(self, device: torch.device | str) -> CSR:
        return CSR(self.indptr.to(device), self.indices.to(device))
