"""Benchmark: fused BPR loss against the PyTorch reference at Clothing scale.

Times forward + backward into dense table gradients. The floor column is the time to allocate
and zero the two dense gradients, which every implementation writes.

    python bench/bench_bpr.py --quick
    python bench/bench_bpr.py --out-dir bench/results
"""

from __future__ import annotations

import argparse

import torch
from harness import measure, operator_arguments, print_header, print_row, report

import sgfd_ext  # noqa: F401  (loads the operators)
from sgfd_ext.ops.bpr import bpr_loss, bpr_loss_reference

# Clothing: 18,209 users, 17,318 items; batch 2048 as in the published settings.
USERS, ITEMS = 18209, 17318
FULL_CASES = [(2048, 64), (2048, 128), (8192, 128)]
REG = 1e-4


def make_case(B: int, d: int, device: str, dtype: torch.dtype):
    gen = torch.Generator(device="cpu").manual_seed(0)
    user_table = (0.1 * torch.randn(USERS, d, generator=gen)).to(device, dtype).requires_grad_()
    item_table = (0.1 * torch.randn(ITEMS, d, generator=gen)).to(device, dtype).requires_grad_()
    users = torch.randint(0, USERS, (B,), generator=gen).to(device)
    pos = torch.randint(0, ITEMS, (B,), generator=gen).to(device)
    neg = torch.randint(0, ITEMS, (B,), generator=gen).to(device)
    return user_table, item_table, users, pos, neg


def step(fn, user_table, item_table, users, pos, neg):
    """One forward + backward."""

    def run() -> None:
        fn(user_table, item_table, users, pos, neg, REG).backward()
        user_table.grad = None
        item_table.grad = None

    return run


def gradient_fill(user_table, item_table):
    """Allocating and zeroing the dense gradients, which no implementation avoids."""

    def run() -> None:
        torch.zeros_like(user_table)
        torch.zeros_like(item_table)

    return run


COLUMNS = ["batch", "d", "fused_ms", "reference_ms", "floor_ms", "speedup", "speedup_best",
           "fused_over_floor_best", "fused_peak_mib", "reference_peak_mib"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    operator_arguments(parser, "one shape, a few seconds")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    cases = [(2048, 128)] if args.quick else FULL_CASES
    repeats = args.repeats or (10 if args.quick else 50)

    threads = torch.get_num_threads()
    print(
        f"bpr_loss on {args.device} ({args.dtype}, {threads} CPU threads), {USERS} users, "
        f"{ITEMS} items, forward + backward,"
    )
    print(f"median (and best) of {repeats} runs; floor = allocating the dense gradients")
    print_header(COLUMNS)
    rows = []
    for B, d in cases:
        tensors = make_case(B, d, args.device, dtype)
        fns = {
            "fused": step(bpr_loss, *tensors),
            "reference": step(bpr_loss_reference, *tensors),
            "floor": gradient_fill(*tensors[:2]),
        }
        row = {"device": args.device, "dtype": args.dtype, "threads": threads}
        row.update(users=USERS, items=ITEMS, batch=B, d=d)
        row.update(measure(fns, "floor", args.device, repeats, warmup=3))
        rows.append(row)
        print_row(row, COLUMNS)

    labels = [f"batch {r['batch']} d{r['d']}" for r in rows]
    tag = "bpr_quick" if args.quick else "bpr"
    report(rows, args.out_dir, tag, f"bpr_loss ({args.device}, {args.dtype})", labels)


if __name__ == "__main__":
    main()
