"""LightGCN: the BPR loss on a hand-checkable graph, and that training improves ranking."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from sgfd_ext.config import TrainConfig
from sgfd_ext.models.lightgcn import LightGCN, LightGCNConfig
from sgfd_ext.ops import use_kernels
from sgfd_ext.trainer import Trainer


@pytest.mark.parametrize("kernels", ["fused", "reference"])
def test_loss_by_hand_on_one_edge(kernels):
    # One user, two items, one training edge (user 0, item 0): propagation swaps the two
    # endpoints of the edge (normalised weight 1) and leaves item 1 alone.
    model = LightGCN(1, 2, np.array([[0, 0]]), 2, None, LightGCNConfig(n_layers=1, reg_weight=0.5))
    with torch.no_grad():
        model.embedding.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
    u = [0.5, 0.5]  # (e_u + e_i0) / 2
    i0 = [0.5, 0.5]
    i1 = [1.0, 1.0]  # (e_i1 + 0) / 2
    margin = sum(a * (b - c) for a, b, c in zip(u, i0, i1))
    penalty = sum(v * v for v in u + i0 + i1)
    expected = math.log1p(math.exp(-margin)) + 0.5 * penalty / 2
    batch = {"users": torch.tensor([0]), "items": torch.tensor([0]),
             "negatives": torch.tensor([[1]])}
    with use_kernels(kernels):
        assert model.training_loss(batch).item() == pytest.approx(expected, rel=1e-6)


def test_training_improves_validation(tiny_dataset):
    cfg = TrainConfig(dataset="synthetic", model="lightgcn", sgfd=False, epochs=20, patience=20,
                      batch_size=128, lr=0.01, embedding_dim=16)
    trainer = Trainer(tiny_dataset, dataclasses.replace(cfg))
    before = trainer.evaluate("valid")["recall@20"]
    trainer.fit()
    assert trainer.state.best_score > before
