"""A run killed with SIGKILL mid-epoch, then resumed, ends exactly like one never killed."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_data import synthetic_dataset, write_mmrec

from sgfd_ext import train
from sgfd_ext.checkpoint import CHECKPOINT_FILE, RESULTS_FILE, RunDirectory, read_checkpoint
from sgfd_ext.cli_config import add_train_arguments, config_from_args

# Runs ``python -m sgfd_ext.train`` on an MMRec folder. With PAUSE_FILE set, the process writes
# that file and sleeps just before batch 1 of the third epoch, so the parent can kill it there.
WRAPPER = '''
import os, sys, time
import sgfd_ext.data
from sgfd_ext.data.mmrec import load_mmrec

def load_dataset(name, data_root, seed=0, **_):
    return load_mmrec(os.path.join(data_root, name), name, seed=seed, n_clusters=8)

sgfd_ext.data.load_dataset = load_dataset

pause = os.environ.get("PAUSE_FILE")
if pause:
    from sgfd_ext.trainer import Trainer
    step = Trainer.train_step

    def paused_step(self, batch, index):
        if self.state.epoch == 2 and index == 1:
            open(pause, "w").write("in epoch 3")
            time.sleep(600)
        return step(self, batch, index)

    Trainer.train_step = paused_step

from sgfd_ext.train import main
sys.exit(main(sys.argv[1:]))
'''


def _command(script: Path, data: Path, run_dir: Path) -> list[str]:
    return [sys.executable, str(script), "--dataset", "office", "--data-root", str(data),
            "--model", "bm3", "--epochs", "4", "--patience", "50", "--batch-size", "2048",
            "--dim", "16", "--lr", "0.01", "--threads", "1", "--seed", "3", "--quiet",
            "--run-dir", str(run_dir)]


def _metrics(run_dir: Path) -> dict:
    r = json.loads((run_dir / RESULTS_FILE).read_text())
    return {k: r[k] for k in ("valid", "test", "best_epoch", "best_valid", "epochs_run")} | {
        "losses": [h["loss"] for h in r["history"]]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_mmrec(root / "office", max_users=600)
    script = root / "run_train.py"
    script.write_text(WRAPPER)
    return root, script


def _start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    """Start a process whose output goes to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(command, env=dict(os.environ, PYTHONUNBUFFERED="1", **env),
                                stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(setup):
    root, script = setup
    marker = root / "paused"
    whole = _start(_command(script, root, root / "whole"), root / "whole.log")
    killed = _start(_command(script, root, root / "killed"), root / "killed.log",
                    PAUSE_FILE=str(marker))
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), (root / "killed.log").read_text()[-3000:]
        assert read_checkpoint(root / "killed" / CHECKPOINT_FILE)["epoch"] == 2
        killed.send_signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL
        assert not (root / "killed" / RESULTS_FILE).exists()

        resumed = _start([sys.executable, str(script), "--resume", str(root / "killed"),
                          "--data-root", str(root), "--quiet"], root / "resumed.log")
        assert resumed.wait(timeout=300) == 0, (root / "resumed.log").read_text()[-3000:]
        assert whole.wait(timeout=300) == 0, (root / "whole.log").read_text()[-3000:]
    finally:
        for process in (whole, killed):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "continuing" in (root / "resumed.log").read_text()

    a, b = _metrics(root / "whole"), _metrics(root / "killed")
    assert b["epochs_run"] == 4
    assert a == b


def test_resume_refuses_different_flags_naming_them(tmp_path, monkeypatch, capsys):

    def fail(*args, **kwargs):
        raise AssertionError("the data must not be loaded when the flags are refused")

    monkeypatch.setattr(train, "load_dataset", fail)
    flags = ["--dataset", "office", "--model", "bm3", "--lr", "0.01", "--dim", "16"]
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    RunDirectory(tmp_path).start(config_from_args(parser.parse_args(flags)), synthetic_dataset())

    with pytest.raises(SystemExit) as stop:
        train.main(flags[:-4] + ["--lr", "0.5", "--no-sgfd", "--quiet", "--resume", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "lr: run has 0.01, now 0.5" in err
    assert "sgfd: run has True, now False" in err
    assert "embedding_dim: run has 16, now 128" in err  # flags left out fall back to the preset
