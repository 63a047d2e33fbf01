"""Explicit configuration objects; defaults follow the published settings where they exist."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

AUTOCAST_DTYPES = (None, "bfloat16", "float16")


@dataclass
class SGFDConfig:
    """Settings of the teacher/student distillation (the SGFD paper); defaults are the reference's.

    The switches at the bottom are ablations: each turns one component off or back to the
    reference code's behaviour, so its contribution can be measured.
    """

    lambda_ce: float = 0.1
    lambda_kd: float = 0.01
    tau: float = 50.0
    teacher_ratio: int = 4
    negative_slope: float = 0.01
    teacher_activation: bool = True
    reference_double_softmax: bool = False
    detach_teacher: bool = False
    ld_distance: str = "l1"
    use_ce: bool = True
    use_ld: bool = True
    use_fd: bool = True
    use_fusion: bool = True
    deep_student: bool = False

    def __post_init__(self) -> None:
        if self.ld_distance not in ("l1", "l2"):
            raise ValueError(f"ld_distance must be 'l1' or 'l2', got {self.ld_distance!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.lambda_ce < 0 or self.lambda_kd < 0:
            raise ValueError(f"lambda_ce and lambda_kd must be >= 0, got {self.lambda_ce} and "
                             f"{self.lambda_kd}")
        if self.teacher_ratio < 2:
            raise ValueError(f"teacher_ratio must be at least 2, got {self.teacher_ratio}")


@dataclass
class TrainConfig:
    """One training run: data, model, optimisation, evaluation and output settings."""

    dataset: str = "movielens-100k"
    data_root: str | None = None
    generated_features: bool = False
    labels_path: str | None = None
    n_clusters: int | None = None
    model: str = "bm3"
    sgfd: bool = True
    seed: int = 0
    device: str = "cpu"
    epochs: int = 1000
    patience: int = 50
    eval_every: int = 1
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    embedding_dim: int = 64
    eval_batch_size: int = 4096
    ks: tuple[int, ...] = (10, 20)
    select_metric: str = "recall@20"
    select_on_test: bool = False
    kernels: str = "fused"
    autocast: str | None = None  # "bfloat16" or "float16": mixed-precision training forward
    threads: int | None = None
    out_dir: str = "runs"
    time_limit_s: float | None = None
    model_args: dict = field(default_factory=dict)
    sgfd_args: SGFDConfig = field(default_factory=SGFDConfig)

    def __post_init__(self) -> None:
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {AUTOCAST_DTYPES}, got {self.autocast!r}")
        for name in ("epochs", "patience", "eval_every", "batch_size", "embedding_dim",
                     "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time limit must be positive, got {self.time_limit_s}")
        check_device(self.device)

    def to_dict(self) -> dict:
        return asdict(self)


def check_device(device: str) -> None:
    """Refuse a device string PyTorch cannot parse, or a CUDA device this build cannot use."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be like 'cpu', 'cuda' or 'cuda:1', got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available to this PyTorch build")
