"""Reader of the MMRec layout: ``<name>.inter`` with ``image_feat.npy`` and/or ``text_feat.npy``.

``<name>.inter`` is tab-separated with a header naming at least ``userID``, ``itemID`` and
``x_label`` (0 train, 1 validation, 2 test), optionally with a type suffix (``userID:token``);
ids are 0-based and row ``i`` of each feature matrix belongs to item ``i``. Other columns
(ratings, timestamps) are ignored. Semantic labels come from a file when given, otherwise from
k-means over the standardised features of all modalities. Errors name the file, the line (the
header is line 1), what was expected and what was found.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from sgfd_ext.data.checks import DataError
from sgfd_ext.data.dataset import Dataset

log = logging.getLogger(__name__)

FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
COLUMNS = ("userID", "itemID", "x_label")
SPLITS = {0: "train", 1: "valid", 2: "test"}
MAX_DEFAULT_CLUSTERS = 100


class MMRecError(DataError):
    """A file of an MMRec folder is missing or does not hold what the layout promises."""


# --- interactions ----------------------------------------------------------------------------


def _to_ints(values: list[str], lines: np.ndarray, path: Path, column: str) -> np.ndarray:
    try:
        return np.array(values, dtype=np.int64)
    except ValueError:
        pass
    for k, text in enumerate(values):
        try:
            int(text)
        except ValueError:
            raise MMRecError(f"{path}: line {lines[k]}, column {column}: expected an integer, "
                             f"found {text!r}") from None
    return np.array([int(v) for v in values], dtype=np.int64)


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users, items, split labels and 1-based line numbers of an ``.inter`` file."""
    if not path.is_file():
        raise MMRecError(f"{path}: interaction file not found")
    with open(path, encoding="utf-8", newline="") as f:
        raw = [line.rstrip("\r\n") for line in f]
    # Names may carry a type suffix ("userID:token"), as in RecBole-style atomic files.
    header = [h.split(":")[0].strip() for h in raw[0].split("\t")] if raw else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        hint = " (the file must be tab-separated)" if len(header) == 1 and "," in header[0] else ""
        raise MMRecError(f"{path}: line 1 (header): expected columns {', '.join(COLUMNS)}, "
                         f"found {header or '<empty file>'}{hint}")
    where = [header.index(c) for c in COLUMNS]

    columns: tuple[list[str], list[str], list[str]] = ([], [], [])
    lines = []
    for number, line in enumerate(raw[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise MMRecError(f"{path}: line {number}: expected {len(header)} tab-separated "
                             f"fields, found {len(fields)} ({line[:80]!r})")
        for out, j in zip(columns, where):
            out.append(fields[j])
        lines.append(number)
    lines = np.array(lines, dtype=np.int64)
    if len(lines) == 0:
        raise MMRecError(f"{path}: expected interactions after the header, found none")

    users, items, split = (_to_ints(v, lines, path, c) for v, c in zip(columns, COLUMNS))
    for ids, column in ((users, "userID"), (items, "itemID")):
        if (ids < 0).any():
            k = int(np.argmax(ids < 0))
            raise MMRecError(f"{path}: line {lines[k]}, column {column}: expected an id >= 0, "
                             f"found {ids[k]}")
    bad = ~np.isin(split, list(SPLITS))
    if bad.any():
        k = int(np.argmax(bad))
        raise MMRecError(f"{path}: line {lines[k]}, column x_label: expected 0 (train), "
                         f"1 (validation) or 2 (test), found {split[k]}")
    return users, items, split, lines


# --- features and labels ---------------------------------------------------------------------


def read_features(folder: Path) -> dict[str, np.ndarray]:
    """The feature matrices present in ``folder``, as float32; at least one is required."""
    out = {}
    for modality, name in FEATURE_FILES.items():
        path = folder / name
        if not path.exists():
            continue
        try:
            f = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise MMRecError(f"{path}: cannot be read as a .npy array ({err})") from None
        if f.ndim != 2 or not np.issubdtype(f.dtype, np.number):
            raise MMRecError(f"{path}: expected a numeric matrix (items x dimensions), "
                             f"found shape {f.shape} of {f.dtype}")
        finite = np.isfinite(f).all(axis=1)
        if not finite.all():
            raise MMRecError(f"{path}: row {int(np.argmin(finite))} (an item id): expected "
                             "finite numbers, found NaN or infinity")
        out[modality] = np.ascontiguousarray(f, dtype=np.float32)
    if not out:
        raise MMRecError(f"{folder}: expected at least one of {', '.join(FEATURE_FILES.values())}"
                         ", found neither")
    rows = {m: f.shape[0] for m, f in out.items()}
    if len(set(rows.values())) > 1:
        raise MMRecError(f"{folder}: feature files disagree on the number of items: "
                         + ", ".join(f"{FEATURE_FILES[m]} has {r} rows" for m, r in rows.items()))
    return out


def read_labels(path: Path, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-item labels from ``.npy`` (one int per item) or CSV (``item,label`` rows).

    Returns the labels renumbered to ``0..C-1`` and the original value of each class.
    """
    if not path.is_file():
        raise MMRecError(f"{path}: label file not found")
    if path.suffix == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise MMRecError(f"{path}: cannot be read as a .npy array ({err})") from None
        raw = raw.reshape(-1) if raw.ndim == 2 and 1 in raw.shape else raw
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
            raise MMRecError(f"{path}: expected one integer label per item, found shape "
                             f"{raw.shape} of {raw.dtype}")
        if len(raw) != n_items:
            raise MMRecError(f"{path}: expected {n_items} labels (one per item), found {len(raw)}")
    else:
        raw = _read_label_csv(path, n_items)
    if (raw < 0).any():
        item = int(np.argmax(raw < 0))
        raise MMRecError(f"{path}: item {item}: expected a label >= 0, found {raw[item]}")
    values, labels = np.unique(raw, return_inverse=True)
    return labels.astype(np.int64), values


def _read_label_csv(path: Path, n_items: int) -> np.ndarray:
    labels = np.full(n_items, -1, dtype=np.int64)
    seen_at = np.zeros(n_items, dtype=np.int64)
    with open(path, encoding="utf-8", newline="") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            fields = [x.strip() for x in line.split(",")]
            try:
                item, label = (int(x) for x in fields)
            except ValueError:
                if number == 1:  # a header such as "item,label"
                    continue
                raise MMRecError(f"{path}: line {number}: expected 'item,label' as two "
                                 f"integers, found {line[:80]!r}") from None
            if not 0 <= item < n_items:
                raise MMRecError(f"{path}: line {number}: expected an item id in "
                                 f"0..{n_items - 1}, found {item}")
            if seen_at[item]:
                raise MMRecError(f"{path}: line {number}: item {item} already has a label "
                                 f"(line {seen_at[item]})")
            labels[item], seen_at[item] = label, number
    absent = np.flatnonzero(seen_at == 0)
    if len(absent):
        shown = ", ".join(str(i) for i in absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise MMRecError(f"{path}: expected a label for every item 0..{n_items - 1}, "
                         f"found none for {len(absent)} items ({shown})")
    return labels


# --- k-means labels --------------------------------------------------------------------------


def default_clusters(n_items: int) -> int:
    """``round(sqrt(items / 2))``, at least 2 and at most 100."""
    return int(min(MAX_DEFAULT_CLUSTERS, max(2, round(math.sqrt(n_items / 2)))))


def _sq_distances(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    d = x_sq - 2.0 * x @ centers.T + (centers * centers).sum(1)
    return d.clamp_(min=0.0)


def _kmeans_once(x: torch.Tensor, x_sq: torch.Tensor, k: int, g: torch.Generator,
                 max_iter: int) -> tuple[torch.Tensor, float, int]:
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=g))
    centers = x[first : first + 1].clone()
    closest = _sq_distances(x, x_sq, centers)[:, 0]
    tries = 2 + int(math.log(k))
    for _ in range(1, k):
        total = float(closest.sum())
        if total > 0:
            picks = torch.multinomial(closest / total, tries, replacement=True, generator=g)
        else:
            picks = torch.randint(n, (tries,), generator=g)
        # Greedy k-means++: of several candidates, keep the one that lowers the cost most.
        candidates = torch.minimum(closest[:, None], _sq_distances(x, x_sq, x[picks]))
        best = int(candidates.sum(0).argmin())
        centers = torch.cat([centers, x[picks[best] : picks[best] + 1]])
        closest = candidates[:, best]

    assign = torch.full((n,), -1, dtype=torch.long)
    steps = 0
    for steps in range(1, max_iter + 1):
        dist = _sq_distances(x, x_sq, centers)
        new = dist.argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
        sizes = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        centers = sums / sizes.clamp(min=1)[:, None].to(x.dtype)
        gap = dist.gather(1, assign[:, None])[:, 0]
        for c in torch.nonzero(sizes == 0).flatten().tolist():
            far = int(gap.argmax())
            centers[c], assign[far], gap[far] = x[far], c, -1.0
    inertia = float(_sq_distances(x, x_sq, centers).gather(1, assign[:, None]).sum())
    return assign, inertia, steps


def kmeans(x: torch.Tensor, k: int, seed: int, n_init: int = 3,
           max_iter: int = 100) -> tuple[torch.Tensor, int]:
    """Cluster the rows of ``x``: the best of ``n_init`` k-means++ starts refined by Lloyd steps.

    Deterministic given ``seed``. Returns the cluster of each row, numbered by first appearance,
    and the steps the chosen start took. An emptied cluster restarts at the farthest row.
    """
    g = torch.Generator().manual_seed(seed)
    x_sq = (x * x).sum(1, keepdim=True)
    best = None
    for _ in range(n_init):
        run = _kmeans_once(x, x_sq, k, g, max_iter)
        if best is None or run[1] < best[1]:
            best = run
    assign, _, steps = best

    n = x.shape[0]
    first = torch.full((k,), n, dtype=torch.long)
    first.scatter_reduce_(0, assign, torch.arange(n), reduce="amin")
    renumber = torch.empty(k, dtype=torch.long)
    renumber[torch.argsort(first, stable=True)] = torch.arange(k)
    return renumber[assign], steps


def cluster_labels(features: dict[str, np.ndarray], k: int, seed: int) -> tuple[np.ndarray, int]:
    """k-means labels over all modalities, each standardised per dimension, weighted equally."""
    blocks = []
    for f in features.values():
        t = torch.from_numpy(f).double()
        std = t.std(0, unbiased=False)
        t = (t - t.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
        blocks.append((t / math.sqrt(t.shape[1])).float())
    labels, steps = kmeans(torch.cat(blocks, dim=1), k, seed)
    return labels.numpy().astype(np.int64), steps


# --- the dataset -----------------------------------------------------------------------------


def _pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.stack([users, items], axis=1).astype(np.int64)


def load_mmrec(
    folder: str,
    name: str,
    seed: int = 0,
    labels_path: str | None = None,
    n_clusters: int | None = None,
) -> Dataset:
    """Read ``folder/<name>.inter`` and the feature files beside it into a :class:`Dataset`.

    Validation and test interactions of users without training interactions are dropped, as
    in MMRec. Labels come from ``labels_path`` when given, else from k-means with
    ``n_clusters`` clusters (default :func:`default_clusters`) seeded by ``seed``.
    """
    root = Path(folder)
    inter = root / f"{name}.inter"
    users, items, split, lines = read_inter(inter)
    features = read_features(root)

    n_rows = next(iter(features.values())).shape[0]
    if items.max() >= n_rows:
        k = int(np.argmax(items >= n_rows))
        raise MMRecError(f"{inter}: line {lines[k]}, column itemID: expected an id below "
                         f"{n_rows} (the rows of the feature files), found {items[k]}")
    n_items, n_users = n_rows, int(users.max()) + 1

    parts, info = {}, {"layout": "mmrec", "folder": str(root), "inter_file": inter.name,
                       "modalities": sorted(features)}
    for code, split_name in SPLITS.items():
        pairs = _pairs(users[split == code], items[split == code])
        unique = np.unique(pairs, axis=0) if len(pairs) else pairs
        if len(unique) < len(pairs):
            log.warning("%s: %d duplicate %s interactions dropped", inter,
                        len(pairs) - len(unique), split_name)
            info[f"duplicates_dropped_{split_name}"] = int(len(pairs) - len(unique))
        parts[split_name] = unique
    if len(parts["train"]) == 0:
        raise MMRecError(f"{inter}: expected training interactions (x_label 0), found none")
    if len(parts["valid"]) == 0:
        raise MMRecError(f"{inter}: expected validation interactions (x_label 1) for model "
                         "selection, found none")
    known = np.zeros(n_users, dtype=bool)
    known[parts["train"][:, 0]] = True
    for split_name in ("valid", "test"):
        keep = known[parts[split_name][:, 0]]
        if not keep.all():
            log.info("%s: %d %s interactions of users without training interactions dropped",
                     inter, int((~keep).sum()), split_name)
            info[f"cold_start_dropped_{split_name}"] = int((~keep).sum())
        parts[split_name] = parts[split_name][keep]

    if labels_path is not None:
        labels, values = read_labels(Path(labels_path), n_items)
        info["labels"] = {"source": str(labels_path), "classes": len(values)}
        if not np.array_equal(values, np.arange(len(values))):
            info["labels"]["original_values"] = values.tolist()
    else:
        k = default_clusters(n_items) if n_clusters is None else int(n_clusters)
        if not 2 <= k <= n_items:
            raise MMRecError(f"number of clusters must be in 2..{n_items}, got {k}")
        labels, steps = cluster_labels(features, k, seed)
        sizes = np.bincount(labels).tolist()
        info["labels"] = {"source": "kmeans", "k": k,
                          "k_rule": "given" if n_clusters is not None
                          else f"round(sqrt(items / 2)) capped at {MAX_DEFAULT_CLUSTERS}",
                          "seed": seed, "iterations": steps, "cluster_sizes": sizes}
        log.info("semantic labels of %s: k-means with k=%d over %s (%d steps), sizes %d..%d",
                 name, k, "+".join(sorted(features)), steps, min(sizes), max(sizes))

    return Dataset(name=name, n_users=n_users, n_items=n_items, train=parts["train"],
                   valid=parts["valid"], test=parts["test"], features=features, labels=labels,
                   n_classes=int(labels.max()) + 1, feature_source="real", info=info)
