"""Train and evaluate one model: ``python -m sgfd_ext.train --dataset NAME --model bm3``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from sgfd_ext.cli_config import add_train_arguments, config_from_args
from sgfd_ext.config import TrainConfig
from sgfd_ext.data import DataError, load_dataset
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.evaluation import most_popular
from sgfd_ext.trainer import Callbacks, Trainer, environment

log = logging.getLogger("sgfd_ext.train")


def run_name(cfg: TrainConfig) -> str:
    """A readable, unique run folder name."""
    model = cfg.model if not cfg.sgfd or cfg.model == "most-popular" else f"sgfd-{cfg.model}"
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


def train_one(dataset: Dataset, cfg: TrainConfig, progress: bool = True) -> dict:
    """Train with early stopping on validation and return the results dictionary."""
    if cfg.model == "most-popular":
        train = dataset.csr("train")
        valid_excl = train
        test_excl = train.merge(dataset.csr("valid"))
        return {
            "config": cfg.to_dict(),
            "environment": environment(),
            "dataset": dataset.statistics(),
            "valid": most_popular(train, dataset.n_items, valid_excl, dataset.csr("valid"), cfg.ks),
            "test": most_popular(train, dataset.n_items, test_excl, dataset.csr("test"), cfg.ks),
        }

    epochs_bar = tqdm(total=cfg.epochs, desc="epochs", unit="ep", disable=not progress,
                      dynamic_ncols=True)

    def on_epoch(state, record):
        epochs_bar.update(1)
        valid = record.get("valid") or record.get("test") or {}
        epochs_bar.set_postfix(loss=f"{record['loss']:.4f}",
                               score=f"{valid.get(cfg.select_metric, float('nan')):.4f}",
                               best=f"{state.best_score:.4f}@{state.best_epoch}")

    trainer = Trainer(dataset, cfg, Callbacks(on_epoch=on_epoch))
    trainer.fit()
    epochs_bar.close()
    return trainer.results()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgfd_ext.train", description=__doc__)
    add_train_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = config_from_args(args)
        dataset = load_dataset(cfg.dataset, cfg.data_root, seed=0,
                               generated_features=cfg.generated_features)
    except (DataError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    if dataset.feature_source != "real":
        log.warning("item features of %s are %s, not real", dataset.name, dataset.feature_source)
    results = train_one(dataset, cfg, progress=not args.quiet)

    out = Path(cfg.out_dir) / run_name(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    label = cfg.model if not cfg.sgfd else f"SGFD-{cfg.model}"
    features = "" if dataset.feature_source == "real" else f" [{dataset.feature_source} features]"
    print(f"\n{label} on {dataset.name}{features}, seed {cfg.seed}")
    print(metrics_table(results, cfg.ks))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
