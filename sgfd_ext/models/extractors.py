"""Per-modality feature extractors a base model can be given: its own, or the SGFD student."""

from __future__ import annotations

import torch
from torch import nn

from sgfd_ext.sgfd import SGFD


class FeatureExtractor(nn.Module):
    """Maps item ids to one feature matrix per modality (``out_dims[m]`` columns for ``m``).

    ``forward`` is the training call: features of ``items`` plus an auxiliary loss that the
    base model adds to its own (zero for a plain extractor). ``forward_all`` is the training
    call of models that propagate every item's features at each step. ``features`` is the
    inference call, with no auxiliary work.
    """

    modalities: list[str]
    out_dims: dict[str, int]

    def forward(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.features(items), torch.zeros((), device=items.device)

    def features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward_all(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Features of every item, and the auxiliary loss computed on ``items`` only."""
        return self.features(None), torch.zeros((), device=items.device)


class ProjectionExtractor(FeatureExtractor):
    """A base model's own extractor: one module per modality applied to the generic features."""

    def __init__(self, features: dict[str, torch.Tensor], projections: dict[str, nn.Module]):
        super().__init__()
        self.modalities = list(features)
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f, persistent=False)
        self.projections = nn.ModuleDict(projections)
        self.out_dims = {m: _output_width(projections[m], f.shape[1]) for m, f in features.items()}

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
        self.out_dims = {m: sgfd.classifiers[m].in_features for m in self.modalities}

    def forward(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.sgfd(items)

    def forward_all(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.sgfd.forward_all(items)

    def features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.sgfd.student_features(items)


@torch.no_grad()
def _output_width(module: nn.Module, in_dim: int) -> int:
    """Width of what ``module`` makes of one ``in_dim``-wide row."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else None
    was_training = module.training
    module.eval()
    width = module(torch.zeros(1, in_dim, device=device)).shape[1]
    module.train(was_training)
    return width


def linear_projections(features: dict[str, torch.Tensor], dim: int) -> dict[str, nn.Module]:
    """One Xavier-initialised linear layer ``D_m -> dim`` per modality."""
    out = {}
    for m, f in features.items():
        layer = nn.Linear(f.shape[1], dim)
        nn.init.xavier_normal_(layer.weight)
        out[m] = layer
    return out
