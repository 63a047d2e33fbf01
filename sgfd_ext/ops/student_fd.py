"""Student projection fused with feature distillation (linear, leaky ReLU, L2 row norm, MSE).

For an empty batch the loss is defined as 0 and the student is an empty ``[0, d]`` tensor. The
fused op raises on NaN or infinity in its inputs; the reference lets them propagate.

Limitation: the fused op needs ``negative_slope >= 0`` (its backward reads the activation's sign
from the normalised output) and has no double backward; the reference has neither restriction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sgfd_ext.ops.kernels import get_kernels

NORM_EPS = 1e-12

__all__ = ["student_fd", "student_fd_reference"]


def student_fd_reference(
    x: Tensor, weight: Tensor, bias: Tensor, teacher: Tensor, negative_slope: float = 0.01
) -> tuple[Tensor, Tensor]:
    """Plain PyTorch version: ``s = normalize(leaky_relu(x @ weight + bias))``, ``fd = mse(s, t)``.

    It is the specification of the fused op and runs on any dtype and device.
    """
    s = F.normalize(F.leaky_relu(torch.addmm(bias, x, weight), negative_slope), dim=1, eps=NORM_EPS)
    if s.numel() == 0:
        return s, (s - teacher).square().sum()
    return s, F.mse_loss(s, teacher)


def student_fd(
    x: Tensor, weight: Tensor, bias: Tensor, teacher: Tensor, negative_slope: float = 0.01
) -> tuple[Tensor, Tensor]:
    """Student features ``[B, d]`` and their mean squared distance to the teacher's features.

    ``weight`` is ``[D, d]`` (the transpose of ``nn.Linear.weight``); detach ``teacher`` to move
    only the student.
    """
    if get_kernels() == "reference":
        return student_fd_reference(x, weight, bias, teacher, negative_slope)
    s, fd, _ = torch.ops.sgfd_ext.student_fd.default(x, weight, bias, teacher, negative_slope)
    return s, fd


def _norm_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


@torch.library.register_fake("sgfd_ext::student_fd")
def _student_fd_fake(x, weight, bias, teacher, negative_slope=0.01):
    rows, cols = x.shape[0], weight.shape[1]
    s = x.new_empty((rows, cols))
    norm = x.new_empty((rows,), dtype=_norm_dtype(x.dtype))
    return s, x.new_empty(()), norm


@torch.library.register_fake("sgfd_ext::student_fd_backward")
def _student_fd_backward_fake(
    grad_s, grad_fd, s, norm, teacher, x, weight, negative_slope, output_mask
):
    rows, cols = s.shape
    grad_x = s.new_empty((rows, weight.shape[0])) if output_mask[0] else s.new_empty((0,))
    grad_weight = s.new_empty((x.shape[1], cols)) if output_mask[1] else s.new_empty((0,))
    grad_bias = s.new_empty((cols,)) if output_mask[2] else s.new_empty((0,))
    grad_teacher = s.new_empty((rows, cols)) if output_mask[3] else s.new_empty((0,))
    return grad_x, grad_weight, grad_bias, grad_teacher


def _setup_context(ctx, inputs, output):
    x, weight, _bias, teacher, negative_slope = inputs
    s, _fd, norm = output
    need_x, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ctx.mark_non_differentiable(norm)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(s, norm, teacher, x if need_weight else None, weight if need_x else None)
    ctx.negative_slope = negative_slope


def _backward(ctx, grad_s, grad_fd, _grad_norm):
    s, norm, teacher, x, weight = ctx.saved_tensors
    mask = [bool(n) for n in ctx.needs_input_grad[:4]]
    if not any(mask):
        return None, None, None, None, None
    grads = torch.ops.sgfd_ext.student_fd_backward.default(
        grad_s, grad_fd, s, norm, teacher, x, weight, ctx.negative_slope, mask
    )
    return (*(g if m else None for g, m in zip(grads, mask, strict=True)), None)


torch.library.register_autograd("sgfd_ext::student_fd", _backward, setup_context=_setup_context)

# Limitation: under autocast the fused op runs in float32 (its CPU kernel has no bfloat16 path),
# so only the layers around it gain from reduced precision.
for _device in ("cpu", "cuda"):
    torch.library.register_autocast("sgfd_ext::student_fd", _device, torch.float32)
