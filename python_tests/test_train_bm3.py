"""End-to-end training of BM3 with and without SGFD through the trainer."""

import dataclasses
import math

import pytest
import torch

from sgfd_ext.baselines import most_popular
from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.trainer import Trainer


def _cfg(**kw) -> TrainConfig:
    base = TrainConfig(dataset="synthetic", epochs=30, patience=30, batch_size=128, lr=0.01,
                       embedding_dim=16, model_args={"n_layers": 1},
                       sgfd_args=SGFDConfig(lambda_ce=0.1, lambda_kd=0.1, tau=5.0))
    return dataclasses.replace(base, **kw)


@pytest.mark.parametrize("sgfd", [False, True])
def test_training_learns_and_reports(tiny_dataset, sgfd):
    trainer = Trainer(tiny_dataset, _cfg(sgfd=sgfd))
    before = trainer.evaluate("valid")["recall@20"]
    state = trainer.fit()
    results = trainer.results()

    assert state.best_epoch >= 1 and results["epochs_run"] == state.epoch
    assert results["best_valid"] > before
    assert len(results["history"]) == state.epoch
    for split in ("valid", "test"):
        for key in ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "precision@20", "hit@20"):
            assert 0.0 <= results[split][key] <= 1.0
    assert results["dataset"]["feature_source"] == "generated"
    assert results["config"]["sgfd"] is sgfd


def test_trained_model_beats_most_popular(tiny_dataset):
    trainer = Trainer(tiny_dataset, _cfg(sgfd=True, epochs=60, patience=60))
    trainer.fit()
    model_score = trainer.evaluate("test")["recall@20"]
    train = tiny_dataset.csr("train")
    exclude = train.merge(tiny_dataset.csr("valid"))
    pop = most_popular(train, tiny_dataset.n_items, exclude, tiny_dataset.csr("test"), (20,))
    assert model_score > pop["recall@20"]


def test_same_seed_same_metrics(tiny_dataset):
    a = Trainer(tiny_dataset, _cfg(epochs=3)).fit().history
    b = Trainer(tiny_dataset, _cfg(epochs=3)).fit().history
    assert [r["valid"]["recall@20"] for r in a] == [r["valid"]["recall@20"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_nonfinite_loss_is_reported(tiny_dataset):
    trainer = Trainer(tiny_dataset, _cfg(epochs=1))
    with torch.no_grad():
        trainer.model.user_embedding.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="training loss became nan"):
        trainer.fit()


@pytest.mark.parametrize("model", ["bm3", "lightgcn"])
def test_fused_and_reference_kernels_give_the_same_run(tiny_dataset, model):
    runs = {}
    for kernels in ("fused", "reference"):
        cfg = _cfg(model=model, sgfd=model == "bm3", epochs=3, kernels=kernels)
        trainer = Trainer(tiny_dataset, cfg)
        history = trainer.fit().history
        runs[kernels] = (history, trainer.evaluate("test"))
    (h_fused, t_fused), (h_ref, t_ref) = runs["fused"], runs["reference"]
    for a, b in zip(h_fused, h_ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["valid"]["recall@20"] == pytest.approx(b["valid"]["recall@20"], abs=1e-6)
    for key in ("recall@20", "ndcg@20", "recall@10", "ndcg@10"):
        assert t_fused[key] == pytest.approx(t_ref[key], abs=1e-6)


def test_bfloat16_autocast_trains_close_to_float32(tiny_dataset):
    full = Trainer(tiny_dataset, _cfg(epochs=1))
    mixed = Trainer(tiny_dataset, _cfg(epochs=1, autocast="bfloat16"))
    batch = next(iter(full.sampler))
    with mixed.autocast():
        assert mixed.model.predictor(torch.randn(3, 16)).dtype == torch.bfloat16
    loss_full, loss_mixed = full.train_step(batch, 0), mixed.train_step(batch, 0)
    assert loss_mixed != loss_full
    assert loss_mixed == pytest.approx(loss_full, rel=0.05)

    mixed = Trainer(tiny_dataset, _cfg(autocast="bfloat16"))
    before = mixed.evaluate("valid")["recall@20"]
    mixed.fit()
    assert mixed.state.best_score > before
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())


def test_unknown_autocast_dtype_is_rejected():
    with pytest.raises(ValueError, match="autocast must be one of"):
        _cfg(autocast="int8")
