"""The user-item graph: the normalised adjacency with its propagation, and edge-weighted
products over the distinct user-item edges, each with a backward made of forward products."""

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


def segment_softmax(scores: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` taken separately over the entries of each segment id."""
    peak = scores.new_full((n_segments,), float("-inf"))
    peak = peak.scatter_reduce(0, segment, scores.detach(), "amax", include_self=True)
    e = (scores - peak[segment]).exp()
    total = scores.new_zeros(n_segments).index_add(0, segment, e)
    return e / total[segment]



class _Pattern:
    """The CSR layout of one direction of a bipartite edge list: ``order[k]`` is the edge stored
    at CSR position ``k``."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
        self.order = torch.argsort(rows * n_cols + cols)
        self.crow = torch.zeros(n_rows + 1, dtype=torch.int64)
        self.crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
        self.col = cols[self.order]
        self.shape = (n_rows, n_cols)

    def to(self, device: torch.device) -> _Pattern:
        for name in ("order", "crow", "col"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The sparse matrix whose entry for edge ``e`` is ``values[e]``."""
        return torch.sparse_csr_tensor(self.crow, self.col, values[self.order], self.shape,
                                       check_invariants=False)

    def sample(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``<a[row_e], b[col_e]>`` for every edge ``e``, without gathering rows per edge."""
        zeros = self.matrix(a.new_zeros(self.order.numel()))
        stored = torch.sparse.sampled_addmm(zeros, a, b.T, beta=0.0).values()
        return torch.empty_like(stored).index_copy_(0, self.order, stored)


class _Aggregate(torch.autograd.Function):
    """``out[r] = sum over edges e into r of weight[e] * x[col_e]``; both gradients are again
    sparse products."""

    @staticmethod
    def forward(ctx, weight, x, fwd: _Pattern, bwd: _Pattern):
        ctx.save_for_backward(weight, x)
        ctx.patterns = (fwd, bwd)
        return fwd.matrix(weight) @ x

    @staticmethod
    def backward(ctx, grad):
        weight, x = ctx.saved_tensors
        fwd, bwd = ctx.patterns
        grad_w = fwd.sample(grad, x) if ctx.needs_input_grad[0] else None
        grad_x = bwd.matrix(weight) @ grad if ctx.needs_input_grad[1] else None
        return grad_w, grad_x, None, None


class _EdgeDot(torch.autograd.Function):
    """``<a[row_e], b[col_e]>`` per edge, with sparse-product gradients."""

    @staticmethod
    def forward(ctx, a, b, fwd: _Pattern, bwd: _Pattern):
        ctx.save_for_backward(a, b)
        ctx.patterns = (fwd, bwd)
        return fwd.sample(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        fwd, bwd = ctx.patterns
        grad_a = fwd.matrix(grad) @ b if ctx.needs_input_grad[0] else None
        grad_b = bwd.matrix(grad) @ a if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None


class BipartiteEdges:
    """Distinct user-item edges (sorted by user, then item) and the edge-weighted products of
    graph refinement, computed as sparse products.

    On a few CPU threads, gathering one row per edge and scattering it back (``index_select``
    then ``index_add``) costs many times more than these products.
    """

    def __init__(self, train: np.ndarray, n_users: int, n_items: int):
        pairs = torch.from_numpy(np.unique(np.asarray(train, dtype=np.int64).reshape(-1, 2), axis=0))
        self.user, self.item = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
        self.n_users, self.n_items = n_users, n_items
        self._to_users = _Pattern(self.user, self.item, n_users, n_items)
        self._to_items = _Pattern(self.item, self.user, n_items, n_users)

    def to(self, device: torch.device | str) -> BipartiteEdges:
        device = torch.device(device)
        self.user, self.item = self.user.to(device), self.item.to(device)
        self._to_users.to(device)
        self._to_items.to(device)
        return self

    def dot(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``<users[u_e], items[i_e]>`` for every edge ``e``."""
        return _EdgeDot.apply(users, items, self._to_users, self._to_items)

    def to_users(self, weight: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Per user, the sum of ``weight[e] * items[i_e]`` over its edges."""
        return _Aggregate.apply(weight, items, self._to_users, self._to_items)

    def to_items(self, weight: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Per item, the sum of ``weight[e] * users[u_e]`` over its edges."""
        return _Aggregate.apply(weight, users, self._to_items, self._to_users)
