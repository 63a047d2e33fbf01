"""Fused student projection with feature distillation against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sgfd_ext  # noqa: F401  (loads the operators)
from sgfd_ext.ops import use_kernels
from sgfd_ext.ops.student_fd import student_fd, student_fd_reference

OPS = torch.ops.sgfd_ext
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

# (B, D, d): empty batch, one row, widths that are not multiples of the SIMD width, D % 16 != 0.
SHAPES = [(0, 8, 4), (1, 16, 3), (5, 20, 17), (33, 37, 65), (64, 48, 128)]


def make_inputs(B, D, d, *, dtype=torch.float32, device="cpu", x_grad=True, teacher_grad=True):
    gen = torch.Generator().manual_seed(B * 1000 + D * 10 + d)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64)
    weight = torch.randn(D, d, generator=gen, dtype=torch.float64) / D**0.5
    bias = 0.1 * torch.randn(d, generator=gen, dtype=torch.float64)
    teacher = F.normalize(torch.randn(B, d, generator=gen, dtype=torch.float64), dim=1)
    tensors = [t.to(device=device, dtype=dtype) for t in (x, weight, bias, teacher)]
    for t, grad in zip(tensors, (x_grad, True, True, teacher_grad), strict=True):
        t.requires_grad_(grad)
    return tensors


def run_both(fn, inputs, grad_s, fd_weight=3.0, slope=0.01):
    """Values and input gradients of ``fd_weight * fd + <s, grad_s>``."""
    s, fd = fn(*inputs, slope)
    loss = fd_weight * fd + (s * grad_s).sum()
    grads = torch.autograd.grad(loss, [t for t in inputs if t.requires_grad])
    return s.detach(), fd.detach(), grads


def tolerances(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-11}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("x_grad,teacher_grad", [(True, True), (False, True), (False, False)])
def test_matches_reference(shape, dtype, x_grad, teacher_grad):
    inputs = make_inputs(*shape, dtype=dtype, x_grad=x_grad, teacher_grad=teacher_grad)
    grad_s = torch.randn(shape[0], shape[2], dtype=dtype)
    s, fd, grads = run_both(student_fd, inputs, grad_s)
    s_ref, fd_ref, grads_ref = run_both(student_fd_reference, inputs, grad_s)
    tol = tolerances(dtype)
    torch.testing.assert_close(s, s_ref, **tol)
    torch.testing.assert_close(fd, fd_ref, **tol)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, **tol)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.5])
def test_slopes_and_clamped_rows(slope):
    # Row 0 lies below zero (its activation vanishes when slope is 0); row 1 is the tiny bias
    # alone, so its norm is under the clamp and the row is only scaled.
    x, weight, bias, teacher = make_inputs(6, 12, 9, dtype=torch.float64)
    with torch.no_grad():
        weight.abs_()
        x[0] = -1.0
        x[1] = 0.0
        bias.copy_(1e-14 * torch.linspace(-1.0, 2.0, 9, dtype=torch.float64))
    grad_s = torch.randn(6, 9, dtype=torch.float64)
    got = run_both(student_fd, (x, weight, bias, teacher), grad_s, slope=slope)
    ref = run_both(student_fd_reference, (x, weight, bias, teacher), grad_s, slope=slope)
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_only_one_output_used():
    inputs = make_inputs(7, 20, 17, dtype=torch.float64)
    for pick in (lambda s, fd: fd, lambda s, fd: s.sum() * 0.5):
        grads = torch.autograd.grad(pick(*student_fd(*inputs)), inputs, allow_unused=True)
        grads_ref = torch.autograd.grad(
            pick(*student_fd_reference(*inputs)), inputs, allow_unused=True
        )
        for g, g_ref, t in zip(grads, grads_ref, inputs, strict=True):
            # An input the loss does not reach may get None or zeros.
            g = torch.zeros_like(t) if g is None else g
            g_ref = torch.zeros_like(t) if g_ref is None else g_ref
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


def test_frozen_projection():
    # Only x and the teacher need gradients: the weight gradient product is skipped.
    x, weight, bias, teacher = make_inputs(11, 21, 17, dtype=torch.float64)
    weight.requires_grad_(False)
    bias.requires_grad_(False)
    grad_s = torch.randn(11, 17, dtype=torch.float64)
    got = run_both(student_fd, (x, weight, bias, teacher), grad_s)
    ref = run_both(student_fd_reference, (x, weight, bias, teacher), grad_s)
    assert len(got[2]) == 2
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_transposed_linear_weight():
    x, _, bias, teacher = make_inputs(9, 24, 5)
    linear_weight = torch.randn(5, 24, requires_grad=True)
    _, fd = student_fd(x, linear_weight.t(), bias, teacher)
    (grad,) = torch.autograd.grad(fd, linear_weight)
    _, fd_ref = student_fd_reference(x, linear_weight.t(), bias, teacher)
    (grad_ref,) = torch.autograd.grad(fd_ref, linear_weight)
    torch.testing.assert_close(fd, fd_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


def test_gradcheck_float64():
    inputs = make_inputs(4, 6, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: student_fd(*a, 0.1), inputs)
    partial = make_inputs(3, 5, 17, dtype=torch.float64, x_grad=False, teacher_grad=False)
    assert torch.autograd.gradcheck(lambda *a: student_fd(*a), partial)


def test_empty_batch_is_zero():
    x, weight, bias, teacher = make_inputs(0, 8, 4)
    s, fd = student_fd(x, weight, bias, teacher)
    assert s.shape == (0, 4) and fd.item() == 0.0
    grad_w, grad_b = torch.autograd.grad(fd, (weight, bias))
    assert torch.count_nonzero(grad_w) == 0 and torch.count_nonzero(grad_b) == 0


@pytest.mark.parametrize(
    "target,row,value,match",
    [
        ("x", 2, float("nan"), "x, weight or bias"),
        ("weight", 1, float("inf"), "x, weight or bias"),
        ("teacher", 3, float("nan"), "teacher contains NaN or infinity in row 3"),
    ],
)
def test_non_finite_inputs_raise(target, row, value, match):
    x, weight, bias, teacher = (t.detach() for t in make_inputs(5, 8, 4))
    named = {"x": x, "weight": weight, "teacher": teacher}
    named[target][row, 1] = value
    with pytest.raises(RuntimeError, match=match):
        student_fd(x, weight, bias, teacher)


def test_bad_arguments_raise():
    x, weight, bias, teacher = (t.detach() for t in make_inputs(5, 8, 4))
    with pytest.raises(RuntimeError, match="negative_slope"):
        student_fd(x, weight, bias, teacher, -0.1)
    with pytest.raises(RuntimeError, match="teacher must be"):
        student_fd(x, weight, bias, teacher[:, :3])
    with pytest.raises(RuntimeError, match="features but weight expects"):
        student_fd(x[:, :7], weight, bias, teacher)
    with pytest.raises(RuntimeError, match="bias must be"):
        student_fd(x, weight, bias.double(), teacher)


def test_reference_kernels_selectable():
    # bfloat16 has no CPU kernel, so only the reference path can run it.
    inputs = [t.detach().bfloat16() for t in make_inputs(3, 8, 4)]
    with pytest.raises(RuntimeError, match="CPU kernel supports float32 and float64"):
        student_fd(*inputs)
    with use_kernels("reference"):
        s, fd = student_fd(*inputs)
    expected_s, expected_fd = student_fd_reference(*inputs)
    assert torch.equal(s, expected_s) and torch.equal(fd, expected_fd)


@pytest.mark.parametrize("shape", [(0, 8, 4), (5, 20, 17)])
def test_opcheck(shape):
    inputs = make_inputs(*shape)
    torch.library.opcheck(OPS.student_fd.default, (*inputs, 0.01))


def test_opcheck_backward():
    x, weight, bias, teacher = (t.detach() for t in make_inputs(6, 20, 17))
    s, _, norm = OPS.student_fd(x, weight, bias, teacher, 0.01)
    grad_s, grad_fd = torch.randn_like(s), torch.tensor(1.5)
    for mask in ([True, True, True, True], [False, True, True, False]):
        args = (grad_s, grad_fd, s, norm, teacher, x, weight, 0.01, mask)
        torch.library.opcheck(OPS.student_fd_backward.default, args)
    torch.library.opcheck(
        OPS.student_fd_backward.default,
        (None, grad_fd, s, norm, teacher, None, None, 0.01, [False, False, False, True]),
    )


@CUDA
@pytest.mark.parametrize("shape", [(1, 16, 3), (33, 37, 65), (300, 96, 128)])
def test_cuda_matches_reference(shape):
    inputs = make_inputs(*shape, device="cuda")
    grad_s = torch.randn(shape[0], shape[2], device="cuda")
    got = run_both(student_fd, inputs, grad_s)
    ref = run_both(student_fd_reference, inputs, grad_s)
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.library.opcheck(OPS.student_fd.default, (*inputs, 0.01))


@CUDA
def test_cuda_bfloat16_close_to_float32():
    inputs = make_inputs(257, 96, 64, device="cuda")
    grad_s = torch.randn(257, 64, device="cuda")
    ref = run_both(student_fd_reference, inputs, grad_s)
    low = [t.detach().bfloat16().requires_grad_() for t in inputs]
    got = run_both(student_fd, low, grad_s.bfloat16())
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        torch.testing.assert_close(a.float(), b, rtol=5e-2, atol=2e-2)


@CUDA
def test_cuda_non_finite_raises():
    x, weight, bias, teacher = (t.detach() for t in make_inputs(5, 8, 4, device="cuda"))
    x[1, 0] = float("nan")
    with pytest.raises(RuntimeError, match="x, weight or bias"):
        student_fd(x, weight, bias, teacher)
