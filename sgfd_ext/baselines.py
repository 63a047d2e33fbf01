"""Training-free baselines: most-popular items and item-based nearest neighbours (ItemKNN).

Both rank every item for every user with the known items excluded, through the same block
loop and top-K op as the trained models, so their numbers are directly comparable.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from sgfd_ext.csr import CSR
from sgfd_ext.evaluation import evaluate_embeddings, evaluate_scores


def most_popular(
    train: CSR, n_items: int, exclude: CSR, target: CSR, ks: tuple[int, ...]
) -> dict[str, float]:
    """The most-popular-items baseline: every user gets the items with most training users."""
    counts = torch.bincount(train.indices, minlength=n_items).to(torch.float32)
    user_emb = torch.ones(exclude.n_rows, 1)
    return evaluate_embeddings(user_emb, counts[:, None], exclude, target, ks)


def _dense_rows(matrix: CSR, n_cols: int) -> torch.Tensor:
    """The rows of a CSR block as a dense 0/1 float matrix."""
    dense = torch.zeros(matrix.n_rows, n_cols)
    rows = torch.repeat_interleave(torch.arange(matrix.n_rows), matrix.indptr.diff())
    dense[rows, matrix.indices] = 1.0
    return dense


def item_knn_weights(train: CSR, n_items: int, neighbours: int = 100,
                     shrink: float = 0.0) -> torch.Tensor:
    """Item-to-item weights ``W`` (n_items x n_items) of cosine ItemKNN.

    ``W[i, j]`` is the cosine similarity of items ``i`` and ``j`` over their training users,
    ``co(i, j) / (sqrt(n_i n_j) + shrink)``, kept only where ``i`` is one of the ``neighbours``
    items most similar to ``j`` (an item is not its own neighbour). A user's score for ``j`` is
    the sum of ``W[i, j]`` over the items ``i`` they interacted with.

    Limitation: ``W`` is dense, so memory grows with the square of the item count (about 2 GB
    at 23,000 items).
    """
    r = scipy.sparse.csr_matrix(
        (np.ones(train.indices.numel(), dtype=np.float32), train.indices.numpy(),
         train.indptr.numpy()), shape=(train.n_rows, n_items))
    co = torch.from_numpy((r.T @ r).toarray())
    norms = torch.bincount(train.indices, minlength=n_items).to(torch.float32).sqrt()
    sim = co / (norms[:, None] * norms[None, :] + shrink + 1e-6)
    sim.fill_diagonal_(0.0)
    k = min(neighbours, n_items)
    values, index = sim.topk(k, dim=0)
    return torch.zeros_like(sim).scatter_(0, index, values)


def item_knn(
    train: CSR, n_items: int, exclude: CSR, target: CSR, ks: tuple[int, ...],
    neighbours: int = 100, shrink: float = 0.0, batch_size: int = 1024,
) -> dict[str, float]:
    """Cosine ItemKNN (see :func:`item_knn_weights`) evaluated by full ranking."""
    weights_t = item_knn_weights(train, n_items, neighbours, shrink).t().contiguous()

    def user_block(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _dense_rows(train.rows(start, stop), n_items), weights_t

    return evaluate_scores(user_block, exclude, target, ks, batch_size)
