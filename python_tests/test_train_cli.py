"""The training command line on the real MovieLens 100K data, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest
from shared_data import shared_data


def _run(tmp_path, *args):
    env = dict(os.environ, SGFD_DATA_ROOT=str(shared_data("movielens-100k").parent))
    proc = subprocess.run(
        [sys.executable, "-m", "sgfd_ext.train", "--quiet", "--out-dir", str(tmp_path), *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = tmp_path.glob("*/results.json")
    return proc.stdout, json.loads(results_file.read_text())


@pytest.mark.parametrize("extra", [[], ["--no-sgfd"]])
def test_train_two_epochs_writes_results(tmp_path, extra):
    stdout, results = _run(tmp_path, "--epochs", "2", "--threads", "1", *extra)
    assert "recall@20" in stdout and "test" in stdout
    assert results["dataset"]["name"] == "movielens-100k"
    assert results["dataset"]["feature_source"] == "real"
    assert results["config"]["sgfd"] is (not extra)
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert "recall@20" in results["history"][0]["valid"]
    for key in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert 0.0 < results["test"][key] < 1.0
    assert results["environment"]["torch"]


@pytest.mark.parametrize("model", ["most-popular", "itemknn"])
def test_baselines_run_from_the_command_line(tmp_path, model):
    stdout, results = _run(tmp_path, "--model", model)
    assert f"{model} on movielens-100k" in stdout
    assert results["config"]["model"] == model and results["config"]["sgfd"] is False
    assert 0.05 < results["test"]["recall@20"] < 0.3 and results["valid"]["users"] > 900


def test_unknown_dataset_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sgfd_ext.train", "--dataset", "nosuch", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode != 0
    assert "unknown dataset 'nosuch'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--lr", "-1"], "lr must be positive"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--lambda-ce", "-1"], "lambda_ce and lambda_kd must be >= 0"),
    (["--threads", "-2"], "threads must be at least 1"),
    (["--time-limit", "-5"], "time limit must be positive"),
    (["--device", "gpu0"], "device must be like 'cpu', 'cuda' or 'cuda:1', got 'gpu0'"),
    (["--set", "bogus=1"], "unknown BM3Config settings ['bogus']"),
    (["--set", "n_layers=abc"], "setting n_layers: expected int, found 'abc'"),
    (["--set", "dropout"], "--set expects KEY=VALUE, got 'dropout'"),
    (["--data-root", "."], "no MovieLens 100K files here"),
])
@pytest.mark.parametrize("command", ["sgfd_ext.train", "sgfd_ext.experiment"])
def test_bad_settings_are_clear_errors(tmp_path, flags, message, command):
    if command == "sgfd_ext.experiment" and flags[0] == "--model":
        flags = ["--models", *flags[1:]]
        message = "unknown models ['nosuch']"
    proc = subprocess.run(
        [sys.executable, "-m", command, "--out-dir", str(tmp_path), *flags],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_experiment_refuses_models_without_features(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sgfd_ext.experiment", "--models", "bm3,lightgcn",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "lightgcn take no item features, so there is no SGFD variant" in proc.stderr


def test_resume_with_a_changed_setting_names_it(tmp_path):
    _run(tmp_path, "--epochs", "1", "--threads", "1", "--no-sgfd")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    env = dict(os.environ, SGFD_DATA_ROOT=str(shared_data("movielens-100k").parent))
    proc = subprocess.run(
        [sys.executable, "-m", "sgfd_ext.train", "--quiet", "--resume", str(run_dir),
         "--no-sgfd", "--lr", "0.5"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot continue the run in {run_dir}" in proc.stderr
    assert "lr: run has 0.001, now 0.5" in proc.stderr
    assert "only --data-root, --device, --epochs, --out-dir, --patience" in proc.stderr
