"""Small datasets for training tests: synthetic ones, and MMRec folders from the Office split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from shared_data import shared_data

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.data.dataset import Dataset


def office_split() -> tuple[np.ndarray, np.ndarray]:
    """(user, item) pairs of the real Office train and test files; skips the test if absent."""
    folder = shared_data("amazon") / "office"

    def read(name: str) -> np.ndarray:
        table = np.loadtxt(folder / name, delimiter=",", skiprows=1, usecols=(0, 1),
                           dtype=np.int64)
        return table[:, [1, 0]]  # columns are itemID,userID

    return read("train.csv"), read("test.csv")


def clustered_features(n_items: int, dims: dict[str, int], n_classes: int,
                       seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generated features: one random centre per class and modality plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n_items)
    feats = {}
    for m, d in dims.items():
        centres = rng.normal(size=(n_classes, d)) * 3.0
        feats[m] = (centres[labels] + rng.normal(size=(n_items, d))).astype(np.float32)
    return feats, labels


def write_mmrec(folder: Path, name: str = "office", max_users: int | None = None,
                dims: dict[str, int] | None = None, n_classes: int = 8, seed: int = 0) -> dict:
    """An MMRec folder from the Office split: 10% of each user's training rows become validation.

    Returns the planted labels and the split sizes, to check what the reader gives back.
    """
    train, test = office_split()
    if max_users is not None:
        train, test = train[train[:, 0] < max_users], test[test[:, 0] < max_users]
    n_items = int(max(train[:, 1].max(), test[:, 1].max())) + 1
    rng = np.random.default_rng(seed)
    to_valid = rng.random(len(train)) < 0.1
    rows = [(u, i, 1 if v else 0) for (u, i), v in zip(train.tolist(), to_valid)]
    rows += [(u, i, 2) for u, i in test.tolist()]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.inter", "w") as f:
        f.write("userID\titemID\trating\ttimestamp\tx_label\n")
        f.writelines(f"{u}\t{i}\t5\t0\t{x}\n" for u, i, x in rows)
    feats, labels = clustered_features(n_items, dims or {"image": 48, "text": 32}, n_classes, seed)
    for m, f in feats.items():
        np.save(folder / f"{m}_feat.npy", f)
    return {"labels": labels, "n_items": n_items, "train": int((~to_valid).sum()),
            "valid": int(to_valid.sum()), "test": len(test)}


def synthetic_dataset(n_users: int = 60, n_items: int = 40, per_user: int = 8,
                      seed: int = 0) -> Dataset:
    """A tiny random dataset with two modalities, every user in every split."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for i, split in zip(items, ["valid", "test"] + ["train"] * (per_user - 2)):
            splits[split].append((u, int(i)))
    feats, labels = clustered_features(n_items, {"image": 24, "text": 16}, 4, seed)
    arrays = {k: np.array(v, dtype=np.int64) for k, v in splits.items()}
    return Dataset(name="synthetic", n_users=n_users, n_items=n_items, features=feats,
                   labels=labels, n_classes=4, feature_source="generated", **arrays)


def tiny_config(**changes) -> TrainConfig:
    """BM3 with SGFD, small enough for a test: d=16, batch 64, one thread."""
    base = TrainConfig(dataset="synthetic", model="bm3", sgfd=True, seed=0, epochs=3, patience=50,
                       batch_size=64, lr=1e-2, embedding_dim=16, threads=1,
                       sgfd_args=SGFDConfig(lambda_ce=0.1, lambda_kd=0.1, tau=5.0))
    return dataclasses.replace(base, **changes)

