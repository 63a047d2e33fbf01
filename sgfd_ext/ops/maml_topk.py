"""Top-K items under MAML's attentive distance, fused with the full-ranking item scan."""

from __future__ import annotations

import math

import torch

from sgfd_ext.csr import CSR
from sgfd_ext.ops.kernels import get_kernels

# Bound on the users x items x width temporaries of the reference, in elements.
_REFERENCE_ELEMENTS = 1 << 24


def attentive_distance(
    hidden: torch.Tensor, user_emb: torch.Tensor, item_emb: torch.Tensor,
    w2: torch.Tensor, b2: torch.Tensor,
) -> torch.Tensor:
    """MAML's distance for broadcastable (user, item) pairs, given the first attention layer's
    pre-activation ``hidden``: dimensions weighted by ``d * softmax(w2 tanh(hidden) + b2)``."""
    d = user_emb.shape[-1]
    weight = d * torch.softmax(torch.tanh(hidden) @ w2.T + b2, dim=-1)
    return (weight * (user_emb - item_emb).pow(2)).sum(-1)


def maml_topk(
    user_hidden: torch.Tensor,
    user_emb: torch.Tensor,
    item_hidden: torch.Tensor,
    item_emb: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    exclude: CSR,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` items of least attentive distance per user, excluded items never ranked.

    ``user_hidden`` [B, a] and ``item_hidden`` [I, a] are the user and item parts of the first
    attention layer (bias in the user part). Returns ``top_items`` (int64 [B, k], best first,
    ties to the lower item index, -1 past the last candidate) and ``top_scores`` (minus the
    distance; -inf past the last candidate).
    """
    if get_kernels() == "reference":
        return maml_topk_reference(user_hidden, user_emb, item_hidden, item_emb, w2, b2,
                                   exclude, k)
    return torch.ops.sgfd_ext.maml_topk(
        user_hidden.detach(), user_emb.detach(), item_hidden.detach(), item_emb.detach(),
        w2.detach(), b2.detach(), exclude.indptr, exclude.indices, int(k),
    )


@torch.library.register_fake("sgfd_ext::maml_topk")
def _maml_topk_fake(user_hidden, user_emb, item_hidden, item_emb, w2, b2, exclude_indptr,
                    exclude_indices, k):
    torch._check(k >= 1, lambda: f"k must be at least 1, got {k}")
    torch._check(user_emb.dim() == 2 and item_emb.dim() == 2, lambda: "embeddings must be 2-D")
    n_users = user_emb.shape[0]
    return (user_emb.new_empty((n_users, k), dtype=torch.int64),
            user_emb.new_empty((n_users, k)))


def _check_inputs(user_hidden, user_emb, item_hidden, item_emb, w2, b2, exclude, k) -> None:
    tensors = (user_hidden, user_emb, item_hidden, item_emb, w2, b2)
    if user_emb.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"user_emb must be float32 or float64, got {user_emb.dtype}")
    if any(t.dtype != user_emb.dtype for t in tensors):
        raise ValueError("every float argument must have the dtype of user_emb")
    (n_users, d), (n_items, a) = user_emb.shape, item_hidden.shape
    shapes = ((user_hidden, (n_users, a)), (item_emb, (n_items, d)), (w2, (d, a)), (b2, (d,)))
    for t, shape in shapes:
        if tuple(t.shape) != shape:
            raise ValueError(f"expected shape {shape}, got {tuple(t.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if exclude.indptr.numel() != n_users + 1 or int(exclude.indptr[-1]) != exclude.indices.numel():
        raise ValueError("exclude must have one row per user")
    if exclude.indices.numel() and not 0 <= int(exclude.indices.min()) <= int(
            exclude.indices.max()) < n_items:
        raise ValueError(f"exclude indices must lie in [0, {n_items})")
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise ValueError("inputs contain NaN or infinite values")


@torch.no_grad()
def maml_topk_reference(
    user_hidden: torch.Tensor,
    user_emb: torch.Tensor,
    item_hidden: torch.Tensor,
    item_emb: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    exclude: CSR,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch version of ``maml_topk``: the score matrix of a block of users at a time,
    then a stable sort."""
    _check_inputs(user_hidden, user_emb, item_hidden, item_emb, w2, b2, exclude, k)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    width = max(item_hidden.shape[1], user_emb.shape[1])
    block = max(1, _REFERENCE_ELEMENTS // max(1, n_items * width))
    top_items = torch.full((n_users, k), -1, dtype=torch.int64, device=user_emb.device)
    top_scores = user_emb.new_full((n_users, k), -math.inf)
    keep = min(k, n_items)
    for start in range(0, n_users, block):
        stop = min(n_users, start + block)
        hidden = user_hidden[start:stop, None, :] + item_hidden[None, :, :]
        scores = -attentive_distance(hidden, user_emb[start:stop, None, :], item_emb[None], w2, b2)
        rows = exclude.rows(start, stop)
        owner = torch.repeat_interleave(torch.arange(stop - start, device=scores.device),
                                        rows.indptr.diff())
        scores[owner, rows.indices] = -math.inf

        values, order = torch.sort(scores, dim=1, descending=True, stable=True)
        values, order = values[:, :keep], order[:, :keep]
        top_items[start:stop, :keep] = torch.where(values > -math.inf, order, -1)
        top_scores[start:stop, :keep] = values
    return top_items, top_scores
