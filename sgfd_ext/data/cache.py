"""On-disk cache of built datasets and downloaded raw files, keyed by content digests."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sgfd_ext.data.dataset import Dataset


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else SGFD_CACHE_DIR, else ``~/.cache/sgfd_ext``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("SGFD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sgfd_ext"


def digest(files: Iterable[Path], *extra: object) -> str:
    """SHA-256 over the names and contents of ``files`` and the ``extra`` values."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in files):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    h.update(json.dumps([str(e) for e in extra]).encode())
    return h.hexdigest()


def save_dataset(path: Path, dataset: Dataset) -> None:
    """Write a dataset as one ``.npz`` file, atomically (a partial file is never visible)."""
    meta = {
        "name": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_classes": dataset.n_classes,
        "feature_source": dataset.feature_source,
        "modalities": list(dataset.features),
        "info": dataset.info,
    }
    arrays = {f"feature_{m}": f for m, f in dataset.features.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            train=dataset.train,
            valid=dataset.valid,
            test=dataset.test,
            labels=dataset.labels,
            meta=np.array(json.dumps(meta)),
            **arrays,
        )
    os.replace(tmp, path)


def load_saved_dataset(path: Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset`."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        return Dataset(
            name=meta["name"],
            n_users=meta["n_users"],
            n_items=meta["n_items"],
            train=npz["train"],
            valid=npz["valid"],
            test=npz["test"],
            features={m: npz[f"feature_{m}"] for m in meta["modalities"]},
            labels=npz["labels"],
            n_classes=meta["n_classes"],
            feature_source=meta["feature_source"],
            info=meta["info"],
        )
