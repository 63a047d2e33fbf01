"""Run folders: configuration, checksummed checkpoints written atomically, and resuming from them.

A run folder holds ``config.json`` (what was run, on which data), ``checkpoint.pt`` (everything
needed to continue after the last finished epoch), ``checkpoint.prev.pt`` (the one before it),
``best_model.pt`` (weights of the best epoch so far) and, once finished, ``results.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.files import write_json_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_FILE = "checkpoint.prev.pt"
BEST_MODEL_FILE = "best_model.pt"
RESULTS_FILE = "results.json"

_MAGIC = b"SGFD-CHECKPOINT"
_FORMAT = 1

# Settings that may change when a run is continued: when and where it stops, how fast it runs.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "time_limit_s", "patience", "threads", "device", "out_dir", "data_root",
     "eval_batch_size"}
)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or from another program."""


class IncompatibleRunError(ValueError):
    """The run folder was made with another dataset or an incompatible configuration."""


# --- files -----------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(obj: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    header = b"%s %d %d %s\n" % (_MAGIC, _FORMAT, len(payload), digest.encode())
    return header + payload


def _decode(data: bytes, path: Path) -> bytes:
    """The payload of a checkpoint file, after checking its header, length and checksum."""
    line, sep, payload = data.partition(b"\n")
    if not data:
        raise CheckpointError(f"{path}: empty file (the write or copy was interrupted)")
    if not data.startswith(_MAGIC) and not _MAGIC.startswith(data):
        raise CheckpointError(
            f"{path}: not an sgfd-ext checkpoint (expected a header starting with "
            f"{_MAGIC.decode()!r}, found {data[:24]!r})"
        )
    parts = line.split()
    if not sep or len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
        raise CheckpointError(f"{path}: truncated or damaged header ({line[:80]!r})")
    version, length, digest = int(parts[1]), int(parts[2]), parts[3].decode(errors="replace")
    if version != _FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {version}, this version reads {_FORMAT}")
    if len(payload) != length:
        raise CheckpointError(
            f"{path}: truncated: {len(payload)} of {length} payload bytes present "
            "(the write or copy was interrupted)"
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupted")
    return payload


def write_atomic(obj: dict, path: str | Path, keep_previous: str | Path | None = None) -> None:
    """Write ``obj`` so that ``path`` always holds a complete file, old or new.

    The data goes to a temporary file in the same folder, is flushed to disk and checked, then
    renamed over ``path``. With ``keep_previous``, the file it replaces is kept under that name.

    Limitation: the file is assembled in memory first, so saving briefly needs about twice the
    checkpoint's size in RAM.
    """
    path = Path(path)
    data = _encode(obj)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _decode(tmp.read_bytes(), tmp)
    if keep_previous is not None and path.exists():
        os.replace(path, keep_previous)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a file written by :func:`write_atomic`; raises :class:`CheckpointError` if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    payload = _decode(data, path)
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # the checksum matched, so this is a program/version mismatch
        raise CheckpointError(f"{path}: cannot be decoded by this PyTorch ({err})") from err


# --- random number generators ----------------------------------------------------------------


def capture_rng() -> dict:
    """States of Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": (version, list(words), gauss),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Put back the generator states of :func:`capture_rng`."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            log.warning("checkpoint has CUDA generator states for %d devices, this machine %d; "
                        "CUDA random streams restart", len(state["cuda"]),
                        torch.cuda.device_count())


# --- compatibility ---------------------------------------------------------------------------


def dataset_fingerprint(dataset) -> dict:
    """Sizes and content digests of a dataset, to recognise it when a run is continued."""

    def digest(*arrays: np.ndarray) -> str:
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    out = {"name": dataset.name, "users": int(dataset.n_users), "items": int(dataset.n_items),
           "classes": int(dataset.n_classes), "feature_source": dataset.feature_source}
    for split in ("train", "valid", "test"):
        out[f"{split}_digest"] = digest(getattr(dataset, split))
    out["labels_digest"] = digest(dataset.labels)
    for m, f in sorted(dataset.features.items()):
        out[f"features_{m}"] = f"{f.shape[0]}x{f.shape[1]} {digest(f)}"
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def differences(saved: dict, now: dict, allowed: frozenset[str] = frozenset()) -> list[str]:
    """One line per setting that differs between two (nested) dicts, skipping ``allowed``."""
    a, b = _flatten(saved), _flatten(now)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in allowed:
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            shown_a = "<absent>" if va is missing else repr(va)
            shown_b = "<absent>" if vb is missing else repr(vb)
            out.append(f"{key}: run has {shown_a}, now {shown_b}")
    return out


def train_config_from_dict(d: dict) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from its ``to_dict()`` form (as stored in ``config.json``)."""
    d = dict(d)
    d["ks"] = tuple(d.get("ks", TrainConfig.ks))
    d["sgfd_args"] = SGFDConfig(**d.get("sgfd_args", {}))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - known
    if unknown:
        raise IncompatibleRunError(f"settings unknown to this version: {sorted(unknown)}")
    return TrainConfig(**d)


# --- the run folder --------------------------------------------------------------------------


class RunDirectory:
    """Reads and writes the files of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fingerprint: dict | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    def start(self, cfg: TrainConfig, dataset, extra: dict | None = None) -> None:
        """Create the folder and write ``config.json`` for a new run."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.file(CHECKPOINT_FILE).exists():
            raise IncompatibleRunError(
                f"{self.path} already holds a run; continue it with --resume or choose another "
                "folder"
            )
        self._fingerprint = dataset_fingerprint(dataset)
        record = {"config": cfg.to_dict(), "dataset": self._fingerprint}
        record.update(extra or {})
        write_json_atomic(record, self.file(CONFIG_FILE))

    def saved_config(self) -> TrainConfig:
        """The configuration the run was started with."""
        path = self.file(CONFIG_FILE)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise IncompatibleRunError(f"{path}: not found; is {self.path} a run folder?") from None
        except json.JSONDecodeError as err:
            raise IncompatibleRunError(f"{path}: not valid JSON ({err})") from None
        try:
            return train_config_from_dict(record["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise IncompatibleRunError(
                f"{path}: expected the run's configuration under \"config\", found "
                f"{type(err).__name__}: {err}"
            ) from None

    def latest(self, map_location: str | torch.device = "cpu") -> dict:
        """The newest readable checkpoint, falling back to the previous one with a warning."""
        errors = []
        for name in (CHECKPOINT_FILE, PREVIOUS_FILE):
            path = self.file(name)
            if not path.exists():
                errors.append(f"{path}: absent")
                continue
            try:
                ckpt = read_checkpoint(path, map_location)
            except CheckpointError as err:
                errors.append(str(err))
                log.warning("%s", err)
                continue
            if errors:
                log.warning("continuing from %s (epoch %d) instead", path, ckpt["epoch"])
            return ckpt
        raise CheckpointError("no usable checkpoint: " + "; ".join(errors))

    def _best_epoch_on_disk(self) -> int | None:
        try:
            return read_checkpoint(self.file(BEST_MODEL_FILE))["epoch"]
        except CheckpointError:
            return None

    def check_compatible(self, ckpt: dict, cfg: TrainConfig, dataset) -> None:
        """Raise naming every setting and dataset property that differs from the saved run."""
        problems = differences(ckpt["config"], cfg.to_dict(), RESUMABLE_CHANGES)
        problems += [f"dataset {p}" for p in differences(ckpt["dataset"],
                                                         dataset_fingerprint(dataset))]
        if problems:
            raise IncompatibleRunError(
                f"cannot continue the run in {self.path}: "
                + "; ".join(problems)
                + f". Only {', '.join(sorted(RESUMABLE_CHANGES))} may change."
            )

    def save(self, trainer) -> None:
        """Checkpoint after an epoch; also the best weights when this epoch is the best so far."""
        st = trainer.state
        ckpt = trainer.state_dict()
        ckpt["config"] = trainer.cfg.to_dict()
        if self._fingerprint is None:
            self._fingerprint = dataset_fingerprint(trainer.dataset)
        ckpt["dataset"] = self._fingerprint
        write_atomic(ckpt, self.file(CHECKPOINT_FILE), keep_previous=self.file(PREVIOUS_FILE))
        if st.best_epoch == st.epoch:
            self._save_best(trainer)

    def _save_best(self, trainer) -> None:
        st = trainer.state
        if trainer.best_model_state is not None:
            write_atomic({"model": trainer.best_model_state, "epoch": st.best_epoch,
                          "score": st.best_score, "config": trainer.cfg.to_dict()},
                         self.file(BEST_MODEL_FILE))

    def restore(self, trainer, write: bool = True) -> None:
        """Load the latest checkpoint into ``trainer`` after checking that it fits.

        With ``write``, ``best_model.pt`` is brought in line with the checkpoint (a run killed
        between writing the two leaves it one improvement behind).
        """
        ckpt = self.latest(map_location=trainer.device)
        self.check_compatible(ckpt, trainer.cfg, trainer.dataset)
        self._fingerprint = ckpt["dataset"]
        trainer.load_state_dict(ckpt)
        if write and self._best_epoch_on_disk() != trainer.state.best_epoch:
            self._save_best(trainer)
        log.info("continuing %s after epoch %d (best %.4f at epoch %d)", self.path,
                 trainer.state.epoch, trainer.state.best_score, trainer.state.best_epoch)
