"""GRCN: a user-item graph refined by routing on item content, then graph convolution per view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgfd_ext.graph import BipartiteEdges, segment_softmax
from sgfd_ext.models.base import Recommender
from sgfd_ext.models.extractors import FeatureExtractor, ProjectionExtractor

WEIGHT_MODES = ("confid", "max", "mean")


@dataclass
class GRCNConfig:
    """GRCN hyper-parameters; defaults follow the reference code (3 routing iterations, 2 ID
    layers, per-node confidence weighting with pruning) and the published Office L2 weight."""

    n_routing: int = 3
    n_layers: int = 2
    weight_mode: str = "confid"
    pruning: bool = True
    activation: bool = False
    reg_weight: float = 1e-3
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        if self.weight_mode not in WEIGHT_MODES:
            raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {self.weight_mode!r}")
        if self.n_routing < 0 or self.n_layers < 0:
            raise ValueError("n_routing and n_layers must be non-negative")


class GRCN(Recommender):
    """GRCN over any number of modalities, with a pluggable feature extractor.

    Each modality has user preference vectors, refined by routing over the features of each
    user's items; the affinities between refined preferences and item features weight the
    edges of that modality's graph convolution and, combined over modalities, of the ID
    embeddings' graph convolution (edges that no modality supports are pruned). Users and
    items are represented by the concatenation of the ID and per-modality outputs; BPR loss.
    """

    n_negatives = 1

    def __init__(self, n_users: int, n_items: int, train: np.ndarray, dim: int,
                 extractor: FeatureExtractor, cfg: GRCNConfig):
        super().__init__(n_users, n_items, extractor)
        self.cfg = cfg
        n_nodes, n_mod = n_users + n_items, len(extractor.modalities)
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_nodes, dim)))
        self.preference = nn.ParameterDict({
            m: nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim)))
            for m in extractor.modalities
        })
        # Confidence of each sending node (users, then items) in each modality; starts neutral.
        self.confidence = nn.Parameter(torch.ones(n_nodes, n_mod))
        self.edges = BipartiteEdges(train, n_users, n_items)

    @classmethod
    def own_extractor(cls, features: dict[str, torch.Tensor], dim: int,
                      cfg: GRCNConfig) -> FeatureExtractor:
        """GRCN's content projection: one linear layer and leaky ReLU per modality."""
        projections = {
            m: nn.Sequential(nn.Linear(f.shape[1], dim), nn.LeakyReLU(cfg.negative_slope))
            for m, f in features.items()
        }
        return ProjectionExtractor(features, projections)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.cfg.negative_slope) if self.cfg.activation else x

    def _graph(self) -> BipartiteEdges:
        """The training edges, on the device of the parameters."""
        device = self.id_embedding.device
        if self.edges.user.device != device:
            self.edges.to(device)
        return self.edges

    def route(self, preference: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Refined user preferences: each iteration adds the affinity-weighted mean of the
        features of the user's items."""
        g = self._graph()
        p = F.normalize(preference, dim=1)
        for _ in range(self.cfg.n_routing):
            weight = segment_softmax(g.dot(p, features), g.user, self.n_users)
            p = F.normalize(p + g.to_users(weight, features), dim=1)
        return p

    def edge_weights(
        self, preference: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per edge, the softmax of preference-feature affinities over the receiver's
        neighbours: for the item-to-user direction, then for the user-to-item direction."""
        g = self._graph()
        affinity = g.dot(preference, features)
        return (segment_softmax(affinity, g.user, self.n_users),
                segment_softmax(affinity, g.item, self.n_items))

    def refine(
        self, features: dict[str, torch.Tensor]
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """One convolved view per modality (users then items) and the refined edge weights of
        the ID convolution in both directions: per-modality weights, times the sending node's
        confidence in that modality (``confid``), combined over modalities, pruned below zero."""
        cfg, g = self.cfg, self._graph()
        views, to_user, to_item = [], [], []
        for m in self.extractor.modalities:
            f = F.normalize(features[m], dim=1)
            p = self.route(self.preference[m], f)
            w_u, w_i = self.edge_weights(p, f)
            views.append(torch.cat([p + self._act(g.to_users(w_u, f)),
                                    f + self._act(g.to_items(w_i, p))]))
            to_user.append(w_u)
            to_item.append(w_i)

        combined = []
        for w, sender in ((torch.stack(to_user, 1), self.n_users + g.item),
                          (torch.stack(to_item, 1), g.user)):
            if cfg.weight_mode == "confid":
                w = w * self.confidence[sender]
            w = w.mean(1) if cfg.weight_mode == "mean" else w.amax(1)
            combined.append(F.relu(w) if cfg.pruning else w)
        return views, (combined[0], combined[1])

    def propagated(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item representations: ID view then one view per modality, concatenated."""
        g = self._graph()
        views, (w_u, w_i) = self.refine(features)
        x = F.normalize(self.id_embedding, dim=1)
        h_u, h_i = x[: self.n_users], x[self.n_users :]
        total_u, total_i = h_u, h_i
        for _ in range(self.cfg.n_layers):
            h_u, h_i = self._act(g.to_users(w_u, h_i)), self._act(g.to_items(w_i, h_u))
            total_u, total_i = total_u + h_u, total_i + h_i
        rep = torch.cat([torch.cat([total_u, total_i]), *views], dim=1)
        return rep[: self.n_users], rep[self.n_users :]

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, pos, neg = batch["users"], batch["items"], batch["negatives"][:, 0]
        feats, aux = self.extractor.forward_all(torch.unique(torch.cat([pos, neg])))
        u_rep, i_rep = self.propagated(feats)

        u = u_rep[users]
        margin = (u * i_rep[pos]).sum(1) - (u * i_rep[neg]).sum(1)
        bpr = F.softplus(-margin).mean()
        ids = self.id_embedding
        reg = (ids[users].pow(2).mean() + ids[self.n_users + pos].pow(2).mean()
               + ids[self.n_users + neg].pow(2).mean())
        for p in self.preference.values():
            reg = reg + p[users].pow(2).mean()
        return bpr + self.cfg.reg_weight * reg + aux

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.propagated(self.extractor.features(None))
