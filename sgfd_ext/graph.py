"""The normalised user-item graph and a propagation whose backward stays a forward product."""

from __future__ import annotations

import warnings

import numpy as np
import torch


def normalized_adjacency(train: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph over users then items, as sparse CSR."""
    u = torch.from_numpy(np.ascontiguousarray(train[:, 0]))
    i = torch.from_numpy(np.ascontiguousarray(train[:, 1])) + n_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    n = n_users + n_items
    deg = torch.bincount(rows, minlength=n).to(torch.float32)
    inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    values = inv_sqrt[rows] * inv_sqrt[cols]
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n),
                                  check_invariants=True).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return adj.to_sparse_csr()


class _SymmetricPropagate(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the backward is again ``A @ grad``.

    Written out so the backward is a plain sparse-dense product; the generic sparse backward
    of PyTorch is many times slower on few CPU threads.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad


def propagate(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One graph-convolution step with a symmetric normalised adjacency.

    Under autocast it keeps the adjacency's precision (no bfloat16 sparse CPU kernel).
    """
    with torch.autocast(x.device.type, enabled=False):
        return _SymmetricPropagate.apply(adj, x.to(adj.dtype))
