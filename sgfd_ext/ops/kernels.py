"""Which implementation the ops run: the fused C++/CUDA kernels or the PyTorch references."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

KERNELS = ("fused", "reference")
_current = "fused"


def set_kernels(name: str) -> None:
    """Select ``"fused"`` (default) or ``"reference"`` for every op of the package."""
    global _current
    if name not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {name!r}")
    _current = name


def get_kernels() -> str:
    """The implementation family currently selected."""
    return _current


@contextlib.contextmanager
def use_kernels(name: str) -> Iterator[None]:
    """Temporarily select an implementation family."""
    previous = _current
    set_kernels(name)
    try:
        yield
    finally:
        set_kernels(previous)
