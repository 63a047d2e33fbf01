"""The Amazon reader on the real Office and Toys splits, with feature files written at test time."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from shared_data import shared_data

from sgfd_ext.data import DataError, load_dataset
from sgfd_ext.data.amazon import FEATURE_FILES, LABEL_FILE, load_amazon, read_interactions
from sgfd_ext.data.generated import generate_features
from sgfd_ext.data.splits import carve_validation

# Counts from the data README: users, items, train rows, test rows.
COUNTS = {"office": (4874, 2406, 37027, 15930), "toys": (18748, 11673, 113014, 48639)}


def _dataset_folder(root, name, dims):
    """Link the real CSV files into ``root/name`` and write stand-in .npy files next to them."""
    source = shared_data("amazon") / name
    folder = root / name
    folder.mkdir(parents=True)
    for split in ("train.csv", "test.csv"):
        (folder / split).symlink_to(source / split)
    train, _ = read_interactions(folder / "train.csv")
    test, _ = read_interactions(folder / "test.csv")
    n_users = int(max(train[:, 0].max(), test[:, 0].max())) + 1
    n_items = int(max(train[:, 1].max(), test[:, 1].max())) + 1
    features, labels, _ = generate_features(name, train, n_users, n_items, dims=dims)
    for modality, file in FEATURE_FILES.items():
        np.save(folder / file, features[modality])
    np.save(folder / LABEL_FILE, labels)
    return folder, features, labels


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    root = tmp_path_factory.mktemp("amazon")
    folder, features, labels = _dataset_folder(root, "office", {"image": 4096, "text": 768})
    return root, folder, features, labels


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    root = tmp_path_factory.mktemp("amazon")
    folder, features, labels = _dataset_folder(root, "toys", {"image": 64, "text": 32})
    return root, folder, features, labels


def _assert_counts(data, name):
    users, items, train, test = COUNTS[name]
    assert (data.n_users, data.n_items) == (users, items)
    assert len(data.train) + len(data.valid) == train
    assert len(data.test) == test
    for split in (data.train, data.valid, data.test):
        assert split.dtype == np.int64 and split.shape[1] == 2
        assert split[:, 0].max() < users and split[:, 1].max() < items


def test_office_counts_features_and_labels(office):
    root, _, features, labels = office
    data = load_amazon("office", root, seed=0)
    _assert_counts(data, "office")
    assert data.feature_source == "real"
    assert data.features["image"].shape == (2406, 4096)
    assert data.features["text"].shape == (2406, 768)
    np.testing.assert_array_equal(data.features["image"], features["image"])
    np.testing.assert_array_equal(data.labels, labels)
    assert data.n_classes == labels.max() + 1


def test_office_keeps_its_test_only_item(office, caplog):
    root = office[0]
    with caplog.at_level(logging.WARNING):
        data = load_amazon("office", root)
    assert "1 items occur only in the test split (ids 2405)" in caplog.text
    assert "test.csv" in caplog.text
    assert data.info["test_only_items"] == [2405]
    assert data.n_items == 2406
    assert 2405 in data.test[:, 1]
    assert 2405 not in data.train[:, 1] and 2405 not in data.valid[:, 1]


def test_toys_with_crlf_line_ends(toys):
    root, folder, _, _ = toys
    assert b"\r\n" in (folder / "train.csv").read_bytes()[:200]
    data = load_amazon("toys", root, seed=3)
    _assert_counts(data, "toys")
    assert data.features["image"].shape == (11673, 64)
    assert len(data.info["test_only_items"]) == 6


def test_validation_is_carved_from_train_per_user(office):
    root, folder, _, _ = office
    original, _ = read_interactions(folder / "train.csv")
    data = load_amazon("office", root, seed=0)

    as_set = lambda pairs: set(map(tuple, pairs.tolist()))
    assert as_set(data.train) | as_set(data.valid) == as_set(original)
    assert not as_set(data.train) & as_set(data.valid)

    n = np.bincount(original[:, 0], minlength=data.n_users)
    n_valid = np.bincount(data.valid[:, 0], minlength=data.n_users)
    expected = np.where(n >= 3, np.maximum(1, np.floor(0.1 * n + 0.5 + 1e-9)), 0)
    np.testing.assert_array_equal(n_valid, expected)
    assert (np.bincount(data.train[:, 0], minlength=data.n_users) >= 1).all()


def test_validation_depends_only_on_seed(office):
    folder = office[1]
    train, _ = read_interactions(folder / "train.csv")
    a = carve_validation(train, seed=7)
    b = carve_validation(train[::-1].copy(), seed=7)
    c = carve_validation(train, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[1]) == len(c[1]) and not np.array_equal(a[1], c[1])


def test_missing_feature_files_are_all_named(tmp_path):
    folder = tmp_path / "office"
    folder.mkdir()
    for split in ("train.csv", "test.csv"):
        (folder / split).symlink_to(shared_data("amazon") / "office" / split)
    with pytest.raises(DataError) as err:
        load_amazon("office", tmp_path)
    message = str(err.value)
    for file in (*FEATURE_FILES.values(), LABEL_FILE):
        assert str(folder / file) in message
    assert 'README section "Datasets"' in message
    assert "--data-root" in message and "SGFD_DATA_ROOT" in message
    assert "generated_features=True" in message

    np.save(folder / LABEL_FILE, np.zeros(2406, dtype=np.int64))
    with pytest.raises(DataError) as err:
        load_amazon("office", tmp_path)
    assert str(folder / LABEL_FILE) not in str(err.value)
    assert str(folder / FEATURE_FILES["image"]) in str(err.value)


def test_generated_features_are_deterministic_and_learnable(tmp_path):
    folder = tmp_path / "amazon" / "office"
    folder.mkdir(parents=True)
    for split in ("train.csv", "test.csv"):
        (folder / split).symlink_to(shared_data("amazon") / "office" / split)
    data = load_dataset("office", tmp_path, generated_features=True)
    again = load_dataset("office", tmp_path, generated_features=True)

    assert data.feature_source == "generated"
    assert data.features["image"].shape == (2406, 4096)
    assert data.features["text"].shape == (2406, 768)
    assert data.features["image"].min() >= 0.0
    assert data.n_classes == 54 and 0 <= data.labels.min() and data.labels.max() < 54
    np.testing.assert_array_equal(data.features["text"], again.features["text"])
    np.testing.assert_array_equal(data.labels, again.labels)

    # Class means fitted on half of the items classify the other half far above chance (1/54).
    order = np.random.default_rng(0).permutation(data.n_items)
    fit, held = order[::2], order[1::2]
    onehot = np.eye(54, dtype=np.float32)[data.labels[fit]]
    for features in data.features.values():
        means = (onehot.T @ features[fit]) / np.maximum(onehot.sum(0), 1)[:, None]
        scores = 2 * features[held] @ means.T - (means**2).sum(1)
        accuracy = (scores.argmax(1) == data.labels[held]).mean()
        assert accuracy > 0.5


def test_root_from_environment_and_amazon_subfolder(office, monkeypatch, tmp_path):
    root, folder = office[0], office[1]
    nested = tmp_path / "amazon"
    nested.mkdir()
    (nested / "office").symlink_to(folder)
    monkeypatch.setenv("SGFD_DATA_ROOT", str(tmp_path))
    data = load_dataset("Office")
    assert data.info["folder"] == str(nested / "office")

    monkeypatch.delenv("SGFD_DATA_ROOT")
    with pytest.raises(DataError, match="SGFD_DATA_ROOT"):
        load_dataset("office")
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("toys", root)


def test_unknown_name_lists_known_ones():
    with pytest.raises(DataError) as err:
        load_dataset("netflix")
    for name in ("movielens-100k", "ml-100k", "office", "clothing", "toys", "menclothing"):
        assert name in str(err.value)


def test_feature_rows_must_match_items(tmp_path):
    folder = tmp_path / "office"
    shutil.copytree(shared_data("amazon") / "office", folder)
    np.save(folder / FEATURE_FILES["image"], np.zeros((2405, 8), dtype=np.float32))
    np.save(folder / FEATURE_FILES["text"], np.zeros((2406, 8), dtype=np.float32))
    np.save(folder / LABEL_FILE, np.zeros(2406, dtype=np.int64))
    with pytest.raises(DataError) as err:
        load_amazon("office", tmp_path)
    message = str(err.value)
    assert str(folder / FEATURE_FILES["image"]) in message
    assert "expected 2406 rows" in message and "found 2405" in message
