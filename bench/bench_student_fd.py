"""Benchmark: fused student projection + feature distillation against the PyTorch reference.

Times forward + backward (gradients of weight, bias, teacher, and x when asked) at Clothing
scale and compares both with the bare matrix products every implementation needs.

    python bench/bench_student_fd.py --quick
    python bench/bench_student_fd.py --out-dir bench/results
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from harness import measure, operator_arguments, print_header, print_row, report

import sgfd_ext  # noqa: F401  (loads the operators)
from sgfd_ext.ops.student_fd import student_fd, student_fd_reference

# Clothing: 17,318 items; VGG16 image features (4096) and BERT text features (768).
FULL_BATCHES = (2048, 17318)
FULL_FEATURES = (4096, 768)
FULL_LATENTS = (64, 128)


def make_case(B: int, D: int, d: int, x_grad: bool, device: str, dtype: torch.dtype):
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(B, D, generator=gen).to(device, dtype).requires_grad_(x_grad)
    weight = (torch.randn(D, d, generator=gen) / D**0.5).to(device, dtype).requires_grad_()
    bias = torch.zeros(d, device=device, dtype=dtype, requires_grad=True)
    teacher = F.normalize(torch.randn(B, d, generator=gen), dim=1).to(device, dtype)
    teacher.requires_grad_()  # the reference method does not detach the teacher
    grad_s = torch.randn(B, d, generator=gen).to(device, dtype)
    return x, weight, bias, teacher, grad_s


def step(fn, x, weight, bias, teacher, grad_s):
    """One forward + backward, with a gradient arriving at both outputs."""

    def run() -> None:
        s, fd = fn(x, weight, bias, teacher)
        torch.autograd.backward([s, fd], [grad_s, torch.ones_like(fd)])
        for t in (x, weight, bias, teacher):
            t.grad = None

    return run


def matrix_products(x, weight, grad_s):
    """The products no implementation avoids: x @ W, x^T @ grad_z, and grad_z @ W^T for grad x."""
    w, g = weight.detach(), grad_s

    def run() -> None:
        torch.mm(x.detach(), w)
        torch.mm(x.detach().t(), g)
        if x.requires_grad:
            torch.mm(g, w.t())

    return run


COLUMNS = ["B", "D", "d", "x_grad", "fused_ms", "reference_ms", "matmul_ms", "speedup",
           "fused_over_matmul", "speedup_best", "fused_over_matmul_best", "fused_peak_mib",
           "reference_peak_mib"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    operator_arguments(parser, "one small shape, a few seconds")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.quick:
        cases = [(2048, 768, 64, False)]
    else:
        cases = list(itertools.product(FULL_BATCHES, FULL_FEATURES, FULL_LATENTS, (False, True)))
    repeats = args.repeats or (5 if args.quick else 7)

    threads = torch.get_num_threads()
    print(f"student_fd on {args.device} ({args.dtype}, {threads} CPU threads), forward + backward,")
    print(f"median (and best) of {repeats} runs; matmul = the bare matrix products")
    print_header(COLUMNS)
    rows = []
    for B, D, d, x_grad in cases:
        x, weight, bias, teacher, grad_s = make_case(B, D, d, x_grad, args.device, dtype)
        fns = {
            "fused": step(student_fd, x, weight, bias, teacher, grad_s),
            "reference": step(student_fd_reference, x, weight, bias, teacher, grad_s),
            "matmul": matrix_products(x, weight, grad_s),
        }
        row = {"device": args.device, "dtype": args.dtype, "threads": threads}
        row.update(B=B, D=D, d=d, x_grad=x_grad)
        row.update(measure(fns, "matmul", args.device, repeats))
        rows.append(row)
        print_row(row, COLUMNS)
        del x, weight, bias, teacher, grad_s, fns

    labels = [f"B{r['B']} D{r['D']} d{r['d']}{' +gx' if r['x_grad'] else ''}" for r in rows]
    tag = "student_fd_quick" if args.quick else "student_fd"
    report(rows, args.out_dir, tag, f"student_fd ({args.device}, {args.dtype})", labels)


if __name__ == "__main__":
    main()
