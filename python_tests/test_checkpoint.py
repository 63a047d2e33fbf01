"""Checkpoint files: atomic writes, integrity checks, compatibility checks, exact continuation."""

import dataclasses
import json

import pytest
import torch
from tiny_data import synthetic_dataset, tiny_config

from sgfd_ext.checkpoint import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    PREVIOUS_FILE,
    CheckpointError,
    IncompatibleRunError,
    RunDirectory,
    read_checkpoint,
    train_config_from_dict,
    write_atomic,
)
from sgfd_ext.trainer import Callbacks, Trainer


def _train(dataset, cfg, run_dir=None, resume=False):
    """Train with a checkpoint after each epoch (as the CLI does) and return the trainer."""
    run = RunDirectory(run_dir) if run_dir is not None else None
    trainer = Trainer(dataset, cfg)
    if run is not None:
        trainer.callbacks = Callbacks(on_epoch=lambda state, record: run.save(trainer))
        if resume:
            run.restore(trainer)
        else:
            run.start(cfg, dataset)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset()


def test_write_read_round_trip_keeps_previous(tmp_path):
    path, prev = tmp_path / "c.pt", tmp_path / "p.pt"
    write_atomic({"epoch": 1, "w": torch.arange(5.0)}, path, keep_previous=prev)
    write_atomic({"epoch": 2, "w": torch.arange(6.0)}, path, keep_previous=prev)
    assert read_checkpoint(path)["epoch"] == 2
    assert torch.equal(read_checkpoint(prev)["w"], torch.arange(5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "p.pt"]  # no temporary left


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) - 100], "truncated: .* of .* payload bytes"),
    (lambda b: b[:10], "truncated or damaged header"),
    (lambda b: b[:-20] + bytes(20), "checksum mismatch"),
    (lambda b: b"PK\x03\x04" + b[4:], "not an sgfd-ext checkpoint"),
    (lambda b: b"", "empty file"),
])
def test_damaged_file_gives_clear_error(tmp_path, damage, message):
    path = tmp_path / CHECKPOINT_FILE
    write_atomic({"epoch": 3, "w": torch.randn(100)}, path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.pt")


def test_run_folder_files_and_exact_continuation(tmp_path, dataset):
    """Two epochs, a new trainer continuing from the folder, two more: same as four at once."""
    cfg = tiny_config(epochs=4)
    whole = _train(dataset, cfg)
    _train(dataset, dataclasses.replace(cfg, epochs=2), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {CONFIG_FILE, CHECKPOINT_FILE, PREVIOUS_FILE,
                                                    BEST_MODEL_FILE}
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE)["epoch"] == 2
    assert read_checkpoint(tmp_path / PREVIOUS_FILE)["epoch"] == 1

    continued = _train(dataset, cfg, tmp_path, resume=True)
    a, b = whole.results(), continued.results()
    assert b["epochs_run"] == 4
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
    best = read_checkpoint(tmp_path / BEST_MODEL_FILE)
    assert best["epoch"] == b["best_epoch"]
    for k, v in continued.model.state_dict().items():  # the best weights are what was loaded
        assert torch.equal(best["model"][k], v)


def test_corrupt_latest_falls_back_to_previous(tmp_path, dataset, caplog):
    _train(dataset, tiny_config(epochs=2), tmp_path)
    ckpt = tmp_path / CHECKPOINT_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    trainer = Trainer(dataset, tiny_config(epochs=2))
    RunDirectory(tmp_path).restore(trainer)
    assert trainer.state.epoch == 1
    assert "truncated" in caplog.text and PREVIOUS_FILE in caplog.text


def test_best_model_file_is_repaired_on_resume(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=2), tmp_path)
    (tmp_path / BEST_MODEL_FILE).unlink()  # as if killed between the two writes
    trainer = Trainer(dataset, tiny_config(epochs=2))
    RunDirectory(tmp_path).restore(trainer)
    best = read_checkpoint(tmp_path / BEST_MODEL_FILE)
    assert best["epoch"] == trainer.state.best_epoch >= 1
    for k, v in trainer.best_model_state.items():
        assert torch.equal(best["model"][k], v)


def test_both_checkpoints_unusable_is_a_clear_error(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=2), tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    (tmp_path / PREVIOUS_FILE).unlink()
    with pytest.raises(CheckpointError, match="no usable checkpoint.*garbage.*absent"):
        RunDirectory(tmp_path).restore(Trainer(dataset, tiny_config()))


def test_refuses_other_configuration_naming_each_setting(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=1), tmp_path)
    changed = tiny_config(epochs=9, lr=0.5, model_args={"n_layers": 2},
                          sgfd_args=dataclasses.replace(tiny_config().sgfd_args, tau=7.0))
    with pytest.raises(IncompatibleRunError) as err:
        RunDirectory(tmp_path).restore(Trainer(dataset, changed))
    text = str(err.value)
    assert "lr: run has 0.01, now 0.5" in text
    assert "model_args.n_layers: run has <absent>, now 2" in text
    assert "sgfd_args.tau: run has 5.0, now 7.0" in text
    assert "epochs" not in text.split(". Only")[0]  # allowed to change


def test_refuses_other_dataset(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=1), tmp_path)
    other = synthetic_dataset(seed=1)
    with pytest.raises(IncompatibleRunError, match="dataset train_digest"):
        RunDirectory(tmp_path).restore(Trainer(other, tiny_config(epochs=2)))


def test_allowed_changes_continue(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=1), tmp_path)
    trainer = _train(dataset, tiny_config(epochs=2, patience=7, eval_batch_size=16), tmp_path,
                     resume=True)
    assert trainer.state.epoch == 2


def test_config_json_rebuilds_the_configuration(tmp_path, dataset):
    cfg = tiny_config(epochs=1, ks=(5, 10), model_args={"dropout": 0.25})
    RunDirectory(tmp_path).start(cfg, dataset)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert train_config_from_dict(record["config"]) == cfg
    assert RunDirectory(tmp_path).saved_config() == cfg
    assert record["dataset"]["users"] == dataset.n_users


def test_starting_over_an_existing_run_is_refused(tmp_path, dataset):
    _train(dataset, tiny_config(epochs=1), tmp_path)
    with pytest.raises(IncompatibleRunError, match="already holds a run"):
        RunDirectory(tmp_path).start(tiny_config(), dataset)
