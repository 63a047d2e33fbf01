"""LightGCN with the BPR loss: an ID-only graph baseline, the field's usual reference point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sgfd_ext.graph import normalized_adjacency, propagate
from sgfd_ext.models.base import Recommender
from sgfd_ext.models.extractors import FeatureExtractor
from sgfd_ext.ops.bpr import bpr_loss


@dataclass
class LightGCNConfig:
    """LightGCN settings: propagation depth and the L2 weight on the embeddings of each triple."""

    n_layers: int = 2
    reg_weight: float = 1e-4


class LightGCN(Recommender):
    """Layer-averaged propagation of user and item ID embeddings, trained with BPR.

    It uses no item features, so it has no SGFD variant; the extractor it is given is unused.
    """

    n_negatives = 1

    def __init__(self, n_users: int, n_items: int, train: np.ndarray, dim: int,
                 extractor: FeatureExtractor | None, cfg: LightGCNConfig):
        super().__init__(n_users, n_items, extractor)
        self.cfg = cfg
        self.embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_users + n_items, dim)))
        self.register_buffer("adj", normalized_adjacency(train, n_users, n_items), persistent=False)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = total = self.embedding
        for _ in range(self.cfg.n_layers):
            x = propagate(self.adj, x)
            total = total + x
        mean = total / (self.cfg.n_layers + 1)
        return mean[: self.n_users], mean[self.n_users :]

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = self.representations()
        return bpr_loss(users, items, batch["users"], batch["items"], batch["negatives"][:, 0],
                        self.cfg.reg_weight)
