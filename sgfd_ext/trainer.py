"""One training run: mini-batch optimisation, validation-based early stopping, test report."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import sgfd_ext
from sgfd_ext.checkpoint import capture_rng, restore_rng
from sgfd_ext.config import TrainConfig
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.evaluation import evaluate_model
from sgfd_ext.models import build_model
from sgfd_ext.models.base import Recommender
from sgfd_ext.ops.kernels import use_kernels
from sgfd_ext.sampler import PairSampler

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment() -> dict:
    """Versions and device facts recorded with every result."""
    return {
        "sgfd_ext": sgfd_ext.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@dataclass
class TrainState:
    """Everything that changes during a run and is needed to continue it."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass
class Callbacks:
    """Hooks for a front end (progress bars); the library itself only logs."""

    on_batch: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[TrainState, dict], None] | None = None


class Trainer:
    """Trains a base model (with or without SGFD) and selects the best epoch on validation."""

    def __init__(self, dataset: Dataset, cfg: TrainConfig, callbacks: Callbacks | None = None):
        self.dataset = dataset
        self.cfg = cfg
        self.callbacks = callbacks or Callbacks()
        self.device = torch.device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.model: Recommender = build_model(dataset, cfg, self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.sampler = PairSampler(dataset.train, dataset.n_items, cfg.batch_size,
                                   self.model.n_negatives, seed=cfg.seed)
        self.state = TrainState()
        self.best_model_state: dict | None = None
        train, valid, test = dataset.csr("train"), dataset.csr("valid"), dataset.csr("test")
        self.valid_split = (train, valid)
        self.test_split = (train.merge(valid), test)

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on ``"valid"`` (training items excluded) or ``"test"`` (train+valid excluded)."""
        exclude, target = self.valid_split if split == "valid" else self.test_split
        with use_kernels(self.cfg.kernels):
            return evaluate_model(self.model, exclude, target, self.cfg.ks,
                                  self.cfg.eval_batch_size)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the training forward when ``cfg.autocast`` names a dtype."""
        if self.cfg.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.cfg.autocast))

    def train_step(self, batch: dict[str, torch.Tensor], index: int) -> float:
        """One optimiser step on a mini-batch; returns its loss."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.autocast():
            loss = self.model.training_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {self.state.epoch}, "
                f"batch {index}; lower the learning rate or check the features"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.after_step()
        return loss.item()

    def train_epoch(self) -> float:
        """One pass over the training pairs; returns the mean batch loss."""
        self.model.train()
        total, n = 0.0, len(self.sampler)
        with use_kernels(self.cfg.kernels):
            for b, batch in enumerate(self.sampler):
                loss = self.train_step(batch, b)
                total += loss
                if self.callbacks.on_batch:
                    self.callbacks.on_batch(b, n, loss)
        return total / max(n, 1)

    def fit(self) -> TrainState:
        """Train until early stopping, the epoch limit, or the time limit."""
        cfg, st = self.cfg, self.state
        select_split = "test" if cfg.select_on_test else "valid"
        start = time.perf_counter() - st.train_seconds
        while st.epoch < cfg.epochs and st.bad_epochs < cfg.patience:
            loss = self.train_epoch()
            st.epoch += 1
            record = {"epoch": st.epoch, "loss": loss}
            if st.epoch % cfg.eval_every == 0 or st.epoch == cfg.epochs:
                metrics = self.evaluate(select_split)
                record[select_split] = metrics
                score = metrics[cfg.select_metric]
                if score > st.best_score:
                    st.best_score, st.best_epoch, st.bad_epochs = score, st.epoch, 0
                    self.best_model_state = copy.deepcopy(self.model.state_dict())
                else:
                    st.bad_epochs += cfg.eval_every
            st.train_seconds = time.perf_counter() - start
            record["seconds"] = st.train_seconds
            st.history.append(record)
            log.debug("epoch %d loss %.4f %s", st.epoch, loss,
                      record.get(select_split, {}).get(cfg.select_metric, ""))
            if self.callbacks.on_epoch:
                self.callbacks.on_epoch(st, record)
            if cfg.time_limit_s and st.train_seconds > cfg.time_limit_s:
                log.warning("time limit of %.0f s reached at epoch %d", cfg.time_limit_s, st.epoch)
                break
        if self.best_model_state is not None:
            self.model.load_state_dict(self.best_model_state)
        return st

    def state_dict(self) -> dict:
        """Everything needed to continue after the current epoch, random generators included."""
        return {
            "epoch": self.state.epoch,
            "train_state": dataclasses.asdict(self.state),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng(),
            "best_model": self.best_model_state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: same weights, optimiser, batches and dropout masks."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.state = TrainState(**state["train_state"])
        self.best_model_state = state["best_model"]
        restore_rng(state["rng"])

    def results(self) -> dict:
        """Configuration, dataset statistics, history and final metrics as one JSON object."""
        return {
            "config": self.cfg.to_dict(),
            "environment": environment(),
            "device": str(self.device),
            "dataset": self.dataset.statistics(),
            "best_epoch": self.state.best_epoch,
            "best_valid": self.state.best_score,
            "epochs_run": self.state.epoch,
            "train_seconds": self.state.train_seconds,
            "history": self.state.history,
            "valid": self.evaluate("valid"),
            "test": self.evaluate("test"),
        }
