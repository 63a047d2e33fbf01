"""BM3: LightGCN on ID embeddings with a bootstrapped, negative-free self-supervised loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgfd_ext.graph import normalized_adjacency, propagate
from sgfd_ext.models.base import Recommender
from sgfd_ext.models.extractors import FeatureExtractor


@dataclass
class BM3Config:
    """BM3 hyper-parameters; defaults are the published ones (d=64 base runs, 128 with SGFD)."""

    n_layers: int = 1
    dropout: float = 0.5
    reg_weight: float = 0.1
    cl_weight: float = 2.0


def _alignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One minus the mean cosine similarity to a fixed (stop-gradient) target."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(Recommender):
    """BM3 over any number of modalities, with a pluggable feature extractor.

    Item representation = propagated item embedding + its ID embedding. A shared linear
    predictor maps the online views; targets are dropped-out, stop-gradient copies.
    """

    n_negatives = 0

    def __init__(self, n_users: int, n_items: int, train: np.ndarray, dim: int,
                 extractor: FeatureExtractor, cfg: BM3Config):
        super().__init__(n_users, n_items, extractor)
        self.cfg = cfg
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_users, dim)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_items, dim)))
        self.predictor = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.predictor.weight)
        self.register_buffer("adj", normalized_adjacency(train, n_users, n_items), persistent=False)

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-averaged LightGCN embeddings; items also get their ID embedding added."""
        x = torch.cat([self.user_embedding, self.item_embedding])
        total = x
        for _ in range(self.cfg.n_layers):
            x = propagate(self.adj, x)
            total = total + x
        mean = total / (self.cfg.n_layers + 1)
        users, items = mean[: self.n_users], mean[self.n_users :]
        return users, items + self.item_embedding

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = batch["users"], batch["items"]
        p = self.cfg.dropout
        u_all, i_all = self.propagated()
        u, i = u_all[users], i_all[items]
        u_online, i_online = self.predictor(u), self.predictor(i)
        u_target, i_target = F.dropout(u.detach(), p), F.dropout(i.detach(), p)

        loss = _alignment(u_online, i_target) + _alignment(i_online, u_target)
        feats, aux = self.extractor(items)
        cl = torch.zeros((), device=u.device)
        for f in feats.values():
            f_online = self.predictor(f)
            cl = cl + _alignment(f_online, i_target) + _alignment(f_online, F.dropout(f.detach(), p))
        # Regulariser of the reference: Frobenius norms of the online tables over the item count.
        reg = (u_all.norm() + i_all.norm()) / self.n_items
        return loss + self.cfg.reg_weight * reg + self.cfg.cl_weight * cl + aux

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i = self.propagated()
        return self.predictor(u), self.predictor(i)
