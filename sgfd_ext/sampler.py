"""Mini-batches of training interactions, with uniformly sampled negatives when asked for."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class PairSampler:
    """Shuffles the (user, item) training pairs each epoch and cuts them into batches.

    Negatives are drawn uniformly from the items the user has not interacted with in training
    (rejection sampling against the user's training set). All randomness comes from one
    ``torch.Generator`` whose state can be saved and restored.
    """

    def __init__(self, train: np.ndarray, n_items: int, batch_size: int, n_negatives: int = 0,
                 seed: int = 0):
        self.users = torch.from_numpy(np.ascontiguousarray(train[:, 0]))
        self.items = torch.from_numpy(np.ascontiguousarray(train[:, 1]))
        self.n_items = n_items
        self.batch_size = batch_size
        self.n_negatives = n_negatives
        self.generator = torch.Generator().manual_seed(seed)
        self._keys_sorted = torch.sort(self.users * n_items + self.items).values

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.users), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = {"users": self.users[idx], "items": self.items[idx]}
            if self.n_negatives:
                batch["negatives"] = self._negatives(batch["users"])
            yield batch

    def _negatives(self, users: torch.Tensor) -> torch.Tensor:
        shape = (len(users), self.n_negatives)
        neg = torch.randint(self.n_items, shape, generator=self.generator)
        for _ in range(100):
            bad = self._is_known(users[:, None].expand(shape), neg)
            if not bool(bad.any()):
                break
            neg[bad] = torch.randint(self.n_items, (int(bad.sum()),), generator=self.generator)
        return neg

    def _is_known(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self._keys_sorted, keys).clamp(max=len(self._keys_sorted) - 1)
        return self._keys_sorted[pos] == keys

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
