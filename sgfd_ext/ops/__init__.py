"""Fused operators and their plain PyTorch references.

Importing this package registers every operator's fake implementation and autograd formula.
"""

from sgfd_ext.ops import bpr, student_fd, topk_eval  # noqa: F401  (registrations)
from sgfd_ext.ops.kernels import get_kernels, set_kernels, use_kernels

__all__ = ["get_kernels", "set_kernels", "use_kernels"]
