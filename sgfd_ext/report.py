"""Paper-style tables, a JSON record and a plot from the runs of an experiment.

A run is a dictionary with ``model``, ``variant`` (``"base"``, ``"sgfd"`` or an ablation flag,
which is always an SGFD run), ``seed`` and ``test`` (metric name -> value), as written by
``sgfd_ext.experiment``. Runs of two variants are paired by seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from sgfd_ext.files import write_json_atomic
from sgfd_ext.stats import mean_std, paired_ttest

METRICS = ("recall@20", "ndcg@20")
MODEL_NAMES = {"bm3": "BM3", "grcn": "GRCN", "maml": "MAML"}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "hit": "Hit"}


def model_label(model: str, variant: str) -> str:
    """``MAML``, ``SGFD-MAML`` or ``SGFD-MAML (no-ce)``."""
    name = MODEL_NAMES.get(model, model.upper())
    if variant == "base":
        return name
    return f"SGFD-{name}" if variant == "sgfd" else f"SGFD-{name} ({variant})"


def metric_label(metric: str) -> str:
    """``recall@20`` -> ``Recall@20``."""
    name, _, k = metric.partition("@")
    return f"{METRIC_NAMES.get(name, name)}@{k}"


def scores(runs: Sequence[dict], model: str, variant: str, metric: str) -> dict[int, float]:
    """Test value of ``metric`` per seed for one model and variant."""
    return {r["seed"]: float(r["test"][metric]) for r in runs
            if r["model"] == model and r["variant"] == variant}


def compare(runs: Sequence[dict], model: str, reference: str, variant: str,
            metric: str) -> dict:
    """Mean and std of both variants, the relative change of ``variant`` over ``reference``
    (percent), and the paired t-test over the seeds both have."""
    a = scores(runs, model, reference, metric)
    b = scores(runs, model, variant, metric)
    seeds = sorted(set(a) & set(b))
    mean_a, std_a = mean_std(list(a.values()))
    mean_b, std_b = mean_std(list(b.values()))
    test = paired_ttest([b[s] for s in seeds], [a[s] for s in seeds])
    change = (mean_b - mean_a) / mean_a * 100.0 if mean_a else math.nan
    return {
        "metric": metric,
        "reference": {"variant": reference, "mean": mean_a, "std": std_a, "n": len(a)},
        "variant": {"variant": variant, "mean": mean_b, "std": std_b, "n": len(b)},
        "improvement_percent": change,
        "paired_seeds": seeds,
        "t": test.statistic,
        "p": test.pvalue,
    }


def _cell(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _pvalue(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    text = "< 0.0001" if p < 1e-4 else f"{p:.4f}"
    return f"{text} *" if p < 0.05 else text


def _change(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}%"


def _verdict(change: float, p: float) -> str:
    """Plain words for a pair: which way the mean moved and whether the t-test supports it."""
    if change == 0 and math.isnan(p):
        return "identical"
    if math.isnan(change) or math.isnan(p):
        return "n/a"
    if p >= 0.05:
        return "no significant change"
    return "higher (p < 0.05)" if change > 0 else "lower (p < 0.05)"


def _table(rows: list[list[str]], metrics: Sequence[str]) -> str:
    header = ["Model"] + [f"{metric_label(m)} (%)" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pair_rows(runs: Sequence[dict], model: str, reference: str, variant: str,
              metrics: Sequence[str]) -> list[list[str]]:
    """Rows reference, variant, improvement, p-value and verdict for one pair of variants."""
    cmp = [compare(runs, model, reference, variant, m) for m in metrics]
    return [
        [model_label(model, reference)] + [_cell(c["reference"]["mean"], c["reference"]["std"])
                                           for c in cmp],
        [model_label(model, variant)] + [_cell(c["variant"]["mean"], c["variant"]["std"])
                                         for c in cmp],
        ["Improvement"] + [_change(c["improvement_percent"]) for c in cmp],
        ["p (paired t-test)"] + [_pvalue(c["p"]) for c in cmp],
        [f"{model_label(model, variant)} vs {model_label(model, reference)}"]
        + [_verdict(c["improvement_percent"], c["p"]) for c in cmp],
    ]


def main_table(runs: Sequence[dict], models: Sequence[str],
               metrics: Sequence[str] = METRICS) -> str:
    """Each base model against its SGFD variant, as in the paper's Table 2."""
    rows = []
    for model in models:
        rows += pair_rows(runs, model, "base", "sgfd", metrics)
    return _table(rows, metrics)


def ablation_table(runs: Sequence[dict], models: Sequence[str], ablations: Sequence[str],
                   metrics: Sequence[str] = METRICS) -> str:
    """Full SGFD against each ablation; improvement and p-value are of the ablation."""
    rows = []
    for model in models:
        for ablation in ablations:
            rows += pair_rows(runs, model, "sgfd", ablation, metrics)
    return _table(rows, metrics)


def features_note(feature_source: str) -> str:
    """The sentence every output carries about where the item features come from."""
    if feature_source == "real":
        return "Item features: real."
    return (f"**Item features: {feature_source} stand-ins, not real image or text features; "
            f"these numbers check the pipeline and are not comparable to published ones.**")


def plot(runs: Sequence[dict], models: Sequence[str], variants: Sequence[str], path: Path,
         title: str, metrics: Sequence[str] = METRICS) -> None:
    """Grouped bars (mean, sample-std error bars) per model and variant, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for j, variant in enumerate(variants):
            stats = [mean_std(list(scores(runs, m, variant, metric).values())) for m in models]
            xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(models))]
            label = "base" if variant == "base" else (
                "SGFD" if variant == "sgfd" else f"SGFD ({variant})")
            ax.bar(xs, [100 * s[0] for s in stats], width, yerr=[100 * s[1] for s in stats],
                   label=label, capsize=3)
        ax.set_xticks(range(len(models)), [MODEL_NAMES.get(m, m) for m in models])
        ax.set_ylabel(f"{metric_label(metric)} (%)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir: str | Path, runs: Sequence[dict], models: Sequence[str],
                 ablations: Sequence[str] = (), info: dict | None = None,
                 metrics: Sequence[str] = METRICS) -> dict[str, Path]:
    """Write ``report.md``, ``results.json`` and ``plot.png`` (and ``ablation.png``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(info or {})
    dataset = info.get("dataset", "?")
    source = info.get("feature_source", "real")
    seeds = sorted({r["seed"] for r in runs})
    selection = info.get("selection", "validation Recall@20")
    generated = "" if source == "real" else f" ({source} features)"

    lines = [
        f"# SGFD on {dataset}",
        "",
        features_note(source),
        "",
        (f"Test metrics in percent at the epoch selected on {selection}: mean ± sample "
         f"standard deviation over {len(seeds)} seed{'' if len(seeds) == 1 else 's'} "
         f"({', '.join(map(str, seeds))}). "
         "Improvement: relative change of the means. p: two-tailed paired t-test over seeds "
         "(* below 0.05)."),
        "",
        main_table(runs, models, metrics),
    ]
    if info.get("command"):
        command = (f"Command: `{info['command']}` (other settings: the presets of "
                   "`sgfd_ext/presets.py`).")
        lines[6:6] = [command, ""]
    paths = {"report": out / "report.md", "results": out / "results.json",
             "plot": out / "plot.png"}
    if ablations:
        lines += ["", "## Ablations of SGFD", "",
                  ("Full SGFD against each ablation (same seeds); the improvement and p-value "
                   "are those of the ablation."), "",
                  ablation_table(runs, models, ablations, metrics)]
        paths["ablation_plot"] = out / "ablation.png"
        plot(runs, models, ["sgfd", *ablations], paths["ablation_plot"],
             f"SGFD ablations on {dataset}{generated}", metrics)
    paths["report"].write_text("\n".join(lines) + "\n")
    plot(runs, models, ["base", "sgfd"], paths["plot"], f"{dataset}{generated}", metrics)

    summary = {
        "main": [compare(runs, m, "base", "sgfd", x) for m in models for x in metrics],
        "ablations": [compare(runs, m, "sgfd", a, x)
                      for m in models for a in ablations for x in metrics],
    }
    record = {**info, "features_note": features_note(source), "seeds": seeds,
              "models": list(models), "ablations": list(ablations), "summary": summary,
              "runs": list(runs)}
    write_json_atomic(_strict_json(record), paths["results"])
    return paths


def _strict_json(x):
    """``x`` with NaN and infinities replaced by None, so the file is standard JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict_json(v) for v in x]
    return x
