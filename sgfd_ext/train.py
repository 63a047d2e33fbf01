"""Train and evaluate one model: ``python -m sgfd_ext.train --dataset NAME --model bm3``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from sgfd_ext import distributed
from sgfd_ext.baselines import item_knn, most_popular
from sgfd_ext.checkpoint import (
    RESULTS_FILE,
    RESUMABLE_CHANGES,
    CheckpointError,
    IncompatibleRunError,
    RunDirectory,
    differences,
)
from sgfd_ext.cli_config import add_train_arguments, config_from_args
from sgfd_ext.config import TrainConfig
from sgfd_ext.data import DataError, load_dataset
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.distributed import DistributedTrainer
from sgfd_ext.files import write_json_atomic
from sgfd_ext.trainer import Callbacks, Trainer, environment

log = logging.getLogger("sgfd_ext.train")

# Training-free baselines: fitted on the training split, evaluated like every model.
BASELINES = {"most-popular": most_popular, "itemknn": item_knn}


def run_name(cfg: TrainConfig) -> str:
    """A readable, unique run folder name."""
    model = f"sgfd-{cfg.model}" if cfg.sgfd else cfg.model
    return f"{cfg.dataset}-{model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def metrics_table(results: dict, ks: tuple[int, ...]) -> str:
    """Plain-text table of the final metrics per split."""
    names = ("recall", "ndcg", "precision", "hit")
    header = "split  " + "  ".join(f"{n}@{k:<3}".rjust(12) for k in ks for n in names)
    lines = [header]
    for split in ("valid", "test"):
        m = results[split]
        lines.append(f"{split:<6} " + "  ".join(f"{m[f'{n}@{k}']:12.4f}" for k in ks for n in names))
    return "\n".join(lines)


def train_one(dataset: Dataset, cfg: TrainConfig, progress: bool = True,
              run_dir: str | Path | None = None, resume: bool = False) -> dict:
    """Train with early stopping on validation and return the results dictionary.

    With ``run_dir``, a checkpoint is written there after every epoch; ``resume`` continues
    from the checkpoint found there instead of starting afresh.
    """
    if cfg.model in BASELINES:
        rank = BASELINES[cfg.model]
        train = dataset.csr("train")
        test_excl = train.merge(dataset.csr("valid"))
        return {
            "config": cfg.to_dict(),
            "environment": environment(),
            "dataset": dataset.statistics(),
            "valid": rank(train, dataset.n_items, train, dataset.csr("valid"), cfg.ks),
            "test": rank(train, dataset.n_items, test_excl, dataset.csr("test"), cfg.ks),
        }

    main_process = distributed.rank() == 0
    run = RunDirectory(run_dir) if run_dir is not None else None
    epochs_bar = tqdm(total=cfg.epochs, desc="epochs", unit="ep",
                      disable=not progress or not main_process, dynamic_ncols=True)

    def on_epoch(state, record):
        if run is not None and main_process:
            run.save(trainer)
        epochs_bar.update(1)
        valid = record.get("valid") or record.get("test") or {}
        epochs_bar.set_postfix(loss=f"{record['loss']:.4f}",
                               score=f"{valid.get(cfg.select_metric, float('nan')):.4f}",
                               best=f"{state.best_score:.4f}@{state.best_epoch}")

    trainer_cls = DistributedTrainer if distributed.world_size() > 1 else Trainer
    trainer = trainer_cls(dataset, cfg, Callbacks(on_epoch=on_epoch))
    if run is not None and resume:
        run.restore(trainer, write=main_process)
        epochs_bar.update(trainer.state.epoch)
        st = trainer.state
        if st.epoch >= cfg.epochs or st.bad_epochs >= cfg.patience:
            log.info("the run in %s had already finished (epoch %d, best %.4f at epoch %d); "
                     "its results are reported again", run.path, st.epoch, st.best_score,
                     st.best_epoch)
    elif run is not None and main_process:
        run.start(cfg, dataset, {"environment": environment()})
    trainer.fit()
    epochs_bar.close()
    results = trainer.results()
    if run is not None:
        results["run_dir"] = str(run.path)
    return results


def _given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """Destinations of the options written out on the command line (not left at defaults)."""
    unset = object()
    defaults = vars(parser.parse_args([]))
    namespace = argparse.Namespace(
        **{k: [] if isinstance(v, list) else unset for k, v in defaults.items()}
    )
    parser.parse_args(sys.argv[1:] if argv is None else argv, namespace=namespace)
    return {k for k, v in vars(namespace).items() if v is not unset and v != []}


# The command-line spelling of the settings a continued run may change.
_RESUMABLE_FLAGS = ("--epochs", "--time-limit", "--patience", "--threads", "--device",
                    "--out-dir", "--data-root")


def resume_config(parser: argparse.ArgumentParser, argv: list[str] | None,
                  args: argparse.Namespace, now: TrainConfig) -> TrainConfig:
    """The configuration of a continued run.

    Given only ``--resume`` (and settings allowed to change), the run's own configuration is
    used; given the run's original flags, they must match it.
    """
    saved = RunDirectory(args.resume).saved_config()
    given = _given_flags(parser, argv) - {"quiet", "resume", "run_dir"}
    if not given <= RESUMABLE_CHANGES:
        problems = differences(saved.to_dict(), now.to_dict(), RESUMABLE_CHANGES)
        if problems:
            raise IncompatibleRunError(
                f"cannot continue the run in {args.resume}: " + "; ".join(problems)
                + ". Give only --resume, or the run's original flags; only "
                + ", ".join(sorted(_RESUMABLE_FLAGS)) + " may change."
            )
    return dataclasses.replace(saved, **{k: getattr(now, k) for k in given & RESUMABLE_CHANGES})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgfd_ext.train", description=__doc__)
    add_train_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--run-dir", help="folder of this run (default: a new folder in --out-dir)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    try:
        if args.resume:
            cfg = resume_config(parser, argv, args, cfg)
        cfg = dataclasses.replace(cfg, device=distributed.init_from_env(cfg.device))

        dataset = load_dataset(cfg.dataset, cfg.data_root, seed=0,
                               generated_features=cfg.generated_features,
                               labels_path=cfg.labels_path, n_clusters=cfg.n_clusters)
        if dataset.feature_source != "real":
            log.warning("item features of %s are %s, not real", dataset.name,
                        dataset.feature_source)
        out = Path(args.resume or args.run_dir or Path(cfg.out_dir) / run_name(cfg))
        results = train_one(dataset, cfg, progress=not args.quiet, run_dir=out,
                            resume=bool(args.resume))
    except (CheckpointError, IncompatibleRunError, DataError) as err:
        parser.exit(2, f"error: {err}\n")
    main_process = distributed.rank() == 0
    distributed.finish()
    if not main_process:
        return 0

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results, out / RESULTS_FILE)
    label = cfg.model if not cfg.sgfd else f"SGFD-{cfg.model}"
    features = "" if dataset.feature_source == "real" else f" [{dataset.feature_source} features]"
    print(f"\n{label} on {dataset.name}{features}, seed {cfg.seed}")
    print(metrics_table(results, cfg.ks))
    if "best_epoch" in results:
        print(f"selected epoch {results['best_epoch']} of {results['epochs_run']} on "
              f"{'test' if cfg.select_on_test else 'validation'} {cfg.select_metric}; "
              f"{results['train_seconds']:.0f} s of training")
    print(f"results: {out / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
