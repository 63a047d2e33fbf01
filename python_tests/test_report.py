"""The experiment report on fabricated runs: table content, p-values, JSON and plots."""

import json
import math

import pytest
from scipy import stats
from synthetic import tiny_dataset

from sgfd_ext import experiment
from sgfd_ext.report import ablation_table, compare, main_table, write_report

BASE = [0.100, 0.110, 0.105, 0.098, 0.102]
SGFD = [0.112, 0.115, 0.111, 0.109, 0.113]
NO_CE = [0.104, 0.112, 0.108, 0.101, 0.103]


def _runs():
    runs = []
    for variant, values in (("base", BASE), ("sgfd", SGFD), ("no-ce", NO_CE)):
        for seed, v in enumerate(values):
            runs.append({"model": "maml", "variant": variant, "seed": seed,
                         "test": {"recall@20": v, "ndcg@20": v / 2}})
    # A second model with only three seeds of SGFD: pairs use the common seeds.
    for seed, v in enumerate(BASE):
        runs.append({"model": "grcn", "variant": "base", "seed": seed,
                     "test": {"recall@20": v, "ndcg@20": v}})
    for seed, v in enumerate(SGFD[:3]):
        runs.append({"model": "grcn", "variant": "sgfd", "seed": seed,
                     "test": {"recall@20": v, "ndcg@20": v}})
    return runs


def _mean(x):
    return sum(x) / len(x)


def _std(x):
    m = _mean(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


def test_compare_pairs_by_seed():
    c = compare(_runs(), "maml", "base", "sgfd", "recall@20")
    assert c["reference"]["mean"] == pytest.approx(_mean(BASE))
    assert c["variant"]["std"] == pytest.approx(_std(SGFD))
    assert c["improvement_percent"] == pytest.approx((_mean(SGFD) / _mean(BASE) - 1) * 100)
    assert c["p"] == pytest.approx(float(stats.ttest_rel(SGFD, BASE).pvalue))

    c = compare(_runs(), "grcn", "base", "sgfd", "recall@20")
    assert c["paired_seeds"] == [0, 1, 2]
    assert c["p"] == pytest.approx(float(stats.ttest_rel(SGFD[:3], BASE[:3]).pvalue))


def test_main_table_layout_and_values():
    table = main_table(_runs(), ["maml", "grcn"])
    lines = table.splitlines()
    assert lines[0] == "| Model | Recall@20 (%) | NDCG@20 (%) |"
    assert [ln.split(" | ")[0].lstrip("| ") for ln in lines[2:]] == [
        "MAML", "SGFD-MAML", "Improvement", "p (paired t-test)", "SGFD-MAML vs MAML",
        "GRCN", "SGFD-GRCN", "Improvement", "p (paired t-test)", "SGFD-GRCN vs GRCN"]
    maml = lines[2].split(" | ")
    assert maml[1] == f"{100 * _mean(BASE):.2f} ± {100 * _std(BASE):.2f}"
    assert lines[4].split(" | ")[1] == f"{(_mean(SGFD) / _mean(BASE) - 1) * 100:+.2f}%"
    p = float(stats.ttest_rel(SGFD, BASE).pvalue)
    assert p < 0.05
    assert lines[5].split(" | ")[1] == f"{p:.4f} *"
    assert lines[6] == "| SGFD-MAML vs MAML | higher (p < 0.05) | higher (p < 0.05) |"
    # three paired seeds of GRCN: its p-value decides the verdict the same way
    p_grcn = float(stats.ttest_rel(SGFD[:3], BASE[:3]).pvalue)
    want = "higher (p < 0.05)" if p_grcn < 0.05 else "no significant change"
    assert lines[11].split(" | ")[1] == want


def test_ablation_table_compares_full_sgfd_with_each_ablation():
    table = ablation_table(_runs(), ["maml"], ["no-ce"])
    lines = table.splitlines()
    assert lines[2].startswith("| SGFD-MAML |")
    assert lines[3].startswith("| SGFD-MAML (no-ce) |")
    p = float(stats.ttest_rel(NO_CE, SGFD).pvalue)
    assert lines[5].split(" | ")[1].rstrip(" *|") == f"{p:.4f}"


def test_write_report_outputs(tmp_path):
    info = {"dataset": "office", "feature_source": "generated",
            "command": "python -m sgfd_ext.experiment --dataset office --seeds 5"}
    paths = write_report(tmp_path, _runs(), ["maml", "grcn"], ["no-ce"], info)
    text = paths["report"].read_text()
    assert "generated stand-ins" in text and "# SGFD on office" in text
    assert "Command: `python -m sgfd_ext.experiment --dataset office --seeds 5`" in text
    assert "## Ablations of SGFD" in text and "SGFD-MAML (no-ce)" in text
    record = json.loads(paths["results"].read_text())
    assert record["feature_source"] == "generated" and "generated" in record["features_note"]
    assert len(record["runs"]) == 23 and record["seeds"] == [0, 1, 2, 3, 4]
    assert record["summary"]["main"][0]["p"] == pytest.approx(
        float(stats.ttest_rel(SGFD, BASE).pvalue))
    for key in ("plot", "ablation_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_variant_gives_na():
    runs = [r for r in _runs() if not (r["model"] == "grcn" and r["variant"] == "sgfd")]
    lines = main_table(runs, ["grcn"]).splitlines()
    assert lines[3] == "| SGFD-GRCN | n/a | n/a |"
    assert lines[5] == "| p (paired t-test) | n/a | n/a |"
    assert lines[6] == "| SGFD-GRCN vs GRCN | n/a | n/a |"


def test_verdict_says_when_the_variant_is_lower():
    ndcg_base, ndcg_sgfd = [0.05, 0.06, 0.05, 0.06, 0.05], [0.051, 0.059, 0.052, 0.058, 0.05]
    runs = [{"model": "bm3", "variant": v, "seed": s, "test": {"recall@20": x, "ndcg@20": y}}
            for v, xs, ys in (("base", BASE, ndcg_base),
                              ("sgfd", [b - 0.01 for b in BASE], ndcg_sgfd))
            for s, (x, y) in enumerate(zip(xs, ys))]
    lines = main_table(runs, ["bm3"]).splitlines()
    assert lines[6] == "| SGFD-BM3 vs BM3 | lower (p < 0.05) | no significant change |"


def test_experiment_plans_pairs_and_resumes(tmp_path):
    args = experiment.parse_args(["--dataset", "office", "--models", "maml,grcn", "--seeds", "2",
                                  "--ablations", "no-ce", "--epochs", "1", "--dim", "8"])
    plan = experiment.planned_runs(args.models, args.seeds, args.ablations)
    assert len(plan) == 12 and ("grcn", "no-ce", 1) in plan

    calls = []

    def fake_train(dataset, cfg, progress=True):
        calls.append(cfg)
        return {"config": cfg.to_dict(), "valid": {},
                "test": {"recall@20": 0.1 + 0.01 * cfg.seed, "ndcg@20": 0.05}}

    ds = tiny_dataset()
    runs = experiment.run_experiment(ds, args, tmp_path, train=fake_train)
    assert len(runs) == 12 and len(calls) == 12
    by_variant = {(c.model, c.sgfd, c.sgfd_args.use_ce, c.seed) for c in calls}
    assert ("maml", False, True, 0) in by_variant and ("grcn", True, False, 1) in by_variant
    assert all(c.embedding_dim == 8 and c.epochs == 1 for c in calls)
    assert all(r["feature_source"] == "generated" for r in runs)

    (tmp_path / "runs" / "maml-sgfd-seed1.json").unlink()
    calls.clear()
    again = experiment.run_experiment(ds, args, tmp_path, train=fake_train)
    assert len(again) == 12 and [(c.model, c.sgfd, c.seed) for c in calls] == [("maml", True, 1)]

    # finished runs are only reused under the settings they were trained with
    changed = experiment.parse_args(["--dataset", "office", "--models", "maml,grcn", "--seeds", "2",
                                     "--ablations", "no-ce", "--epochs", "2", "--dim", "8"])
    with pytest.raises(ValueError, match=r"maml-base-seed0.json: .*other settings \(epochs\)"):
        experiment.run_experiment(ds, changed, tmp_path, train=fake_train)


def test_experiment_rejects_single_run_flags():
    for argv in (["--model", "bm3"], ["--seed", "3"], ["--no-sgfd"], ["--no-ce"],
                 ["--models", "nope"], ["--ablations", "nope"]):
        with pytest.raises(SystemExit):
            experiment.parse_args(argv)
    args = experiment.parse_args([])
    assert args.models == ["bm3", "grcn", "maml"] and args.seeds == 5 and args.ablations == []
