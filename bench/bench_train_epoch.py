"""Benchmark: one SGFD-BM3 training epoch, our trainer against reference-structured PyTorch.

Published BM3 settings of each dataset (presets: lambda_ce, lambda_kd, tau, lr; d=128, batch
2048) on the real Amazon interaction splits with generated 4096-d image and 768-d text features.
Variants, each its own model and optimiser from the same seed, run in interleaved rounds:

- ``fused``: the trainer (fused student/FD op, SGFD on the batch's items, dropout on batch rows);
- ``reference``: ``reference_sgfd_bm3.py`` (student on every item each batch, whole-table
  predictor and dropout, plain autograd), same math;
- ``fused_bf16``: the trainer under ``torch.autocast`` with bfloat16.

    python bench/bench_train_epoch.py --quick
    python bench/bench_train_epoch.py --datasets office toys --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import time
from pathlib import Path

import torch
from harness import DEFAULT_OUT_DIR, peak_extra_mib, print_header, print_row, report, sync
from reference_sgfd_bm3 import reference_training_loss

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.data import load_dataset
from sgfd_ext.presets import preset_for
from sgfd_ext.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fused", "reference", "fused_bf16")


class ReferenceTrainer(Trainer):
    """The trainer's loop and optimiser around the reference-structured loss."""

    def train_step(self, batch: dict[str, torch.Tensor], index: int) -> float:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        loss = reference_training_loss(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


class CappedSampler:
    """The first ``n`` batches of a sampler's epoch (a shortened epoch)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, min(n, len(sampler))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.n)


def default_data_root() -> Path:
    env = os.environ.get("SGFD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def make_config(dataset: str, variant: str, device: str, data_root: Path) -> TrainConfig:
    """Published BM3 + SGFD settings of ``dataset`` for one benchmark variant."""
    preset = preset_for("bm3", dataset)
    return TrainConfig(
        dataset=dataset, data_root=str(data_root), generated_features=True, model="bm3",
        sgfd=True, device=device, batch_size=2048, lr=preset["lr"],
        embedding_dim=preset["embedding_dim"], model_args=dict(preset.get("model_args", {})),
        sgfd_args=SGFDConfig(**preset["sgfd_args"]),
        kernels="reference" if variant == "reference" else "fused",
        autocast="bfloat16" if variant == "fused_bf16" else None,
    )


def check_same_math(dataset, cfg: TrainConfig) -> float:
    """Largest difference between the two losses without dropout, on one batch, same weights."""
    trainer = Trainer(dataset, dataclasses.replace(cfg, model_args={**cfg.model_args,
                                                                    "dropout": 0.0}))
    batch = next(iter(trainer.sampler))
    with torch.no_grad():
        ours = trainer.model.training_loss(batch).item()
        theirs = reference_training_loss(trainer.model, batch).item()
    return abs(ours - theirs)


def epoch_runner(trainer: Trainer):
    def run() -> None:
        trainer.train_epoch()

    return run


def bench_dataset(name: str, args: argparse.Namespace) -> dict:
    dataset = load_dataset(name, args.data_root, generated_features=True)
    cfgs = {v: make_config(name, v, args.device, args.data_root) for v in args.variants}
    gap = check_same_math(dataset, cfgs["fused"])
    if gap > 1e-4:
        raise RuntimeError(f"{name}: reference loss differs from the trainer's by {gap:.2e}")

    trainers = {}
    for v, cfg in cfgs.items():
        trainers[v] = (ReferenceTrainer if v == "reference" else Trainer)(dataset, cfg)
    n_batches = len(trainers["fused"].sampler)
    timed_batches = min(args.batches or n_batches, n_batches)
    for t in trainers.values():
        t.sampler = CappedSampler(t.sampler, 1)
        t.train_epoch()  # warm-up: first-touch allocations, Adam state
        t.sampler = CappedSampler(t.sampler.sampler, timed_batches)

    times: dict[str, list[float]] = {v: [] for v in trainers}
    for _ in range(args.rounds):
        for v, t in trainers.items():
            sync(args.device)
            start = time.perf_counter()
            t.train_epoch()
            sync(args.device)
            times[v].append((time.perf_counter() - start) * 1e3 * n_batches / timed_batches)

    row = {"dataset": name, "users": dataset.n_users, "items": dataset.n_items,
           "train_pairs": len(dataset.train), "batches_per_epoch": n_batches,
           "timed_batches": timed_batches, "rounds": args.rounds,
           "threads": torch.get_num_threads(), "load_average": round(os.getloadavg()[0], 2),
           "loss_gap_no_dropout": f"{gap:.1e}"}
    for v, vals in times.items():
        row[f"{v}_ms"] = round(sorted(vals)[len(vals) // 2], 1)
        row[f"{v}_best_ms"] = round(min(vals), 1)
    for v in trainers:
        if v != "reference":
            row[f"speedup_{v}"] = round(row["reference_ms"] / row[f"{v}_ms"], 2)
            row[f"speedup_{v}_best"] = round(row["reference_best_ms"] / row[f"{v}_best_ms"], 2)
    for v, t in trainers.items():
        t.sampler = CappedSampler(t.sampler.sampler, 1)
        mib = peak_extra_mib(epoch_runner(t), args.device)
        row[f"{v}_peak_mib"] = None if mib is None else round(mib, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Office, 3 batches, 2 rounds")
    parser.add_argument("--datasets", nargs="+", default=["office", "toys"])
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding amazon/")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=None, help="timed epochs per variant")
    parser.add_argument("--batches", type=int, default=None,
                        help="time only the first N batches of each epoch and scale to a full one")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()

    if "fused" not in args.variants or "reference" not in args.variants:
        parser.error("--variants must include fused and reference")
    args.data_root = args.data_root or default_data_root()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.datasets, args.batches = ["office"], args.batches or 3
    args.rounds = args.rounds or (2 if args.quick else 3)

    columns = ["dataset", "batches_per_epoch", "timed_batches", "load_average"]
    columns += [f"{v}_ms" for v in args.variants]
    columns += [f"speedup_{v}" for v in args.variants if v != "reference"]
    columns += [f"{v}_peak_mib" for v in args.variants]
    print(f"SGFD-BM3 training epoch on {args.device}, {torch.get_num_threads()} CPU threads, "
          f"generated features; median of {args.rounds} interleaved rounds, ms per epoch")
    print_header(columns)
    rows = []
    for name in args.datasets:
        row = {"device": args.device, **bench_dataset(name, args)}
        rows.append(row)
        print_row(row, columns)

    tag = "train_epoch_quick" if args.quick else "train_epoch"
    report(rows, args.out_dir, tag, f"SGFD-BM3 epoch ({args.device})", args.datasets)


if __name__ == "__main__":
    main()
