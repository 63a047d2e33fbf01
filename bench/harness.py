"""Timing, peak-memory and report helpers shared by the operator benchmarks."""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "results"


def operator_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """Flags shared by the operator benchmarks: mode, output, device, dtype, threads, repeats."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None)


def sync(device: str) -> None:
    """Wait for queued kernels so a wall-clock reading covers them."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(
    fns: dict[str, Callable[[], None]], device: str, repeats: int, warmup: int = 1
) -> dict[str, tuple[float, float]]:
    """Median and best milliseconds of each function; rounds interleave the functions so that
    load from other processes hits them alike (the best run is the least disturbed one)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(v), min(v)) for name, v in times.items()}


def peak_extra_mib(fn: Callable[[], None], device: str) -> float | None:
    """Peak memory allocated while fn runs, above what was allocated before, in MiB.

    On CPU this replays the allocation events of the PyTorch profiler; None when unavailable.
    """
    if device.startswith("cuda"):
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
            fn()
        events = [
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]"
        ]
    except (AttributeError, RuntimeError):
        return None
    current = peak = 0
    for _, nbytes in sorted(events):
        current += nbytes
        peak = max(peak, current)
    return peak / 2**20


def measure(
    fns: dict[str, Callable[[], None]], floor: str, device: str, repeats: int, warmup: int = 1
) -> dict[str, float | None]:
    """Result columns of one configuration: median and best milliseconds of every function,
    fused against reference and against the floor, and the peak extra memory of both."""
    timed = time_ms(fns, device, repeats, warmup)
    row: dict[str, float | None] = {}
    for name, (median, best) in timed.items():
        row[f"{name}_ms"] = round(median, 3)
        row[f"{name}_best_ms"] = round(best, 3)
    for k, suffix in ((0, ""), (1, "_best")):
        row[f"speedup{suffix}"] = round(timed["reference"][k] / timed["fused"][k], 3)
        row[f"fused_over_{floor}{suffix}"] = round(timed["fused"][k] / timed[floor][k], 3)
    for name in ("fused", "reference"):
        mib = peak_extra_mib(fns[name], device)
        row[f"{name}_peak_mib"] = None if mib is None else round(mib, 1)
    return row


def print_row(row: dict, columns: list[str]) -> None:
    """One line of the results table (the column names as they appear in the CSV)."""
    print("  ".join(str(row[c]).rjust(max(len(c), 8)) for c in columns))


def print_header(columns: list[str]) -> None:
    """The header line of the results table."""
    print("  ".join(c.rjust(max(len(c), 8)) for c in columns))


def report(rows: list[dict], out_dir: Path, tag: str, title: str, labels: list[str]) -> None:
    """Write the rows as CSV and the median times as a PNG chart, and say where they went."""
    csv_path = out_dir / f"{tag}.csv"
    write_csv(rows, csv_path)
    names = [k[: -len("_ms")] for k in rows[0] if k.endswith("_ms") and "_best" not in k]
    series = {name: [r[f"{name}_ms"] for r in rows] for name in names}
    plotted = write_bar_chart(labels, series, title, out_dir / f"{tag}.png")
    note = f" and {tag}.png" if plotted else " (no PNG: matplotlib is not installed)"
    print(f"wrote {csv_path}{note}")


def write_csv(rows: list[dict], path: Path) -> None:
    """Write the result rows (dicts with the same keys) as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_bar_chart(
    labels: list[str], series: dict[str, list[float]], title: str, path: Path
) -> bool:
    """Grouped bar chart of milliseconds per configuration; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.5))
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("forward + backward, ms (median)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
