"""Does bfloat16 autocast change what SGFD-BM3 learns? Short runs, several seeds, both precisions.

Trains the preset SGFD-BM3 for a few epochs per seed in float32 and under bfloat16 autocast and
compares the validation Recall@20 of the last epoch: the precision gap against the seed spread.

    python bench/check_autocast_metrics.py --dataset movielens-100k --epochs 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from harness import DEFAULT_OUT_DIR, write_csv

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.data import load_dataset
from sgfd_ext.presets import preset_for
from sgfd_ext.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_root() -> Path:
    env = os.environ.get("SGFD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def run(dataset, name: str, seed: int, epochs: int, autocast: str | None) -> float:
    """Validation Recall@20 after ``epochs`` epochs of the preset SGFD-BM3."""
    preset = preset_for("bm3", name)
    cfg = TrainConfig(dataset=name, model="bm3", sgfd=True, seed=seed, epochs=epochs,
                      patience=epochs, lr=preset["lr"], embedding_dim=preset["embedding_dim"],
                      model_args=dict(preset.get("model_args", {})),
                      sgfd_args=SGFDConfig(**preset["sgfd_args"]), autocast=autocast)
    trainer = Trainer(dataset, cfg)
    for _ in range(epochs):
        trainer.train_epoch()
    return trainer.evaluate("valid")["recall@20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()

    root = args.data_root or default_data_root()
    generated = args.dataset not in ("movielens-100k", "ml-100k")
    dataset = load_dataset(args.dataset, root, generated_features=generated)
    rows = []
    for seed in args.seeds:
        for autocast in (None, "bfloat16"):
            recall = run(dataset, args.dataset, seed, args.epochs, autocast)
            rows.append({"dataset": args.dataset, "epochs": args.epochs, "seed": seed,
                         "precision": autocast or "float32", "valid_recall@20": round(recall, 5)})
            print(f"seed {seed} {autocast or 'float32':>8}: valid Recall@20 {recall:.4f}")

    by = {p: [r["valid_recall@20"] for r in rows if r["precision"] == p]
          for p in ("float32", "bfloat16")}
    diffs = [b - f for f, b in zip(by["float32"], by["bfloat16"], strict=True)]
    for p, vals in by.items():
        spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{p:>8}: mean {statistics.mean(vals):.4f}, seed std {spread:.4f}")
    print(f"bfloat16 - float32 per seed: {', '.join(f'{d:+.4f}' for d in diffs)}")
    write_csv(rows, args.out_dir / f"autocast_metrics_{args.dataset}.csv")


if __name__ == "__main__":
    main()
