"""Benchmark of topk_eval: the fused op against the PyTorch reference and a bare score matmul.

Shapes: the Office and Toys test splits (train items excluded, test items as targets) with
generated embeddings, and the Clothing scale (18,209 users x 17,318 items) with generated
interactions at d = 64 and 128. For each shape it reports the median time of the fused op,
the reference and ``user_emb @ item_emb.T``, their ratios and the peak extra memory of each.
Wall times are the medians of interleaved runs; the process CPU time (all threads) is recorded
too, since on a shared machine it is less sensitive to other load than wall time.

Peak extra memory on CPU is measured, not computed: before each call the kernel's peak-RSS
counter is reset (``/proc/self/clear_refs``), and the extra memory is the peak resident set
during the call minus the resident set before it. For this to see every allocation the script
runs under a fixed glibc mmap threshold (it re-executes itself with ``MALLOC_MMAP_THRESHOLD_``
set), so that freed buffers are returned to the system instead of being reused unseen. On CUDA
it is ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import sgfd_ext  # noqa: F401  (registers torch.ops.sgfd_ext)
from sgfd_ext.csr import CSR
from sgfd_ext.ops.topk_eval import topk_eval_reference

REPO_ROOT = Path(__file__).resolve().parents[1]
KS = (10, 20)
MMAP_THRESHOLD = "131072"


@dataclass
class Shape:
    name: str
    n_users: int
    n_items: int
    dim: int
    exclude: CSR
    target: CSR


def default_data_root() -> Path:
    env = os.environ.get("SGFD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) columns of one split file; CRLF line ends are handled by the csv module."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        u_col, i_col = header.index("userID"), header.index("itemID")
        rows = [(int(r[u_col]), int(r[i_col])) for r in reader if r]
    pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def real_shape(name: str, folder: Path, dim: int) -> Shape:
    train_u, train_i = read_pairs(folder / "train.csv")
    test_u, test_i = read_pairs(folder / "test.csv")
    n_users = int(max(train_u.max(), test_u.max())) + 1
    n_items = int(max(train_i.max(), test_i.max())) + 1
    exclude = CSR.from_pairs(train_u, train_i, n_users)
    target = CSR.from_pairs(test_u, test_i, n_users)
    return Shape(f"{name} d={dim}", n_users, n_items, dim, exclude, target)


def generated_shape(name: str, n_users: int, n_items: int, dim: int, seed: int = 0) -> Shape:
    """Random interactions at the density of the Amazon splits: ~6 train and ~3 test per user."""
    rng = np.random.default_rng(seed)
    n_train, n_test = rng.poisson(6, n_users) + 1, rng.poisson(2, n_users) + 1
    exclude = CSR.from_pairs(
        np.repeat(np.arange(n_users), n_train), rng.integers(0, n_items, n_train.sum()), n_users
    )
    target = CSR.from_pairs(
        np.repeat(np.arange(n_users), n_test), rng.integers(0, n_items, n_test.sum()), n_users
    )
    return Shape(f"{name} d={dim}", n_users, n_items, dim, exclude, target)


def shapes(quick: bool, data_root: Path) -> list[Shape]:
    found = []
    real = [("office", 64)] if quick else [("office", 64), ("toys", 64)]
    for folder, dim in real:
        path = data_root / "amazon" / folder
        if (path / "train.csv").exists() and (path / "test.csv").exists():
            found.append(real_shape(folder.capitalize(), path, dim))
        else:
            print(f"skipping {folder}: no train.csv/test.csv under {path}")
    if quick:
        found.append(generated_shape("Generated 3000x4000", 3000, 4000, 64))
    else:
        found.append(generated_shape("Clothing scale", 18_209, 17_318, 64))
        found.append(generated_shape("Clothing scale", 18_209, 17_318, 128))
    return found


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def peak_extra_mib(fn, device: torch.device) -> float:
    """Peak memory the call adds on top of what was allocated before it, in MiB."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        extra = torch.cuda.max_memory_allocated(device) - before
        del out
        return extra / 2**20
    before = rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = fn()
    extra = rss_kib("VmHWM") - before
    del out
    return extra / 2**10


def timed(fn, device: torch.device) -> tuple[float, float]:
    """Wall time and process CPU time (user + system, all threads) of one call, in seconds."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def bench_shape(shape: Shape, device: torch.device, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    user = torch.randn(shape.n_users, shape.dim, generator=gen).to(device)
    item = torch.randn(shape.n_items, shape.dim, generator=gen).to(device)
    exclude, target = shape.exclude.to(device), shape.target.to(device)
    ks = list(KS)

    def fused():
        return torch.ops.sgfd_ext.topk_eval(
            user, item, exclude.indptr, exclude.indices, target.indptr, target.indices, ks
        )

    def reference():
        return topk_eval_reference(user, item, exclude, target, ks)

    def matmul():
        return user @ item.T

    runs = {"fused": fused, "reference": reference, "matmul": matmul}
    fused_out, ref_out = fused(), reference()  # also the warm-up of both
    agree = (fused_out[0] == ref_out[0]).all(1).float().mean().item()
    del fused_out, ref_out
    matmul()

    # Interleaved, so that changes in machine load hit every variant alike; the slow reference
    # is timed at most three times.
    times = {name: [] for name in runs}
    for r in range(repeats):
        for name, fn in runs.items():
            if name != "reference" or r < min(repeats, 3):
                times[name].append(timed(fn, device))
    memory = {name: peak_extra_mib(fn, device) for name, fn in runs.items()}

    row = {
        "shape": shape.name,
        "users": shape.n_users,
        "items": shape.n_items,
        "dim": shape.dim,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "rows_equal_to_reference": round(agree, 6),
    }
    for name in runs:
        row[f"{name}_s"] = statistics.median(t[0] for t in times[name])
    for name in runs:
        row[f"{name}_cpu_s"] = statistics.median(t[1] for t in times[name])
    for name in runs:
        row[f"{name}_peak_mib"] = memory[name]
    row["speedup_vs_matmul"] = row["matmul_s"] / row["fused_s"]
    row["speedup_vs_reference"] = row["reference_s"] / row["fused_s"]
    row["cpu_time_vs_matmul"] = row["matmul_cpu_s"] / row["fused_cpu_s"]
    row["memory_vs_reference"] = row["fused_peak_mib"] / max(row["reference_peak_mib"], 1e-9)
    return row


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; skipping the plot")
        return
    names = [r["shape"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows)), 4))
    for offset, (key, label) in zip(
        (-0.27, 0.0, 0.27),
        (("fused_s", "fused op"), ("matmul_s", "bare matmul"), ("reference_s", "reference")),
    ):
        ax.bar(x + offset, [r[key] for r in rows], width=0.27, label=label)
    ax.set_xticks(x, names, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("median time (s)")
    ax.set_title(f"topk_eval, K={KS}, {rows[0]['device']}, {rows[0]['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding amazon/")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu" and os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
        os.execv(sys.executable, [sys.executable, *sys.argv])

    repeats = args.repeats or (3 if args.quick else 5)
    data_root = args.data_root or default_data_root()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"device={device} threads={torch.get_num_threads()} repeats={repeats} "
        f"load average={os.getloadavg()[0]:.2f}; generated embeddings"
    )

    rows = []
    for shape in shapes(args.quick, data_root):
        row = bench_shape(shape, device, repeats)
        rows.append(row)
        print(
            f"{row['shape']:>22} {row['users']}x{row['items']}: "
            f"fused {row['fused_s']:.3f}s  matmul {row['matmul_s']:.3f}s  "
            f"reference {row['reference_s']:.3f}s | x{row['speedup_vs_matmul']:.2f} vs matmul, "
            f"x{row['speedup_vs_reference']:.2f} vs reference "
            f"(CPU time x{row['cpu_time_vs_matmul']:.2f} vs matmul) | peak extra MiB: "
            f"fused {row['fused_peak_mib']:.1f}, matmul {row['matmul_peak_mib']:.1f}, "
            f"reference {row['reference_peak_mib']:.1f} "
            f"({100 * row['memory_vs_reference']:.2f}% of reference) | "
            f"rows equal to reference {row['rows_equal_to_reference']:.4f}",
            flush=True,
        )

    stem = f"topk_eval_{device.type}{'_quick' if args.quick else ''}"
    csv_path = args.out_dir / f"{stem}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path}")
    plot(rows, args.out_dir / f"{stem}.png")


if __name__ == "__main__":
    main()
