"""Data parallelism: weighted shares, sharded evaluation, two gloo processes under torchrun."""

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch
from tiny_data import synthetic_dataset, tiny_config, write_mmrec

from sgfd_ext.cli_config import add_train_arguments, config_from_args
from sgfd_ext.data.mmrec import load_mmrec
from sgfd_ext.distributed import local_batch, metric_sums, metrics_from_sums, shard
from sgfd_ext.evaluation import evaluate_model
from sgfd_ext.models import build_model
from sgfd_ext.sampler import PairSampler
from sgfd_ext.trainer import Trainer


def _gradients(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in model.parameters()]


def test_weighted_shares_sum_to_the_single_process_gradient():
    dataset = synthetic_dataset()
    cfg = tiny_config(model_args={"dropout": 0.0})
    model = build_model(dataset, cfg, torch.device("cpu"))
    batch = next(iter(PairSampler(dataset.train, dataset.n_items, 10, seed=0)))
    whole = _gradients(model, model.training_loss(batch))

    world = 3  # shares of 3, 3 and 4 pairs
    summed = [torch.zeros_like(g) for g in whole]
    averaged = [torch.zeros_like(g) for g in whole]
    for rank in range(world):
        local, weight = local_batch(batch, rank, world)
        grads = _gradients(model, model.training_loss(local) * weight)
        plain = _gradients(model, model.training_loss(local) / world)
        for s, a, g, p in zip(summed, averaged, grads, plain):
            s += g
            a += p
    for s, w in zip(summed, whole):
        torch.testing.assert_close(s, w, rtol=1e-4, atol=1e-6)
    # Unequal shares make the plain average of share means a different (wrong) gradient.
    assert any(not torch.allclose(a, w, rtol=1e-4, atol=1e-6) for a, w in zip(averaged, whole))


def test_shards_cover_every_item_once():
    for n in (0, 1, 7, 10):
        parts = [shard(n, r, 3) for r in range(3)]
        assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))


def test_sharded_evaluation_equals_the_single_process_average():
    dataset = synthetic_dataset(n_users=50)
    cfg = tiny_config()
    model = build_model(dataset, cfg, torch.device("cpu"))
    exclude, target = dataset.csr("train"), dataset.csr("test")
    expected = evaluate_model(model, exclude, target, cfg.ks, batch_size=7)
    total = sum(metric_sums(model, exclude, target, cfg.ks, 7, shard(exclude.n_rows, r, 3))
                for r in range(3))
    got = metrics_from_sums(total, cfg.ks)
    assert got["users"] == expected["users"] == 50
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


WRAPPER = '''
import os, sys
import sgfd_ext.data
from sgfd_ext.data.mmrec import load_mmrec

def load_dataset(name, data_root, seed=0, **_):
    return load_mmrec(os.path.join(data_root, name), name, seed=seed, n_clusters=8)

sgfd_ext.data.load_dataset = load_dataset
from sgfd_ext.train import main
sys.exit(main(sys.argv[1:]))
'''


def test_two_gloo_processes_match_one_process(tmp_path):
    write_mmrec(tmp_path / "office", max_users=400)
    script = tmp_path / "run_train.py"
    script.write_text(WRAPPER)
    flags = ["--dataset", "office", "--data-root", str(tmp_path), "--model", "bm3",
             "--epochs", "2", "--batch-size", "1000", "--dim", "16", "--lr", "0.01",
             "--threads", "1", "--seed", "0", "--quiet", "--set", "dropout=0.0"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2"]
    double = subprocess.run([*launch, str(script), *flags, "--run-dir", str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert double.returncode == 0, (double.stdout + double.stderr)[-3000:]
    assert "process 1 of 2 on cpu (gloo)" in double.stderr
    two = json.loads((tmp_path / "two" / "results.json").read_text())

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args([f for f in flags if f != "--quiet"]))
    dataset = load_mmrec(str(tmp_path / "office"), "office", seed=0, n_clusters=8)
    single = Trainer(dataset, cfg)
    single.fit()
    one = single.results()

    assert [h["loss"] for h in two["history"]] == pytest.approx(
        [h["loss"] for h in one["history"]], rel=1e-5)
    for split in ("valid", "test"):
        assert two[split]["users"] == one[split]["users"]
        for key, value in one[split].items():
            assert two[split][key] == pytest.approx(value, abs=1e-4), (split, key)
    assert one["best_epoch"] == two["best_epoch"]
