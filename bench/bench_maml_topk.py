"""Time the fused MAML top-K op against its PyTorch reference on Office-sized inputs.

``python bench/bench_maml_topk.py [--quick] [--out-dir DIR]``: prints one line per case and
writes ``maml_topk.json`` to the output folder. Numbers are measured, not asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import sgfd_ext  # noqa: F401  (registers the operators)
from sgfd_ext.csr import CSR
from sgfd_ext.ops.kernels import use_kernels
from sgfd_ext.ops.maml_topk import maml_topk

# (users, items, attention width, d): Office's full test ranking, and the reference code's
# 5d-wide attention.
CASES = [(4874, 2406, 64, 64), (4874, 2406, 320, 64)]
QUICK_CASES = [(256, 2406, 64, 64)]


def _inputs(n_users, n_items, a, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = ((n_users, a), (n_users, d), (n_items, a), (n_items, d), (d, a), (d,))
    tensors = [torch.randn(*s, generator=g) * 0.3 for s in shapes]
    rng = np.random.default_rng(seed)
    n_ex = 8 * n_users
    exclude = CSR.from_pairs(rng.integers(0, n_users, n_ex), rng.integers(0, n_items, n_ex),
                             n_users)
    return (*tensors, exclude)


def _time(kernels: str, args, k: int, users: int) -> float:
    with use_kernels(kernels):
        start = time.perf_counter()
        maml_topk(*[t[:users] for t in args[:2]], *args[2:6], args[6].rows(0, users), k)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="one small case")
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--reference-users", type=int, default=512,
                   help="users timed with the reference (scaled to all users)")
    args = p.parse_args(argv)

    results = []
    for n_users, n_items, a, d in QUICK_CASES if args.quick else CASES:
        inputs = _inputs(n_users, n_items, a, d)
        fused = _time("fused", inputs, 20, n_users)
        ref_users = min(n_users, args.reference_users)
        reference = _time("reference", inputs, 20, ref_users) * n_users / ref_users
        row = {"users": n_users, "items": n_items, "attention": a, "d": d,
               "threads": torch.get_num_threads(), "fused_s": fused, "reference_s": reference}
        results.append(row)
        print(f"{n_users} users x {n_items} items, attention {a}, d {d}, "
              f"{row['threads']} threads: fused {fused:.2f} s, reference {reference:.2f} s "
              f"(scaled from {ref_users} users)")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "maml_topk.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
