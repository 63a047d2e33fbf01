"""Full-ranking evaluation: every item scored for every user, known items excluded."""

from __future__ import annotations

import math

import torch

from sgfd_ext.csr import CSR
from sgfd_ext.ops.topk_eval import METRIC_NAMES, topk_eval


def _summarise(metrics: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Average per-user metrics over the users that have held-out items (non-NaN rows)."""
    valid = ~torch.isnan(metrics[:, 0, 0])
    n = int(valid.sum())
    out = {"users": n}
    means = metrics[valid].double().mean(0) if n else torch.full(metrics.shape[1:], math.nan)
    for j, k in enumerate(ks):
        for c, name in enumerate(METRIC_NAMES):
            out[f"{name}@{k}"] = float(means[j, c])
    return out


@torch.no_grad()
def evaluate_model(
    model, exclude: CSR, target: CSR, ks: tuple[int, ...], batch_size: int = 4096
) -> dict[str, float]:
    """Recall, NDCG, precision and hit at each K for a model exposing the ranking interface."""
    was_training = model.training
    model.eval()
    state = model.ranking_state()
    device = state[0].device
    parts = []
    for start in range(0, exclude.n_rows, batch_size):
        stop = min(start + batch_size, exclude.n_rows)
        users = torch.arange(start, stop, device=device)
        _, metrics = model.rank(
            state, users, exclude.rows(start, stop).to(device), target.rows(start, stop).to(device), ks
        )
        parts.append(metrics.cpu())
    model.train(was_training)
    return _summarise(torch.cat(parts), ks)


def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    exclude: CSR,
    target: CSR,
    ks: tuple[int, ...],
    batch_size: int = 4096,
) -> dict[str, float]:
    """The same metrics for fixed dot-product embeddings (used by non-neural baselines)."""
    parts = []
    for start in range(0, exclude.n_rows, batch_size):
        stop = min(start + batch_size, exclude.n_rows)
        _, metrics = topk_eval(
            user_emb[start:stop].contiguous(), item_emb, exclude.rows(start, stop),
            target.rows(start, stop), ks,
        )
        parts.append(metrics)
    return _summarise(torch.cat(parts), ks)


def most_popular(
    train: CSR, n_items: int, exclude: CSR, target: CSR, ks: tuple[int, ...]
) -> dict[str, float]:
    """The most-popular-items baseline: every user gets the items with most training users."""
    counts = torch.bincount(train.indices, minlength=n_items).to(torch.float32)
    user_emb = torch.ones(exclude.n_rows, 1)
    return evaluate_embeddings(user_emb, counts[:, None], exclude, target, ks)
