"""MovieLens 100K built from the real raw files: counts, split, chronology, labels, features, cache."""

from __future__ import annotations

import collections
import io
import logging
import shutil
import zipfile

import numpy as np
import pytest
from shared_data import shared_data

from sgfd_ext.baselines import item_knn
from sgfd_ext.data import DataError, load_dataset
from sgfd_ext.data import fetch as fetch_module
from sgfd_ext.data.fetch import locate_movielens
from sgfd_ext.data.knowledge import knowledge_features
from sgfd_ext.data.splits import split_counts

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _rows(path):
    return [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def raw():
    """The raw files parsed independently of the package."""
    folder = shared_data("movielens-100k")
    inter = _rows(folder / "ml-100k.inter")
    items = {r[0]: r for r in _rows(folder / "ml-100k.item")}
    return folder, inter, items


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SGFD_CACHE_DIR", str(path))
        patch.delenv("SGFD_DATA_ROOT", raising=False)
        yield path


@pytest.fixture(scope="module")
def ml(raw, cache):
    return load_dataset("movielens-100k", raw[0].parent)


def _times(raw, data):
    """Timestamp of every (user, item) pair of the dataset, by the raw ids kept in info."""
    stamp = {(r[0], r[1]): float(r[3]) for r in raw[1]}
    users, items = data.info["user_ids"], data.info["item_ids"]
    return lambda pairs: np.array([stamp[(users[u], items[i])] for u, i in pairs])


def test_counts_match_the_positive_ratings(ml, raw):
    positives = {(r[0], r[1]) for r in raw[1] if float(r[2]) >= 4}
    assert (ml.n_users, ml.n_items) == (942, 1447)
    assert len({u for u, _ in positives}) == 942 and len({i for _, i in positives}) == 1447
    users, items = ml.info["user_ids"], ml.info["item_ids"]
    rebuilt = {(users[u], items[i]) for split in (ml.train, ml.valid, ml.test) for u, i in split}
    assert rebuilt == positives
    assert len(ml.train) + len(ml.valid) + len(ml.test) == len(positives) == 55375
    assert ml.feature_source == "real"


def test_split_proportions_per_user(ml):
    n = np.bincount(np.concatenate([ml.train, ml.valid, ml.test])[:, 0], minlength=ml.n_users)
    got = [np.bincount(s[:, 0], minlength=ml.n_users) for s in (ml.train, ml.valid, ml.test)]
    expected = split_counts(n, 0.1, 0.2)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    large = n >= 10
    np.testing.assert_array_equal(got[2][large], n[large] // 5)
    np.testing.assert_array_equal(got[1][large], n[large] // 10)
    total = n.sum()
    assert 0.19 < len(ml.test) / total < 0.21 and 0.09 < len(ml.valid) / total < 0.11


def test_split_counts_for_small_users():
    n = np.array([1, 2, 3, 4, 5, 9, 10, 15, 20])
    train, valid, test = split_counts(n, 0.1, 0.2)
    assert list(zip(train, valid, test)) == [
        (1, 0, 0),
        (1, 0, 1),
        (1, 1, 1),
        (2, 1, 1),
        (3, 1, 1),
        (7, 1, 1),
        (7, 1, 2),
        (11, 1, 3),
        (14, 2, 4),
    ]


def test_split_is_chronological(ml, raw):
    times = _times(raw, ml)
    parts = [(s[:, 0], times(s)) for s in (ml.train, ml.valid, ml.test)]
    for earlier, later in ((0, 1), (1, 2), (0, 2)):
        latest = np.full(ml.n_users, -np.inf)
        np.maximum.at(latest, parts[earlier][0], parts[earlier][1])
        earliest = np.full(ml.n_users, np.inf)
        np.minimum.at(earliest, parts[later][0], parts[later][1])
        assert (latest <= earliest).all()


def test_equal_timestamps_keep_the_file_order(ml, raw):
    """Each user's test items are the last ones of a stable sort by time over the file rows."""
    users, items = ml.info["user_ids"], ml.info["item_ids"]
    rows_by_user = {}
    for r in raw[1]:
        if float(r[2]) >= 4:
            rows_by_user.setdefault(r[0], []).append((float(r[3]), r[1]))
    expected = set()
    n_test = np.bincount(ml.test[:, 0], minlength=ml.n_users)
    for u, raw_user in enumerate(users):
        ordered = [item for _, item in sorted(rows_by_user[raw_user], key=lambda x: x[0])]
        expected |= {(raw_user, item) for item in ordered[len(ordered) - n_test[u]:]}
    got = {(users[u], items[i]) for u, i in ml.test}
    assert got == expected
    ties = sum(len(v) - len({t for t, _ in v}) for v in rows_by_user.values())
    assert ties > 1000  # the rule matters: many ratings share a second with another


def test_itemknn_reproduces_the_recbole_reference(ml):
    """Cosine ItemKNN (100 neighbours) on this split against RecBole 1.2.1's published run on
    the same protocol: test Recall@20 0.2028, NDCG@20 0.1577."""
    train = ml.csr("train")
    result = item_knn(train, ml.n_items, train.merge(ml.csr("valid")), ml.csr("test"), (20,))
    assert abs(result["recall@20"] - 0.2028) < 0.001
    assert abs(result["ndcg@20"] - 0.1577) < 0.001


def test_labels_are_the_rarest_genre(ml, raw):
    items = raw[2]
    genres = [items[i][3].split() for i in ml.info["item_ids"]]
    frequency = collections.Counter(g for gs in genres for g in set(gs))
    classes = ml.info["classes"]
    assert ml.n_classes == len(classes) == 19 and classes == sorted(classes)
    assert ml.labels.shape == (ml.n_items,) and ml.labels.min() >= 0
    assert ml.labels.max() < ml.n_classes
    for gs, label in zip(genres, ml.labels):
        chosen = classes[label]
        assert chosen in gs
        assert (frequency[chosen], chosen) == min((frequency[g], g) for g in gs)
    assert sum(ml.info["label_counts"].values()) == ml.n_items
    assert ml.info["label_counts"]["Drama"] < frequency["Drama"]


def test_text_and_knowledge_features(ml, raw):
    text, kg = ml.features["text"], ml.features["kg"]
    assert text.shape == (1447, 384) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)
    assert kg.shape == (1447, 128) and kg.dtype == np.float32 and np.isfinite(kg).all()

    linked = {r[0] for r in _rows(raw[0] / "ml-100k.link")}
    no_link = [k for k, i in enumerate(ml.info["item_ids"]) if i not in linked]
    assert no_link and not kg[no_link].any()
    assert int((np.abs(kg).sum(1) > 0).sum()) == ml.info["kg"]["items_with_facts"]

    # A sequel's title embeds closer to its first part than an unrelated film's.
    index = {raw[2][i][1]: k for k, i in enumerate(ml.info["item_ids"])}
    a, b, c = index["Star Wars"], index["Return of the Jedi"], index["Fargo"]
    assert text[a] @ text[b] > text[a] @ text[c]


@pytest.mark.parametrize("more_items_than_pairs", [True, False])
def test_knowledge_reduction_on_a_small_graph(more_items_than_pairs):
    if more_items_than_pairs:
        entities = ["e0", "e1", "e2", None]
        triples = [
            ("e0", "r", "t1"),
            ("e1", "r", "t1"),
            ("e2", "r", "t1"),
            ("e0", "s", "t2"),
            ("e1", "s", "t3"),
            ("e2", "s", "t3"),
            ("x", "r", "t1"),
        ]
        facts = np.array([[1, 0], [1, 1], [1, 1], [0, 0]], dtype=float)
    else:
        entities = ["e0", "e1", "e2"]
        triples = [(e, r, "t") for e in ("e0", "e1") for r in ("a", "b", "c")] + [("e0", "d", "u")]
        facts = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=float)
    features, summary = knowledge_features(entities, triples, dims=8)

    norms = np.linalg.norm(facts, axis=1, keepdims=True)
    unit = np.divide(facts, norms, out=np.zeros_like(facts), where=norms > 0)
    np.testing.assert_allclose(features @ features.T, unit @ unit.T, atol=1e-6)
    assert features.shape[1] == np.linalg.matrix_rank(facts)
    assert not features[norms[:, 0] == 0].any()
    assert summary["pairs"] == facts.shape[1]
    assert summary["items_with_facts"] == int((norms > 0).sum())


def test_second_load_hits_the_cache(ml, raw, cache):
    assert ml.info["cache_hit"] is False
    again = load_dataset("ml-100k", raw[0].parent)
    assert again.info["cache_hit"] is True
    assert again.info["cache_file"].startswith(str(cache))
    np.testing.assert_array_equal(again.test, ml.test)
    np.testing.assert_array_equal(again.features["kg"], ml.features["kg"])
    assert again.info["item_ids"] == ml.info["item_ids"]


def test_changed_input_is_rebuilt(ml, raw, tmp_path):
    folder = tmp_path / "ml-100k"
    shutil.copytree(raw[0], folder)
    lines = (folder / "ml-100k.inter").read_text().splitlines(keepends=True)
    # Turn one positive rating negative; its user and item keep other positives.
    users = collections.Counter(r[0] for r in raw[1] if float(r[2]) >= 4)
    items = collections.Counter(r[1] for r in raw[1] if float(r[2]) >= 4)
    k = next(
        k
        for k, r in enumerate(raw[1], start=1)
        if float(r[2]) >= 4 and users[r[0]] > 10 and items[r[1]] > 1
    )
    fields = lines[k].split("\t")
    lines[k] = "\t".join([fields[0], fields[1], "1", fields[3]])
    (folder / "ml-100k.inter").write_text("".join(lines))

    rebuilt = load_dataset("ml-100k", tmp_path)
    assert rebuilt.info["cache_hit"] is False
    assert rebuilt.info["cache_file"] != ml.info["cache_file"]
    total = len(rebuilt.train) + len(rebuilt.valid) + len(rebuilt.test)
    assert total == 55374 and rebuilt.n_items == ml.n_items
    assert load_dataset("ml-100k", tmp_path).info["cache_hit"] is True


def test_grouplens_layout_has_no_knowledge_modality(ml, raw, tmp_path, caplog):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    inter = "".join("\t".join(r) + "\n" for r in raw[1])
    (folder / "u.data").write_text(inter, encoding="latin-1")
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n")
    rows = []
    for item, title, year, classes in raw[2].values():
        text = f"{title} ({year})" if year.isdigit() else title
        flags = "|".join("1" if g in classes.split() else "0" for g in GENRES)
        rows.append(f"{item}|{text}|01-Jan-{year}||http://example.org/|{flags}\n")
    (folder / "u.item").write_text("".join(rows), encoding="latin-1")

    with caplog.at_level(logging.INFO):
        data = load_dataset("movielens-100k", tmp_path)
    assert "kg modality is absent" in caplog.text
    assert list(data.features) == ["text"]
    assert data.info["layout"] == "grouplens"
    np.testing.assert_array_equal(data.test, ml.test)
    np.testing.assert_array_equal(data.labels, ml.labels)
    np.testing.assert_allclose(data.features["text"], ml.features["text"], atol=1e-6)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def test_download_falls_back_in_order(raw, tmp_path, monkeypatch):
    monkeypatch.delenv("SGFD_DATA_ROOT", raising=False)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("u.data", "u.item", "u.genre"):
            zf.writestr(f"ml-100k/{name}", "x")
    monkeypatch.setattr(
        fetch_module.urllib.request, "urlopen", lambda *a, **k: _Response(archive.getvalue())
    )
    found = locate_movielens(None, tmp_path / "a")
    assert found.layout == "grouplens" and "GroupLens" in found.origin
    assert (tmp_path / "a" / "raw" / "ml-100k-grouplens" / "u.item").read_text() == "x"
    assert "cache" in locate_movielens(None, tmp_path / "a").origin

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(fetch_module, "_download_recbole", lambda target: unreachable())
    monkeypatch.setenv("SGFD_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        locate_movielens(None, tmp_path / "b")
    message = str(err.value)
    assert "GroupLens" in message and "recbole==1.2.1" in message and "no route" in message
    assert "empty" in message and "SGFD_DATA_ROOT" in message
