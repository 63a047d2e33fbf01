"""The run summary table: grouping, mean and standard deviation, generated-feature labels."""

import json

import pytest

from sgfd_ext.summarize import main, summary_table


def _run(model, sgfd, seed, recall, source="real"):
    return {"config": {"model": model, "sgfd": sgfd, "seed": seed},
            "dataset": {"name": "office", "feature_source": source},
            "test": {"recall@20": recall}, "best_epoch": 10, "train_seconds": 5.0}


def test_groups_and_statistics():
    runs = [_run("bm3", False, 0, 0.10), _run("bm3", False, 1, 0.14),
            _run("bm3", True, 0, 0.20, "generated")]
    table = summary_table(runs, ("recall@20",)).splitlines()
    assert table[3] == "| office | bm3 | 2 (0,1) | 0.1200 ± 0.0283 | 10 | 5 |"
    assert table[2] == "| office (generated features) | SGFD-bm3 | 1 (0) | 0.2000 ± 0.0000 | 10 | 5 |"


def test_cli_reads_run_folders(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(_run("most-popular", False, 0, 0.08)))
    assert main([str(folder), "--metrics", "recall@20"]) == 0
    assert "| office | most-popular | 1 (0) | 0.0800 ± 0.0000 |" in capsys.readouterr().out


def test_runs_with_other_settings_are_not_pooled():
    a, b = _run("bm3", False, 0, 0.10), _run("bm3", False, 1, 0.20)
    b["config"]["lr"] = 0.5
    table = summary_table([a, b], ("recall@20",))
    assert "bm3 (settings 1 of 2) | 1 (0)" in table or "bm3 (settings 1 of 2) | 1 (1)" in table
    assert "(settings 2 of 2)" in table


def test_cli_accepts_an_output_folder_and_rejects_unknown_metrics(tmp_path, capsys):
    for seed in (0, 1):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps(_run("bm3", False, seed, 0.1 + seed / 10)))
    (tmp_path / "unfinished").mkdir()
    assert main([str(tmp_path), "--metrics", "recall@20"]) == 0
    assert "| office | bm3 | 2 (0,1) | 0.1500 ± 0.0707 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--metrics", "bogus@3"])
    assert exit_info.value.code == 2
    assert "unknown metric(s) bogus@3" in capsys.readouterr().err


def test_cli_reads_experiment_output(tmp_path, capsys):
    runs = [dict(_run("grcn", s == 1, 0, r), model="grcn", variant="base", seed=0)
            for s, r in ((0, 0.10), (1, 0.12))]
    (tmp_path / "runs").mkdir()
    for k, run in enumerate(runs):
        (tmp_path / "runs" / f"grcn-{k}.json").write_text(json.dumps(run))
    (tmp_path / "results.json").write_text(json.dumps({"dataset": "office", "runs": runs}))
    for target in (tmp_path, tmp_path / "results.json", tmp_path / "runs"):
        assert main([str(target), "--metrics", "recall@20"]) == 0
        out = capsys.readouterr().out
        assert "| office | grcn | 1 (0) | 0.1000 ± 0.0000 |" in out
        assert "| office | SGFD-grcn | 1 (0) | 0.1200 ± 0.0000 |" in out


def test_cli_names_a_file_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "config.json")])
    assert exit_info.value.code == 2
    assert "config.json: expected finished runs" in capsys.readouterr().err
