"""MovieLens 100K built from its raw files: the default dataset, with real text and knowledge.

Build rules (version :data:`RULES_VERSION`):

- Ratings >= 4 are positive interactions; other ratings are dropped. Users and items with at
  least one positive are kept and renumbered 0.. in the order of their raw ids; the raw ids are
  kept in ``info["user_ids"]`` and ``info["item_ids"]``.
- Split per user, oldest first by timestamp, equal timestamps in the order of the rating file
  (RecBole's stable sort does the same, so the split follows RecBole's): the latest
  ``floor(0.2 n)`` go to test, the ``floor(0.1 n)`` before them to validation, the rest to
  train; a user whose share rounds down to zero still gives one (test first) while at least
  two stay in train, as in RecBole's ratio split. So every test interaction of a user is no
  earlier than their others.
- Label: one genre per item, the item's genre that is rarest over the kept catalogue (ties by
  name), so small genres are not swamped by Drama and Comedy; classes are ordered by name.
- ``text``: ``"<title> (<year>)"`` encoded by all-MiniLM-L6-v2 (384-d, unit length).
- ``kg`` (RecBole layout only): the item's (relation, tail) pairs, reduced by truncated SVD as
  in :mod:`sgfd_ext.data.knowledge` (128-d by default). The GroupLens layout has no knowledge
  graph, so the modality is then absent.

The result is cached as ``.npz`` under the cache folder, keyed by the raw files' contents, these
rules and the encoder, and rebuilt whenever one of them changes.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sgfd_ext.data.cache import cache_dir, digest, load_saved_dataset, save_dataset
from sgfd_ext.data.checks import DataError, drop_duplicates, parse_floats
from sgfd_ext.data.dataset import Dataset
from sgfd_ext.data.fetch import RawFiles, locate_movielens
from sgfd_ext.data.knowledge import knowledge_features
from sgfd_ext.data.splits import chronological_split
from sgfd_ext.data.tables import read_table
from sgfd_ext.data.text import encode_texts, encoder_id

log = logging.getLogger(__name__)

NAME = "movielens-100k"
RULES_VERSION = 2
POSITIVE_RATING = 4.0
VALID_RATIO, TEST_RATIO = 0.1, 0.2
KG_DIMS = 128
GROUPLENS_ITEM_COLUMNS = ["item_id", "movie_title", "release_date", "video_release_date", "url"]


@dataclass
class _Raw:
    """The parsed raw files in one shape for both layouts; texts, genres, links by raw item id."""

    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    ratings: np.ndarray = field(default_factory=lambda: np.empty(0))
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    lines: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    inter_path: Path = field(default_factory=Path)
    texts: dict[str, str] = field(default_factory=dict)
    genres: dict[str, list[str]] = field(default_factory=dict)
    entities: dict[str, str] | None = None
    triples: list[tuple[str, str, str]] = field(default_factory=list)


def _read_ratings(raw: _Raw, path: Path, **table_args) -> None:
    table = read_table(path, ("user_id", "item_id", "rating", "timestamp"), **table_args)
    raw.inter_path, raw.lines = path, table.lines
    raw.users, raw.items = table.columns["user_id"], table.columns["item_id"]
    raw.ratings = parse_floats(table.columns["rating"], table.lines, path, "rating")
    raw.times = parse_floats(table.columns["timestamp"], table.lines, path, "timestamp")


def _read_recbole(folder: Path) -> _Raw:
    raw = _Raw()
    tsv = {"delimiter": "\t", "typed_header": True}
    _read_ratings(raw, folder / "ml-100k.inter", **tsv)

    items = read_table(
        folder / "ml-100k.item", ("item_id", "movie_title", "release_year", "class"), **tsv
    )
    columns = [items.columns[c] for c in ("item_id", "movie_title", "release_year", "class")]
    for item, title, year, genres in zip(*columns):
        year = year.strip()
        raw.texts[item] = f"{title.strip()} ({year})" if year.isdigit() else title.strip()
        raw.genres[item] = genres.split()

    kg, link = folder / "ml-100k.kg", folder / "ml-100k.link"
    if kg.is_file() and link.is_file():
        links = read_table(link, ("item_id", "entity_id"), **tsv)
        raw.entities = dict(zip(links.columns["item_id"], links.columns["entity_id"]))
        facts = read_table(kg, ("head_id", "relation_id", "tail_id"), **tsv)
        raw.triples = list(zip(*(facts.columns[c] for c in ("head_id", "relation_id", "tail_id"))))
    else:
        log.info("%s: no ml-100k.kg/ml-100k.link; the kg modality is absent", folder)
    return raw


def _read_grouplens(folder: Path) -> _Raw:
    raw = _Raw()
    _read_ratings(
        raw, folder / "u.data", delimiter="\t", names=["user_id", "item_id", "rating", "timestamp"]
    )

    genre_table = read_table(
        folder / "u.genre",
        ("genre", "index"),
        delimiter="|",
        names=["genre", "index"],
        encoding="latin-1",
    )
    names = genre_table.columns["genre"]
    columns = GROUPLENS_ITEM_COLUMNS + [f"genre_{k}" for k in range(len(names))]
    items = read_table(folder / "u.item", columns, delimiter="|", names=columns, encoding="latin-1")
    flags = [items.columns[f"genre_{k}"] for k in range(len(names))]
    for row, (item, title) in enumerate(
        zip(items.columns["item_id"], items.columns["movie_title"])
    ):
        raw.texts[item] = title.strip()
        raw.genres[item] = [g for g, f in zip(names, flags) if f[row].strip() == "1"]
    log.info("%s: GroupLens layout has no knowledge graph; the kg modality is absent", folder)
    return raw


def _id_order(raw_ids: set[str]) -> list[str]:
    """Raw ids sorted numerically when they are all integers, else as text."""
    numeric = all(r.isdigit() for r in raw_ids)
    return sorted(raw_ids, key=int if numeric else str)


def genre_labels(genres: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """One class per item: its genre that is rarest over the catalogue, ties broken by name."""
    lists = [g if g else ["unknown"] for g in genres]
    frequency = collections.Counter(g for item in lists for g in set(item))
    chosen = [min(set(item), key=lambda g: (frequency[g], g)) for item in lists]
    classes = sorted(set(chosen))
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[c] for c in chosen], dtype=np.int64), classes


def build_movielens(raw_files: RawFiles, cache: Path | None, kg_dims: int = KG_DIMS) -> Dataset:
    """Build the dataset from raw files by the rules in this module's docstring."""
    reader = _read_recbole if raw_files.layout == "recbole" else _read_grouplens
    raw = reader(raw_files.folder)

    rows = np.flatnonzero(raw.ratings >= POSITIVE_RATING)
    if rows.size == 0:
        raise DataError(
            f"{raw.inter_path}: expected at least one rating >= {POSITIVE_RATING:g}, found "
            f"{'none' if raw.ratings.size else 'no ratings at all'}"
        )
    users = [raw.users[k] for k in rows]
    items = [raw.items[k] for k in rows]
    for k, item in zip(rows, items):
        if item not in raw.texts:
            raise DataError(
                f"{raw.inter_path}: line {raw.lines[k]}: expected item {item!r} to have a row in "
                "the item file, found none"
            )
    user_ids, item_ids = _id_order(set(users)), _id_order(set(items))
    user_index = {r: k for k, r in enumerate(user_ids)}
    item_index = {r: k for k, r in enumerate(item_ids)}
    pairs = np.array([[user_index[u], item_index[i]] for u, i in zip(users, items)], dtype=np.int64)
    pairs, lines = drop_duplicates(pairs.reshape(-1, 2), raw.lines[rows], raw.inter_path)
    times = raw.times[rows][np.searchsorted(raw.lines[rows], lines)]  # lines are increasing

    train, valid, test = chronological_split(
        pairs[:, 0], pairs[:, 1], times, VALID_RATIO, TEST_RATIO, ties=lines
    )
    labels, classes = genre_labels([raw.genres[i] for i in item_ids])
    counts = np.bincount(labels, minlength=len(classes))
    log.info(
        "%s labels (rarest genre): %s", NAME, ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
    )

    features = {"text": encode_texts([raw.texts[i] for i in item_ids], cache)}
    kg_summary = None
    if raw.entities is not None:
        entities = [raw.entities.get(i) for i in item_ids]
        features["kg"], kg_summary = knowledge_features(entities, raw.triples, kg_dims)

    info = {
        "source": raw_files.origin,
        "layout": raw_files.layout,
        "raw_folder": str(raw_files.folder),
        "rules_version": RULES_VERSION,
        "positive_rating": POSITIVE_RATING,
        "split_rule": "per user by time: latest floor(0.2n) test, floor(0.1n) before valid",
        "label_rule": "rarest genre of the item over the catalogue, ties by name",
        "classes": classes,
        "label_counts": dict(zip(classes, counts.tolist())),
        "text_encoder": encoder_id(),
        "kg": kg_summary,
        "user_ids": user_ids,
        "item_ids": item_ids,
    }
    return Dataset(
        name=NAME,
        n_users=len(user_ids),
        n_items=len(item_ids),
        train=train,
        valid=valid,
        test=test,
        features=features,
        labels=labels,
        n_classes=len(classes),
        feature_source="real",
        info=info,
    )


def load_movielens(
    data_root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    kg_dims: int = KG_DIMS,
) -> Dataset:
    """MovieLens 100K from the cache, or built from the raw files (local or downloaded) and cached."""
    folder = cache_dir(cache)
    raw_files = locate_movielens(data_root, folder)
    key = digest(raw_files.files(), RULES_VERSION, raw_files.layout, kg_dims, encoder_id())
    path = folder / f"{NAME}-{key[:20]}.npz"

    hit = path.is_file()
    if hit:
        dataset = load_saved_dataset(path)
        log.info("%s: loaded from cache %s", NAME, path)
    else:
        log.info("%s: building from %s (%s)", NAME, raw_files.folder, raw_files.origin)
        dataset = build_movielens(raw_files, folder, kg_dims)
        save_dataset(path, dataset)
        log.info("%s: cached as %s", NAME, path)
    dataset.info.update(
        source=raw_files.origin,
        raw_folder=str(raw_files.folder),
        cache_file=str(path),
        cache_hit=hit,
    )
    log.info(
        "%s: %d users, %d items, %d/%d/%d train/valid/test, %d classes, modalities %s",
        NAME,
        dataset.n_users,
        dataset.n_items,
        len(dataset.train),
        len(dataset.valid),
        len(dataset.test),
        dataset.n_classes,
        ", ".join(dataset.features),
    )
    return dataset
