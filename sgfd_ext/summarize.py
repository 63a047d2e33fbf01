"""Summarise finished runs: ``python -m sgfd_ext.summarize runs/*/results.json``.

Also reads experiment folders (``runs/experiment-NAME``) and their ``runs/`` records.

Groups the runs that differ only in their seed and prints a Markdown table of the test metrics
as mean and standard deviation over seeds, with the number of runs and epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def run_label(results: dict) -> str:
    """``SGFD-bm3`` or ``bm3`` (``most-popular`` for the baseline)."""
    cfg = results["config"]
    return f"SGFD-{cfg['model']}" if cfg["sgfd"] else cfg["model"]


# Settings that do not change what a run computes; runs differing only in these are grouped.
_INCIDENTAL = {"seed", "out_dir", "data_root", "threads", "device", "time_limit_s", "run_dir"}


def _settings(results: dict) -> str:
    cfg = {k: v for k, v in results["config"].items() if k not in _INCIDENTAL}
    return json.dumps(cfg, sort_keys=True)


def _cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def summary_table(all_results: list[dict], metrics: tuple[str, ...]) -> str:
    """Markdown table, one row per (dataset, model), metrics as mean ± std over the runs."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in all_results:
        groups[(r["dataset"]["name"], run_label(r), _settings(r))].append(r)
    per_label = defaultdict(list)
    for dataset, label, settings in sorted(groups):
        per_label[(dataset, label)].append(settings)
    header = ["dataset", "model", "runs (seeds)", *(f"test {m}" for m in metrics),
              "best epoch", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (dataset, label, settings), runs in sorted(groups.items()):
        variants = per_label[(dataset, label)]
        if len(variants) > 1:
            label = f"{label} (settings {variants.index(settings) + 1} of {len(variants)})"
        source = runs[0]["dataset"].get("feature_source", "real")
        name = dataset if source == "real" else f"{dataset} ({source} features)"
        seeds = ",".join(str(r["config"]["seed"]) for r in sorted(runs, key=lambda r: r["config"]["seed"]))
        cells = [_cell([r["test"][m] for r in runs]) for m in metrics]
        epochs = [r.get("best_epoch", 0) for r in runs]
        seconds = [r.get("train_seconds", 0.0) for r in runs]
        lines.append(f"| {name} | {label} | {len(runs)} ({seeds}) | " + " | ".join(cells)
                     + f" | {statistics.fmean(epochs):.0f} | {statistics.fmean(seconds):.0f} |")
    return "\n".join(lines)


def _runs_in(path: Path) -> list[dict]:
    """The finished runs in a file: a run's ``results.json``, an experiment's ``results.json``
    (all its runs), or one run record of an experiment's ``runs/`` folder."""
    record = json.loads(path.read_text())
    runs = record["runs"] if isinstance(record, dict) and "runs" in record else [record]
    for run in runs:
        if not isinstance(run, dict) or not {"config", "dataset", "test"} <= set(run):
            raise ValueError("expected finished runs with config, dataset and test metrics")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgfd_ext.summarize", description=__doc__)
    parser.add_argument("results", nargs="+", help="results.json files or run folders")
    parser.add_argument("--metrics", default="recall@20,ndcg@20,recall@10,ndcg@10")
    args = parser.parse_args(argv)
    paths = []
    for item in args.results:
        path = Path(item)
        if path.is_dir():
            found = ([path / "results.json"] if (path / "results.json").is_file()
                     else sorted(path.glob("*/results.json")) or sorted(path.glob("*.json")))
            if not found:
                print(f"skipped {path}: no results.json (an unfinished run?)", file=sys.stderr)
            paths.extend(found)
        else:
            paths.append(path)
    loaded = []
    for path in paths:
        try:
            loaded.extend(_runs_in(path))
        except (OSError, ValueError) as err:
            parser.exit(2, f"error: cannot read {path}: {err}\n")
    if not loaded:
        parser.exit(2, "error: no results to summarise\n")
    metrics = tuple(args.metrics.split(","))
    missing = [m for m in metrics if any(m not in r["test"] for r in loaded)]
    if missing:
        parser.exit(2, f"error: unknown metric(s) {', '.join(missing)}; known: "
                       f"{', '.join(sorted(loaded[0]['test']))}\n")
    print(summary_table(loaded, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
