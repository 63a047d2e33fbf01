"""Full-ranking evaluation: every item scored for every user, known items excluded."""

from __future__ import annotations

import math
from collections.abc import Callable

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


def _evaluate_blocks(
    rank_block: Callable[[int, int, CSR, CSR], torch.Tensor],
    exclude: CSR,
    target: CSR,
    ks: tuple[int, ...],
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Rank users in blocks of ``batch_size`` and average their metrics."""
    parts = []
    for start in range(0, exclude.n_rows, batch_size):
        stop = min(start + batch_size, exclude.n_rows)
        block_exclude = exclude.rows(start, stop).to(device)
        block_target = target.rows(start, stop).to(device)
        parts.append(rank_block(start, stop, block_exclude, block_target).cpu())
    return _summarise(torch.cat(parts), ks)


@torch.no_grad()
def evaluate_model(
    model, exclude: CSR, target: CSR, ks: tuple[int, ...], batch_size: int = 4096
) -> dict[str, float]:
    """Recall, NDCG, precision and hit at each K for a model exposing the ranking interface."""
    was_training = model.training
    model.eval()
    state = model.ranking_state()
    device = state[0].device

    def rank_block(start: int, stop: int, block_exclude: CSR, block_target: CSR) -> torch.Tensor:
        users = torch.arange(start, stop, device=device)
        return model.rank(state, users, block_exclude, block_target, ks)[1]

    try:
        return _evaluate_blocks(rank_block, exclude, target, ks, batch_size, device)
    finally:
        model.train(was_training)


def evaluate_scores(
    user_block: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    exclude: CSR,
    target: CSR,
    ks: tuple[int, ...],
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The same metrics for dot-product scores: ``user_block(start, stop)`` gives the user
    rows and the item rows whose products score users ``start..stop-1``."""

    def rank_block(start: int, stop: int, block_exclude: CSR, block_target: CSR) -> torch.Tensor:
        users, items = user_block(start, stop)
        return topk_eval(users.contiguous(), items, block_exclude, block_target, ks)[1]

    return _evaluate_blocks(rank_block, exclude, target, ks, batch_size, torch.device(device))


def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    exclude: CSR,
    target: CSR,
    ks: tuple[int, ...],
    batch_size: int = 4096,
) -> dict[str, float]:
    """The same metrics for fixed dot-product embeddings (used by non-neural baselines)."""
    return evaluate_scores(lambda start, stop: (user_emb[start:stop], item_emb),
                           exclude, target, ks, batch_size, user_emb.device)
