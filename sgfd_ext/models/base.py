"""The interface every base recommender implements, so trainer, evaluator and SGFD share it."""

from __future__ import annotations

import torch
from torch import nn

from sgfd_ext.csr import CSR
from sgfd_ext.models.extractors import FeatureExtractor
from sgfd_ext.ops.topk_eval import topk_eval


class Recommender(nn.Module):
    """A base model: a loss on a training batch and user/item representations for ranking.

    ``n_negatives`` tells the sampler how many negative items each training pair needs
    (0: the batch holds only ``users`` and ``items``; otherwise also ``negatives`` of shape
    ``(B, n_negatives)``).
    """

    n_negatives: int = 0

    def __init__(self, n_users: int, n_items: int, extractor: FeatureExtractor):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.extractor = extractor

    @classmethod
    def own_extractor(
        cls, features: dict[str, torch.Tensor], dim: int, cfg: object
    ) -> FeatureExtractor | None:
        """The model's own feature extractor, used without SGFD (None: one linear layer per
        modality)."""
        return None

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The full training objective on a batch, the extractor's auxiliary loss included."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called by the trainer after each optimiser step, e.g. to keep parameters within
        constraints; nothing by default."""

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item vectors whose dot product is the ranking score."""
        raise NotImplementedError

    def ranking_state(self) -> tuple[torch.Tensor, ...]:
        """What ranking needs, computed once per evaluation (by default the representations)."""
        return self.representations()

    def rank(
        self,
        state: tuple[torch.Tensor, ...],
        users: torch.Tensor,
        exclude: CSR,
        target: CSR,
        ks: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top items and per-user metrics for ``users``; models with other scores override."""
        user_emb, item_emb = state
        return topk_eval(user_emb[users].contiguous(), item_emb, exclude, target, ks)
