"""Full-ranking top-K evaluation: ranked items and Recall/NDCG/Precision/Hit per user and K."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sgfd_ext.csr import CSR
from sgfd_ext.ops.kernels import get_kernels

# "ndcg" divides DCG by the ideal DCG of min(|targets|, K) items. "ndcg_hitnorm" divides by the
# ideal DCG of the number of hits, as the GRCN and MAML evaluators do; it inflates NDCG and is
# there for comparison with published tables only.
METRIC_NAMES = ("recall", "ndcg", "precision", "hit", "ndcg_hitnorm")


def topk_eval(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    exclude: CSR,
    target: CSR,
    ks: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank every item for every user by dot product, excluded items removed, and score the top-K.

    Returns ``top_items`` (int64 ``[B, max(ks)]``, best first, ties to the lower item index, -1
    past the last candidate) and ``metrics`` (float32 ``[B, len(ks), 5]`` in the order of
    ``METRIC_NAMES``; NaN rows for users without targets).
    """
    ks = [int(k) for k in ks]
    if get_kernels() == "reference":
        return topk_eval_reference(user_emb, item_emb, exclude, target, ks)
    return torch.ops.sgfd_ext.topk_eval(
        user_emb.detach(),
        item_emb.detach(),
        exclude.indptr,
        exclude.indices,
        target.indptr,
        target.indices,
        ks,
    )


@torch.library.register_fake("sgfd_ext::topk_eval")
def _topk_eval_fake(
    user_emb, item_emb, exclude_indptr, exclude_indices, target_indptr, target_indices, ks
):
    torch._check(len(ks) > 0, lambda: "ks must hold at least one K")
    torch._check(user_emb.dim() == 2 and item_emb.dim() == 2, lambda: "embeddings must be 2-D")
    n_users = user_emb.shape[0]
    top_items = user_emb.new_empty((n_users, max(ks)), dtype=torch.int64)
    metrics = user_emb.new_empty((n_users, len(ks), len(METRIC_NAMES)), dtype=torch.float32)
    return top_items, metrics


def _check_csr(csr: CSR, n_rows: int, n_cols: int, name: str) -> None:
    for part in ("indptr", "indices"):
        t = getattr(csr, part)
        if t.dim() != 1 or t.dtype != torch.int64:
            raise ValueError(f"{name}.{part} must be a 1-D int64 tensor, got {t.dim()}-D {t.dtype}")
    if csr.indptr.numel() != n_rows + 1:
        raise ValueError(
            f"{name}.indptr must have one entry per user plus one ({n_rows + 1}), "
            f"got {csr.indptr.numel()}"
        )
    if int(csr.indptr[0]) != 0 or int(csr.indptr[-1]) != csr.indices.numel():
        raise ValueError(f"{name}.indptr must run from 0 to the number of indices")
    if n_rows > 0 and bool((csr.indptr.diff() < 0).any()):
        raise ValueError(f"{name}.indptr must be non-decreasing")
    if csr.indices.numel() > 0:
        lo, hi = int(csr.indices.min()), int(csr.indices.max())
        if lo < 0 or hi >= n_cols:
            raise ValueError(f"{name}.indices must lie in [0, {n_cols}), got [{lo}, {hi}]")


def _check_inputs(
    user_emb: torch.Tensor, item_emb: torch.Tensor, exclude: CSR, target: CSR, ks: list[int]
) -> None:
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"user_emb [B, d] and item_emb [I, d] must share d, got {tuple(user_emb.shape)} "
            f"and {tuple(item_emb.shape)}"
        )
    if user_emb.dtype not in (torch.float32, torch.float64) or item_emb.dtype != user_emb.dtype:
        raise ValueError(
            "embeddings must share one dtype, float32 or float64; got "
            f"{user_emb.dtype} and {item_emb.dtype}"
        )
    n_items = item_emb.shape[0]
    if not ks or min(ks) < 1 or max(ks) > n_items:
        raise ValueError(f"every K must lie in [1, number of items = {n_items}], got {ks}")
    _check_csr(exclude, user_emb.shape[0], n_items, "exclude")
    _check_csr(target, user_emb.shape[0], n_items, "target")
    for name, t in (("user_emb", user_emb), ("item_emb", item_emb)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


def _row_ids(csr: CSR) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(csr.n_rows, device=csr.indptr.device), csr.indptr.diff()
    )


def _exact_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best finite scores per row, ties to the lower index, -1 past the end."""
    n_rows = scores.shape[0]
    kth = scores.topk(k, dim=1).values[:, k - 1 :]
    rows, cols = ((scores >= kth) & (scores > -math.inf)).nonzero(as_tuple=True)

    order = torch.sort(scores[rows, cols], descending=True, stable=True).indices
    rows, cols = rows[order], cols[order]
    order = torch.sort(rows, stable=True).indices
    rows, cols = rows[order], cols[order]

    counts = torch.bincount(rows, minlength=n_rows)
    rank = torch.arange(rows.numel(), device=scores.device) - (counts.cumsum(0) - counts)[rows]
    keep = rank < k
    top = torch.full((n_rows, k), -1, dtype=torch.int64, device=scores.device)
    top[rows[keep], rank[keep]] = cols[keep]
    return top


def topk_eval_reference(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    exclude: CSR,
    target: CSR,
    ks: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch version of ``topk_eval``; it holds the whole users x items score matrix."""
    ks = [int(k) for k in ks]
    _check_inputs(user_emb, item_emb, exclude, target, ks)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    max_k = max(ks)
    device = user_emb.device
    if n_users == 0:
        return (
            torch.empty((0, max_k), dtype=torch.int64, device=device),
            torch.empty((0, len(ks), len(METRIC_NAMES)), dtype=torch.float32, device=device),
        )

    with torch.no_grad():
        scores = user_emb @ item_emb.T
        scores[_row_ids(exclude), exclude.indices] = -math.inf
        top_items = _exact_topk(scores, max_k)
        del scores

        is_target = torch.zeros((n_users, n_items), dtype=torch.bool, device=device)
        is_target[_row_ids(target), target.indices] = True
        n_targets = is_target.sum(1).double()
        hit = is_target.gather(1, top_items.clamp(min=0)) & (top_items >= 0)

        discount = 1.0 / torch.log2(torch.arange(max_k, device=device, dtype=torch.float64) + 2)
        hits_at = hit.cumsum(1)
        dcg_at = (hit * discount).cumsum(1)
        ideal = torch.cat([discount.new_zeros(1), discount.cumsum(0)])

        columns = []
        for k in ks:
            h, g = hits_at[:, k - 1], dcg_at[:, k - 1]
            columns.append(
                torch.stack(
                    [
                        h / n_targets,
                        g / ideal[n_targets.clamp(max=k).long()],
                        h / k,
                        (h > 0).double(),
                        torch.where(h > 0, g / ideal[h], 0.0),
                    ],
                    dim=1,
                )
            )
        metrics = torch.stack(columns, dim=1)
        metrics[n_targets == 0] = math.nan
    return top_items, metrics.float()
