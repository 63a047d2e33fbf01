"""Base recommenders behind one interface, and the factory that assembles them with SGFD."""

from __future__ import annotations

from dataclasses import fields

import torch

from sgfd_ext.cli_config import FEATURELESS_MODELS
from sgfd_ext.config import TrainConfig
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.models.base import Recommender
from sgfd_ext.models.bm3 import BM3, BM3Config
from sgfd_ext.models.extractors import (
    FeatureExtractor,
    ProjectionExtractor,
    SGFDExtractor,
    linear_projections,
)
from sgfd_ext.models.grcn import GRCN, GRCNConfig
from sgfd_ext.models.lightgcn import LightGCN, LightGCNConfig
from sgfd_ext.models.maml import MAML, MAMLConfig
from sgfd_ext.sgfd import SGFD

MODELS = {
    "bm3": (BM3, BM3Config),
    "grcn": (GRCN, GRCNConfig),
    "maml": (MAML, MAMLConfig),
    "lightgcn": (LightGCN, LightGCNConfig),
}

__all__ = ["MODELS", "Recommender", "build_model", "check_model_args"]


def _model_config(config_cls: type, args: dict):
    """The model's settings from ``args``, refusing unknown names and values of the wrong kind."""
    defaults = {f.name: f.default for f in fields(config_cls)}
    unknown = set(args) - set(defaults)
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} settings {sorted(unknown)}; known: {sorted(defaults)}"
        )
    for name, value in args.items():
        kind = type(defaults[name])
        accepted = (int, float) if kind is float else (kind,)
        if kind in (int, float, bool, str) and (
            not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool))
        ):
            raise ValueError(f"setting {name}: expected {kind.__name__}, found {value!r}")
    return config_cls(**args)


def check_model_args(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` early (before any data is read) for bad ``--set`` values."""
    if cfg.model in MODELS:
        _model_config(MODELS[cfg.model][1], cfg.model_args)


def _features(dataset: Dataset, device: torch.device) -> dict[str, torch.Tensor]:
    return {m: torch.from_numpy(f).float().to(device) for m, f in dataset.features.items()}


def build_extractor(dataset: Dataset, cfg: TrainConfig, device: torch.device,
                    own: FeatureExtractor | None = None) -> FeatureExtractor:
    """The SGFD students when ``cfg.sgfd``, else the base model's own extractor ``own``."""
    if not cfg.sgfd and own is not None:
        return own
    features = _features(dataset, device)
    if cfg.sgfd:
        labels = torch.from_numpy(dataset.labels).long().to(device)
        sgfd = SGFD(features, labels, dataset.n_classes, cfg.embedding_dim, cfg.sgfd_args)
        return SGFDExtractor(sgfd)
    return ProjectionExtractor(features, linear_projections(features, cfg.embedding_dim))


def build_model(dataset: Dataset, cfg: TrainConfig, device: torch.device) -> Recommender:
    """Assemble the configured base model, with SGFD as its extractor when enabled."""
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; known: {sorted(MODELS)}")
    model_cls, config_cls = MODELS[cfg.model]
    model_cfg = _model_config(config_cls, cfg.model_args)
    if cfg.model in FEATURELESS_MODELS:
        if cfg.sgfd:
            raise ValueError(f"{cfg.model} uses no item features, so it has no SGFD variant")
        extractor = None
    else:
        own = None
        if not cfg.sgfd:
            own = model_cls.own_extractor(_features(dataset, device), cfg.embedding_dim,
                                          model_cfg)
        extractor = build_extractor(dataset, cfg, device, own=own)
    model = model_cls(dataset.n_users, dataset.n_items, dataset.train, cfg.embedding_dim,
                      extractor, model_cfg)
    return model.to(device)
