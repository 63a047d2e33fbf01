"""Data-parallel training over several processes started by ``torchrun``.

Every process builds the same sampler, so all see the same global batches in the same order;
each takes its contiguous share of a batch. The loss of a share is weighted by
``share size / global batch size`` and the gradients are summed over processes, which gives
exactly the gradient of the single-process loss whenever that loss is a mean over the batch plus
terms that do not depend on the batch (true of BM3 and SGFD; see ``docs/distributed.md``).
Evaluation is split by users; per-user metric sums and user counts are summed over processes.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.distributed as dist

from sgfd_ext.config import TrainConfig
from sgfd_ext.csr import CSR
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.ops.kernels import use_kernels
from sgfd_ext.ops.topk_eval import METRIC_NAMES
from sgfd_ext.trainer import Callbacks, Trainer

log = logging.getLogger(__name__)


def init_from_env(device: str) -> str:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns the device this process should use (``cuda:LOCAL_RANK`` for CUDA runs). NCCL is used
    for CUDA, gloo for CPU.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    backend = "gloo"
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device, backend = f"cuda:{local}", "nccl"
    dist.init_process_group(backend)
    log.info("process %d of %d on %s (%s)", dist.get_rank(), dist.get_world_size(), device,
             backend)
    return device


def finish() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(n: int, rank: int, world: int) -> slice:
    """The contiguous part of ``0..n-1`` that process ``rank`` of ``world`` handles."""
    return slice(n * rank // world, n * (rank + 1) // world)


def local_batch(
    batch: dict[str, torch.Tensor], rank: int, world: int
) -> tuple[dict[str, torch.Tensor], float]:
    """This process's share of a global batch and its loss weight (share size / batch size)."""
    n = len(next(iter(batch.values())))
    part = shard(n, rank, world)
    local = {k: v[part] for k, v in batch.items()}
    return local, (part.stop - part.start) / max(n, 1)


def sum_gradients(params: list[torch.nn.Parameter], extra: torch.Tensor) -> torch.Tensor:
    """Sum the gradients of ``params`` and the float64 vector ``extra`` over all processes.

    A parameter that received no gradient in any process keeps ``grad=None``, as it would in a
    single process, so optimisers skip it the same way.

    Limitation: the sum runs after the whole backward pass (no overlap of communication with
    computation, unlike DistributedDataParallel's buckets), and sparse gradients are not handled.
    """
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    buckets: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
    for p in params:
        buckets.setdefault((p.dtype, p.device), []).append(p)
    for bucket in buckets.values():
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket
        ])
        if dist.is_initialized():
            dist.all_reduce(flat)
        offset = 0
        for p in bucket:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
    device = params[0].device if params else torch.device("cpu")
    summary = torch.cat([used, extra.double().cpu()]).to(device)
    if dist.is_initialized():
        dist.all_reduce(summary)
    summary = summary.cpu()
    for p, count in zip(params, summary[: len(params)]):
        if count == 0:
            p.grad = None
    return summary[len(params) :]


@torch.no_grad()
def metric_sums(
    model, exclude: CSR, target: CSR, ks: tuple[int, ...], batch_size: int, users: slice
) -> torch.Tensor:
    """Per-user metrics summed over the users of ``users`` that have held-out items.

    Returns a float64 vector: the sums (``len(ks) x len(METRIC_NAMES)``, row-major) followed
    by the number of users counted.
    """
    was_training = model.training
    model.eval()
    state = model.ranking_state()
    device = state[0].device
    sums = torch.zeros(len(ks), len(METRIC_NAMES), dtype=torch.float64)
    count = 0
    for start in range(users.start, users.stop, batch_size):
        stop = min(start + batch_size, users.stop)
        ids = torch.arange(start, stop, device=device)
        _, metrics = model.rank(
            state, ids, exclude.rows(start, stop).to(device), target.rows(start, stop).to(device),
            ks,
        )
        metrics = metrics.cpu()
        valid = ~torch.isnan(metrics[:, 0, 0])
        sums += metrics[valid].double().sum(0)
        count += int(valid.sum())
    model.train(was_training)
    return torch.cat([sums.reshape(-1), torch.tensor([float(count)], dtype=torch.float64)])


def metrics_from_sums(packed: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Averages from (possibly summed over processes) :func:`metric_sums` vectors."""
    n = int(packed[-1])
    sums = packed[:-1].reshape(len(ks), len(METRIC_NAMES))
    means = sums / n if n else torch.full(sums.shape, math.nan, dtype=torch.float64)
    out: dict[str, float] = {"users": n}
    for j, k in enumerate(ks):
        for c, name in enumerate(METRIC_NAMES):
            out[f"{name}@{k}"] = float(means[j, c])
    return out


def evaluate_sharded(
    model, exclude: CSR, target: CSR, ks: tuple[int, ...], batch_size: int, rank: int, world: int
) -> dict[str, float]:
    """Full-ranking metrics with users split over processes; equals the single-process average."""
    packed = metric_sums(model, exclude, target, ks, batch_size,
                         shard(exclude.n_rows, rank, world))
    if world > 1:
        device = next(model.parameters()).device
        packed = packed.to(device)
        dist.all_reduce(packed)
        packed = packed.cpu()
    return metrics_from_sums(packed, ks)


class DistributedTrainer(Trainer):
    """A :class:`Trainer` whose batches, gradients and evaluation are shared by all processes.

    Each process draws its dropout masks from a generator seeded by (seed, rank, epoch), so a
    continued run draws the same masks as an uninterrupted one.

    Limitation: with dropout, the masks differ from a single-process run's (each process draws
    its own), so the two agree in distribution, not bit for bit; without dropout they agree up
    to the order of floating-point sums.
    """

    def __init__(self, dataset: Dataset, cfg: TrainConfig, callbacks: Callbacks | None = None):
        if cfg.time_limit_s:
            raise ValueError("a time limit is not supported with several processes (each would "
                             "stop at its own time); limit the epochs instead")
        super().__init__(dataset, cfg, callbacks)
        self.rank, self.world = rank(), world_size()
        if self.world > 1:  # same seed, same weights; this guards against other init paths
            for tensor in self.model.state_dict().values():
                if tensor.layout == torch.strided:
                    dist.broadcast(tensor, src=0)

    def train_epoch(self) -> float:
        seed = (self.cfg.seed * 1_000_003 + self.rank) * 1_000_033 + self.state.epoch
        torch.manual_seed(seed % (2**63))
        return super().train_epoch()

    def train_step(self, batch: dict[str, torch.Tensor], index: int) -> float:
        local, weight = local_batch(batch, self.rank, self.world)
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros(())
        if weight > 0:
            local = {k: v.to(self.device) for k, v in local.items()}
            weighted = self.model.training_loss(local) * weight
            weighted.backward()
            loss = weighted.detach()
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = float(sum_gradients(params, loss.reshape(1))[0])
        if not math.isfinite(total):
            raise FloatingPointError(
                f"training loss became {total} at epoch {self.state.epoch}, batch {index}; "
                "lower the learning rate or check the features"
            )
        self.optimizer.step()
        self.model.after_step()
        return total

    def evaluate(self, split: str) -> dict[str, float]:
        exclude, target = self.valid_split if split == "valid" else self.test_split
        with use_kernels(self.cfg.kernels):
            return evaluate_sharded(self.model, exclude, target, self.cfg.ks,
                                    self.cfg.eval_batch_size, self.rank, self.world)
