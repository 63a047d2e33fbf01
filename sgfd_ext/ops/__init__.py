"""Fused operators and their plain PyTorch references."""

from sgfd_ext.ops.kernels import get_kernels, set_kernels, use_kernels

__all__ = ["get_kernels", "set_kernels", "use_kernels"]
