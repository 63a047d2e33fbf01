"""Ranking metrics of given top-K lists, in the layout that ``topk_eval`` returns."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sgfd_ext.csr import CSR


def topk_metrics(top_items: torch.Tensor, target: CSR, ks: Sequence[int]) -> torch.Tensor:
    """Recall, NDCG, precision, hit and hit-normalised NDCG at each K for ranked lists.

    ``top_items`` [B, max K] holds item ids best first, -1 past the last candidate; ``target``
    the held-out items of the same B users. Returns float32 [B, len(ks), 5] in the order of
    ``sgfd_ext.ops.topk_eval.METRIC_NAMES``, NaN rows for users without held-out items.
    """
    ks = [int(k) for k in ks]
    n_users, width = top_items.shape
    if not ks or min(ks) < 1 or max(ks) > width:
        raise ValueError(f"every K must lie in [1, {width}], got {ks}")
    device = top_items.device
    indptr, indices = target.indptr.to(device), target.indices.to(device)

    # Distinct (user, item) keys of the targets, sorted, then looked up for each ranked item.
    largest = [int(t.max()) for t in (indices, top_items) if t.numel()]
    span = max(largest, default=0) + 1
    rows = torch.repeat_interleave(torch.arange(n_users, device=device), indptr.diff())
    keys = torch.unique(rows * span + indices)
    n_targets = torch.bincount(keys // span, minlength=n_users).double()
    query = torch.arange(n_users, device=device)[:, None] * span + top_items.clamp(min=0)
    hit = torch.zeros_like(top_items, dtype=torch.bool)
    if keys.numel():
        pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        hit = (keys[pos] == query) & (top_items >= 0)

    discount = 1.0 / torch.log2(torch.arange(width, device=device, dtype=torch.float64) + 2)
    ideal = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
    hits_at, dcg_at = hit.cumsum(1).double(), (hit * discount).cumsum(1)
    columns = []
    for k in ks:
        h, g = hits_at[:, k - 1], dcg_at[:, k - 1]
        columns.append(torch.stack([
            h / n_targets,
            g / ideal[n_targets.clamp(max=k).long()],
            h / k,
            (h > 0).double(),
            torch.where(h > 0, g / ideal[h.long()], 0.0),
        ], dim=1))
    metrics = torch.stack(columns, dim=1)
    metrics[n_targets == 0] = math.nan
    return metrics.float()
