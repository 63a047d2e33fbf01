"""Base models against their SGFD variants over several seeds, with a paper-style report.

``python -m sgfd_ext.experiment --dataset office --models bm3,grcn,maml --seeds 5``
trains every base model and its SGFD variant with seeds 0..4 (selection on validation, test
reported), optionally each SGFD ablation too (``--ablations no-ce,no-ld``), and writes
``report.md``, ``results.json`` and ``plot.png`` in the output folder. Finished runs are kept in
``runs/`` there and skipped when the command is repeated.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from sgfd_ext.cli_config import (
    ABLATIONS,
    FEATURELESS_MODELS,
    add_train_arguments,
    config_from_args,
)
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.files import write_json_atomic
from sgfd_ext.models import MODELS
from sgfd_ext.presets import DATASET_ALIASES
from sgfd_ext.report import ablation_table, features_note, main_table, write_report

log = logging.getLogger("sgfd_ext.experiment")


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sgfd_ext.experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    p.set_defaults(model=None, seed=None, out_dir=None)
    single_run = {"model", "seed", "no_sgfd", *(f.replace("-", "_") for f in ABLATIONS)}
    for action in p._actions:
        if action.dest in single_run:
            action.help = argparse.SUPPRESS
        if action.dest == "out_dir":
            action.help = "experiment folder (default: runs/experiment-DATASET)"
    p.add_argument("--models", default="bm3,grcn,maml", help="comma-separated base models")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    p.add_argument("--ablations", default="",
                   help=f"comma-separated SGFD ablations, from: {', '.join(ABLATIONS)}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    if args.model is not None or args.seed is not None or args.no_sgfd:
        p.error("--model, --seed and --no-sgfd belong to single runs; use --models and --seeds")
    given = [f for f in ABLATIONS if getattr(args, f.replace("-", "_"))]
    if given:
        p.error(f"give ablations as --ablations {','.join(given)}")
    args.models = _split(args.models)
    args.ablations = _split(args.ablations)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; known: {sorted(MODELS)}")
    featureless = [m for m in args.models if m in FEATURELESS_MODELS]
    if featureless:
        p.error(f"{', '.join(featureless)} take no item features, so there is no SGFD variant "
                "to compare; train them with python -m sgfd_ext.train")
    unknown = [a for a in args.ablations if a not in ABLATIONS]
    if unknown:
        p.error(f"unknown ablations {unknown}; known: {list(ABLATIONS)}")
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def planned_runs(models: list[str], seeds: int, ablations: list[str]) -> list[tuple[str, str, int]]:
    """(model, variant, seed) of every run: base, SGFD, then each ablation, seed by seed."""
    variants = ["base", "sgfd", *ablations]
    return [(m, v, s) for m in models for s in range(seeds) for v in variants]


def run_config(args: argparse.Namespace, model: str, variant: str, seed: int, out_dir: Path):
    """The training configuration of one run of the experiment."""
    run_args = copy.copy(args)
    run_args.model, run_args.seed = model, seed
    run_args.no_sgfd = variant == "base"
    run_args.out_dir = str(out_dir)
    ablations = () if variant in ("base", "sgfd") else (variant,)
    return config_from_args(run_args, ablations=ablations)


def _changed_settings(record: dict, cfg) -> list[str]:
    """Settings of a stored run that differ from the planned configuration (the output folder
    aside), compared as they are written to JSON."""
    stored = record.get("config", {})
    wanted = json.loads(json.dumps(cfg.to_dict()))
    keys = (set(stored) | set(wanted)) - {"out_dir"}
    return sorted(k for k in keys if stored.get(k) != wanted.get(k))


def run_experiment(dataset: Dataset, args: argparse.Namespace, out_dir: Path,
                   train: Callable[..., dict] | None = None) -> list[dict]:
    """Train (or reload) every planned run and return their records; ``train`` defaults to
    ``sgfd_ext.train.train_one``."""
    if train is None:
        from sgfd_ext.train import train_one as train
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    plan = planned_runs(args.models, args.seeds, args.ablations)
    records = []
    for n, (model, variant, seed) in enumerate(plan, 1):
        path = runs_dir / f"{model}-{variant}-seed{seed}.json"
        cfg = run_config(args, model, variant, seed, out_dir)
        if path.exists():
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not a readable run record ({err}); delete it to "
                                 "train that run again") from None
            changed = _changed_settings(record, cfg)
            if changed:
                raise ValueError(
                    f"{path}: this finished run was trained with other settings "
                    f"({', '.join(changed)}); repeat the original command or use a new --out-dir"
                )
            log.info("[%d/%d] %s exists, skipped", n, len(plan), path.name)
            records.append(record)
            continue
        log.info("[%d/%d] training %s %s seed %d", n, len(plan), model, variant, seed)
        result = train(dataset, cfg, progress=not args.quiet)
        record = {"model": model, "variant": variant, "seed": seed,
                  "feature_source": dataset.feature_source, **result}
        write_json_atomic(record, path)
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from sgfd_ext.data import DataError, load_dataset

    name = DATASET_ALIASES.get(args.dataset, args.dataset)
    out_dir = Path(args.out_dir or f"runs/experiment-{name}")
    try:
        for model in args.models:  # bad settings fail here, before any data is read
            run_config(args, model, "sgfd", 0, out_dir)
        dataset = load_dataset(name, args.data_root, seed=0,
                               generated_features=args.generated_features,
                               labels_path=args.labels_path, n_clusters=args.n_clusters)
        if dataset.feature_source != "real":
            log.warning("item features of %s are %s, not real", dataset.name,
                        dataset.feature_source)
        runs = run_experiment(dataset, args, out_dir)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = {
        "dataset": dataset.name,
        "feature_source": dataset.feature_source,
        "dataset_statistics": dataset.statistics(),
        "selection": "test Recall@20 (leaks)" if args.select_on_test else "validation Recall@20",
        "command": " ".join(["python -m sgfd_ext.experiment",
                             *(sys.argv[1:] if argv is None else argv)]),
    }
    paths = write_report(out_dir, runs, args.models, args.ablations, info)

    print(f"\n{dataset.name}: {features_note(dataset.feature_source)}")
    print(main_table(runs, args.models))
    if args.ablations:
        print("\nAblations (full SGFD vs each):")
        print(ablation_table(runs, args.models, args.ablations))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
