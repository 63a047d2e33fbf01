"""Per-modality feature extractors a base model can be given: its own, or the SGFD student."""

from __future__ import annotations

import torch
from torch import nn

from sgfd_ext.sgfd import SGFD


class FeatureExtractor(nn.Module):
    """Maps item ids to one feature matrix per modality.

    ``forward`` is the training call: features of ``items`` plus an auxiliary loss that the
    base model adds to its own (zero for a plain extractor). ``features`` is the inference
    call, with no auxiliary work.
    """

    modalities: list[str]

    def forward(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.features(items), torch.zeros((), device=items.device)

    def features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ProjectionExtractor(FeatureExtractor):
    """A base model's own extractor: one module per modality applied to the generic features."""

    def __init__(self, features: dict[str, torch.Tensor], projections: dict[str, nn.Module]):
        super().__init__()
        self.modalities = list(features)
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f, persistent=False)
        self.projections = nn.ModuleDict(projections)

    def features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            x = getattr(self, f"feat_{m}")
            out[m] = self.projections[m](x if items is None else x[items])
        return out


class SGFDExtractor(FeatureExtractor):
    """The SGFD students as extractor; training calls also return the distillation loss."""

    def __init__(self, sgfd: SGFD):
        super().__init__()
        self.sgfd = sgfd
        self.modalities = list(sgfd.modalities)

    def forward(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.sgfd(items)

    def features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.sgfd.student_features(items)


def linear_projections(features: dict[str, torch.Tensor], dim: int) -> dict[str, nn.Module]:
    """One Xavier-initialised linear layer ``D_m -> dim`` per modality."""
    out = {}
    for m, f in features.items():
        layer = nn.Linear(f.shape[1], dim)
        nn.init.xavier_normal_(layer.weight)
        out[m] = layer
    return out
