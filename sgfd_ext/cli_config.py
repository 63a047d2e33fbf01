"""Command-line flags shared by the training and experiment entry points."""

from __future__ import annotations

import argparse
import dataclasses

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.ops.kernels import KERNELS
from sgfd_ext.presets import DATASET_ALIASES, preset_for

# Models that take no item features: they always run without SGFD.
FEATURELESS_MODELS = ("lightgcn", "most-popular", "itemknn")

# Ablation switches: flag -> (SGFDConfig field, value it sets).
ABLATIONS = {
    "no-ce": ("use_ce", False),
    "no-ld": ("use_ld", False),
    "no-fd": ("use_fd", False),
    "no-fusion": ("use_fusion", False),
    "deep-student": ("deep_student", True),
    "linear-teacher": ("teacher_activation", False),
    "detach-teacher": ("detach_teacher", True),
    "double-softmax": ("reference_double_softmax", True),
}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of one run; unset ones fall back to the preset, then to the dataclass default."""
    p.add_argument("--dataset", default="movielens-100k",
                   help="movielens-100k (default), office, clothing, toys, menclothing")
    p.add_argument("--data-root", default=None,
                   help="folder holding the dataset folders (else $SGFD_DATA_ROOT)")
    p.add_argument("--generated-features", action="store_true",
                   help="stand-in generated features where a dataset's feature files are absent")
    p.add_argument("--labels", dest="labels_path",
                   help="MMRec layout: semantic labels (.npy, or CSV of item,label)")
    p.add_argument("--clusters", dest="n_clusters", type=int,
                   help="MMRec layout without labels: number of k-means clusters")
    p.add_argument("--model", default="bm3",
                   help="bm3, grcn, maml, lightgcn, or a baseline: most-popular, itemknn")
    p.add_argument("--no-sgfd", action="store_true", help="the plain base model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int,
                   help="epochs without a better validation score before stopping")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--dim", dest="embedding_dim", type=int, help="latent size d")
    p.add_argument("--kernels", choices=KERNELS, default="fused",
                   help="fused C++/CUDA ops (default) or their PyTorch references")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--select-on-test", action="store_true",
                   help="pick the epoch on test (leaks; only to compare with published tables)")
    p.add_argument("--time-limit", dest="time_limit_s", type=float,
                   help="stop training after this many seconds")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--set", dest="model_args", action="append", default=[], metavar="KEY=VALUE",
                   help="a base-model setting, e.g. --set n_layers=2 (repeatable)")
    p.add_argument("--lambda-ce", type=float)
    p.add_argument("--lambda-kd", type=float)
    p.add_argument("--tau", type=float)
    p.add_argument("--ld-distance", choices=("l1", "l2"))
    for flag in ABLATIONS:
        p.add_argument(f"--{flag}", action="store_true", help=f"ablation: {flag.replace('-', ' ')}")


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def config_from_args(args: argparse.Namespace, ablations: tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the published preset, then explicit flags, then ``ablations``."""
    from sgfd_ext.models import MODELS, check_model_args

    known = sorted(set(MODELS) | set(FEATURELESS_MODELS))
    if args.model not in known:
        raise ValueError(f"unknown model {args.model!r}; known: {', '.join(known)}")
    dataset = DATASET_ALIASES.get(args.dataset, args.dataset)
    preset = preset_for(args.model, dataset)
    top = {k: v for k, v in preset.items() if k not in ("model_args", "sgfd_args")}
    model_args = dict(preset.get("model_args", {}))
    sgfd_args = dict(preset.get("sgfd_args", {}))

    for name in ("epochs", "patience", "eval_every", "batch_size", "lr", "weight_decay",
                 "embedding_dim", "time_limit_s"):
        if getattr(args, name) is not None:
            top[name] = getattr(args, name)
    for item in args.model_args:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        model_args[key] = _parse_value(value)
    for name in ("lambda_ce", "lambda_kd", "tau", "ld_distance"):
        if getattr(args, name) is not None:
            sgfd_args[name] = getattr(args, name)
    chosen = [f for f in ABLATIONS if getattr(args, f.replace("-", "_"))] + list(ablations)
    for flag in chosen:
        key, value = ABLATIONS[flag]
        sgfd_args[key] = value

    cfg = dataclasses.replace(
        TrainConfig(),
        dataset=dataset,
        data_root=args.data_root,
        generated_features=args.generated_features,
        labels_path=args.labels_path,
        n_clusters=args.n_clusters,
        model=args.model,
        sgfd=not args.no_sgfd and args.model not in FEATURELESS_MODELS,
        seed=args.seed,
        device=args.device,
        kernels=args.kernels,
        threads=args.threads,
        select_on_test=args.select_on_test,
        out_dir=args.out_dir,
        model_args=model_args,
        sgfd_args=SGFDConfig(**sgfd_args),
        **top,
    )
    check_model_args(cfg)
    return cfg
