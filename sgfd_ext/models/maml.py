"""MAML: metric learning with a per-(user, item) attention over the embedding dimensions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgfd_ext.csr import CSR
from sgfd_ext.metrics import topk_metrics
from sgfd_ext.models.base import Recommender
from sgfd_ext.models.extractors import FeatureExtractor, ProjectionExtractor
from sgfd_ext.ops.maml_topk import attentive_distance, maml_topk


@dataclass
class MAMLConfig:
    """MAML hyper-parameters; defaults follow the reference code (4 negatives, margin 1, feature
    MLP of width 256 with dropout 0.2, feature loss weight 1, covariance weight 5, norm clip 1).

    ``attention_hidden`` is the width of the attention MLP's hidden layer (0: the embedding
    size d).
    """

    n_negatives: int = 4
    margin: float = 1.0
    mlp_hidden: int = 256
    dropout: float = 0.2
    attention_hidden: int = 0
    feature_weight: float = 1.0
    cov_weight: float = 5.0
    rank_weight: bool = True
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be at least 1, got {self.n_negatives}")
        if self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {self.clip_norm}")


def _clip_rows(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Rows longer than ``max_norm`` scaled down to it (differentiable)."""
    return x / (x.norm(dim=-1, keepdim=True) / max_norm).clamp(min=1.0)


def covariance_penalty(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of the covariance of the rows of ``x``: small when
    the embedding dimensions are decorrelated."""
    centred = x - x.mean(0)
    cov = centred.T @ centred / x.shape[0]
    return cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()


class MAML(Recommender):
    """MAML over any number of modalities, with a pluggable feature extractor.

    Users and items live in one metric space (rows of norm at most ``clip_norm``). An item's
    features (row-normalised per modality, concatenated) go through an MLP to a projection
    pulled towards the item's embedding. An attention MLP over [user; item; projection] weights
    the dimensions of the squared user-item distance; the score is minus that distance.
    Every part is trained (the reference code hands only the embeddings to its optimiser).
    """

    def __init__(self, n_users: int, n_items: int, train: np.ndarray, dim: int,
                 extractor: FeatureExtractor, cfg: MAMLConfig):
        super().__init__(n_users, n_items, extractor)
        self.cfg = cfg
        self.n_negatives = cfg.n_negatives
        self.user_embedding = nn.Parameter(torch.randn(n_users, dim) * dim**-0.5)
        self.item_embedding = nn.Parameter(torch.randn(n_items, dim) * dim**-0.5)
        in_dim = sum(extractor.out_dims[m] for m in extractor.modalities)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, cfg.mlp_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_hidden, dim),
        )
        hidden = cfg.attention_hidden or dim
        # The first attention layer on [user; item; projection], split by input so that ranking
        # computes the user and item parts once.
        self.attn_user = nn.Linear(dim, hidden)
        self.attn_item = nn.Linear(dim, hidden, bias=False)
        self.attn_feature = nn.Linear(dim, hidden, bias=False)
        self.attn_out = nn.Linear(hidden, dim)
        self.after_step()

    @classmethod
    def own_extractor(cls, features: dict[str, torch.Tensor], dim: int,
                      cfg: MAMLConfig) -> FeatureExtractor:
        """The generic features themselves: MAML's feature MLP is part of the model."""
        return ProjectionExtractor(features, {m: nn.Identity() for m in features})

    def project(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Feature projection of items into the metric space, clipped like the embeddings."""
        x = torch.cat([F.normalize(features[m], dim=1) for m in self.extractor.modalities], 1)
        return _clip_rows(self.mlp(x), self.cfg.clip_norm)

    def distance(self, users: torch.Tensor, items: torch.Tensor,
                 projection: torch.Tensor) -> torch.Tensor:
        """Attentive squared distance of broadcastable user, item and projection rows."""
        hidden = self.attn_user(users) + self.attn_item(items) + self.attn_feature(projection)
        return attentive_distance(hidden, users, items, self.attn_out.weight, self.attn_out.bias)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        users, pos, neg = batch["users"], batch["items"], batch["negatives"]
        items, inverse = torch.unique(torch.cat([pos, neg.flatten()]), return_inverse=True)
        feats, aux = self.extractor(items)
        projection = self.project(feats)
        f = projection[inverse]
        f_pos, f_neg = f[: len(pos)], f[len(pos) :].view(*neg.shape, -1)

        u = self.user_embedding[users]
        d_pos = self.distance(u, self.item_embedding[pos], f_pos)
        d_neg = self.distance(u[:, None], self.item_embedding[neg], f_neg)
        loss = F.relu(d_pos - d_neg.min(1).values + cfg.margin)
        if cfg.rank_weight:
            # WARP: the share of sampled negatives inside the margin estimates the rank.
            impostors = (d_pos[:, None] - d_neg + cfg.margin > 0).float().mean(1)
            loss = loss * torch.log1p(impostors * self.n_items)

        feature = (projection - self.item_embedding[items]).pow(2).sum(1).mean()
        cov = covariance_penalty(torch.cat([self.user_embedding, self.item_embedding]))
        return loss.mean() + cfg.feature_weight * feature + cfg.cov_weight * cov + aux

    @torch.no_grad()
    def after_step(self) -> None:
        """Clip every user and item embedding to the unit ball (radius ``clip_norm``)."""
        for table in (self.user_embedding, self.item_embedding):
            table.renorm_(2, 0, self.cfg.clip_norm)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("MAML scores by an attentive distance, not a dot product")

    def ranking_state(self) -> tuple[torch.Tensor, ...]:
        projection = self.project(self.extractor.features(None))
        item_hidden = self.attn_item(self.item_embedding) + self.attn_feature(projection)
        return (self.attn_user(self.user_embedding), self.user_embedding, item_hidden,
                self.item_embedding, self.attn_out.weight, self.attn_out.bias)

    def rank(
        self,
        state: tuple[torch.Tensor, ...],
        users: torch.Tensor,
        exclude: CSR,
        target: CSR,
        ks: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        user_hidden, user_emb, item_hidden, item_emb, w2, b2 = state
        top, _ = maml_topk(user_hidden[users], user_emb[users], item_hidden, item_emb, w2, b2,
                           exclude, max(ks))
        return top, topk_metrics(top, target, ks)
