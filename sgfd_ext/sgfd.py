"""The SGFD module: per-modality teachers and students, semantic classifiers and their losses."""

from __future__ import annotations

import itertools
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from sgfd_ext.config import SGFDConfig
from sgfd_ext.ops.student_fd import student_fd

log = logging.getLogger(__name__)


def teacher_widths(in_dim: int, out_dim: int, ratio: int) -> list[int]:
    """Layer widths of a teacher: shrink by ``ratio`` while the next width stays >= ``out_dim``.

    4096 -> 1024 -> 256 -> 64 for ``out_dim`` 64 and ratio 4, as in the reference code.
    """
    widths = [in_dim]
    while widths[-1] // ratio >= out_dim:
        widths.append(widths[-1] // ratio)
    if widths[-1] != out_dim or len(widths) == 1:
        widths.append(out_dim)
    return widths


class Teacher(nn.Module):
    """A deep projection ``D -> d`` whose output is leaky-ReLU'd and L2-normalised per row."""

    def __init__(self, in_dim: int, out_dim: int, cfg: SGFDConfig):
        super().__init__()
        widths = teacher_widths(in_dim, out_dim, cfg.teacher_ratio)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.hidden_activation = cfg.teacher_activation
        self.negative_slope = cfg.negative_slope

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last layer (identity for a one-layer network)."""
        for layer in self.layers[:-1]:
            x = layer(x)
            if self.hidden_activation:
                x = F.leaky_relu(x, self.negative_slope)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.layers[-1](self.hidden(x))
        return F.normalize(F.leaky_relu(z, self.negative_slope), dim=1)


class Student(nn.Module):
    """One linear layer ``D -> d``, leaky ReLU, row-wise L2 normalisation.

    The weight is stored as ``D x d`` so the fused student/feature-distillation op consumes it
    without a transpose.
    """

    def __init__(self, in_dim: int, out_dim: int, negative_slope: float):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.addmm(self.bias, x, self.weight)
        return F.normalize(F.leaky_relu(z, self.negative_slope), dim=1)

    def forward_with_fd(
        self, x: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student features and their mean squared distance to ``teacher``, in one fused op."""
        return student_fd(x, self.weight, self.bias, teacher, self.negative_slope)


class SGFD(nn.Module):
    """Teachers, students and classifiers for any number of modalities.

    ``features`` are the generic item features per modality (kept as buffers); ``labels`` the
    semantic class of each item. The students are what the base model consumes.
    """

    def __init__(
        self,
        features: dict[str, torch.Tensor],
        labels: torch.Tensor,
        n_classes: int,
        dim: int,
        cfg: SGFDConfig,
    ):
        super().__init__()
        self.cfg = cfg
        self.modalities = list(features)
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f, persistent=False)
        self.register_buffer("labels", labels, persistent=False)
        self.teachers = nn.ModuleDict(
            {m: Teacher(f.shape[1], dim, cfg) for m, f in features.items()}
        )
        for m, teacher in self.teachers.items():
            if len(teacher.layers) == 1:
                log.warning(
                    "SGFD: the %s teacher is a single layer (%d -> %d features), no deeper than "
                    "the student; a teacher needs inputs at least %d times wider than d=%d to "
                    "get a hidden layer", m, features[m].shape[1], dim, cfg.teacher_ratio, dim)
        if cfg.deep_student:
            self.students = nn.ModuleDict(
                {m: Teacher(f.shape[1], dim, cfg) for m, f in features.items()}
            )
        else:
            self.students = nn.ModuleDict(
                {m: Student(f.shape[1], dim, cfg.negative_slope) for m, f in features.items()}
            )
        self.classifiers = nn.ModuleDict({m: nn.Linear(dim, n_classes) for m in features})
        self.fusion = nn.Linear(len(features) * dim, dim)
        self.fusion_classifier = nn.Linear(dim, n_classes)

    def feature(self, modality: str) -> torch.Tensor:
        return getattr(self, f"feat_{modality}")

    def student_features(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Student features of ``items`` (all items when None) for every modality."""
        out = {}
        for m in self.modalities:
            x = self.feature(m) if items is None else self.feature(m)[items]
            out[m] = self.students[m](x)
        return out

    def forward(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Student features of ``items`` and the weighted SGFD loss computed on those items.

        The losses are means over the batch's rows, repeated items included, so a batch split
        across processes gives the same gradient as a whole one.

        Limitation: teachers and students run once per row, not once per distinct item; a
        batch of 2,048 pairs holds about 1,060 distinct items on Office, so about half of the
        teacher's work repeats itself there.
        """
        return self._objective(items, None)

    def forward_all(self, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Student features of every item and the SGFD loss on ``items``, students run once.

        For base models that propagate the features of all items at each step.
        """
        students = self.student_features(None)
        _, loss = self._objective(items, students)
        return students, loss

    def _objective(
        self, items: torch.Tensor, all_students: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        cfg = self.cfg
        y = self.labels[items]
        students, teachers, fd_losses, ld_losses = {}, {}, [], []
        for m in self.modalities:
            x = self.feature(m)[items]
            t = self.teachers[m](x)
            t_kd = t.detach() if cfg.detach_teacher else t
            if all_students is not None:
                s = all_students[m][items]
                fd = F.mse_loss(s, t_kd)
            elif isinstance(self.students[m], Student):
                s, fd = self.students[m].forward_with_fd(x, t_kd)
            else:
                s = self.students[m](x)
                fd = F.mse_loss(s, t_kd)
            students[m], teachers[m] = s, t
            fd_losses.append(fd)
            ld_losses.append(self._response_distance(m, t_kd, s))

        loss = torch.zeros((), device=items.device)
        if cfg.use_ce:
            loss = loss + cfg.lambda_ce * self._semantic_loss(teachers, y)
        kd = torch.zeros((), device=items.device)
        if cfg.use_ld:
            kd = kd + torch.stack(ld_losses).mean()
        if cfg.use_fd:
            kd = kd + torch.stack(fd_losses).mean()
        return students, loss + cfg.lambda_kd * kd

    def _cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cfg.reference_double_softmax:
            return F.cross_entropy(F.softmax(logits, dim=1), y)
        return F.cross_entropy(logits, y)

    def _semantic_loss(self, teachers: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        ce = torch.stack([self._cross_entropy(self.classifiers[m](t), y) for m, t in teachers.items()])
        loss = ce.mean()
        if self.cfg.use_fusion:
            h = F.leaky_relu(self.fusion(torch.cat(list(teachers.values()), dim=1)),
                             self.cfg.negative_slope)
            loss = loss + self._cross_entropy(self.fusion_classifier(h), y)
        return loss

    def _response_distance(self, m: str, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        tau = self.cfg.tau
        p_t = F.softmax(self.classifiers[m](t) / tau, dim=1)
        p_s = F.softmax(self.classifiers[m](s) / tau, dim=1)
        diff = p_t - p_s
        return diff.abs().mean() if self.cfg.ld_distance == "l1" else (diff * diff).mean()
