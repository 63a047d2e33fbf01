"""Every bad-input case of the data checks, on small hand-made files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sgfd_ext.data import DataError
from sgfd_ext.data.amazon import FEATURE_FILES, LABEL_FILE, load_amazon, read_interactions
from sgfd_ext.data.checks import (
    check_features,
    check_id_range,
    check_labels,
    count_ids,
    drop_duplicates,
    report_test_only_items,
)
from sgfd_ext.data.movielens import load_movielens

HEADER = "itemID,userID,reviewerID,asin\n"


def _csv(path, rows, header=HEADER, end="\n"):
    path.write_text(header + "".join(f"{i},{u},R{u},A{i}{end}" for i, u in rows))
    return path


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        call(*args, **kwargs)
    return str(err.value)


def test_missing_column_names_expected_and_found_header(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("itemID,user,reviewerID,asin\n0,0,a,b\n")
    message = _message(read_interactions, path)
    assert str(path) in message and "line 1" in message
    assert "expected columns itemID, userID" in message
    assert "found itemID, user, reviewerID, asin" in message and "missing: userID" in message


def test_non_integer_id_names_row_and_value(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "0,0,a,b\n1.5,0,a,b\n")
    message = _message(read_interactions, path)
    assert str(path) in message and "line 3" in message and "itemID" in message
    assert "expected an integer id" in message and "found '1.5'" in message


def test_negative_id_names_row_and_value(tmp_path):
    path = _csv(tmp_path / "test.csv", [(0, 0), (1, 0), (2, -4)])
    message = _message(read_interactions, path)
    assert str(path) in message and "line 4" in message and "userID" in message
    assert "expected an id >= 0" in message and "found -4" in message


def test_id_above_range(tmp_path):
    path = tmp_path / "x.csv"
    message = _message(
        check_id_range, np.array([0, 7, 2]), np.array([2, 3, 4]), path, "itemID", upper=5
    )
    assert str(path) in message and "line 3" in message
    assert "expected an id in 0..4" in message and "found 7" in message


def test_wrong_number_of_fields(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "0,0,a,b\r\n0,1,a\r\n")
    message = _message(read_interactions, path)
    assert str(path) in message and "line 3" in message
    assert "expected 4 fields" in message and "found 3" in message


def test_feature_rows_must_match_item_count(tmp_path):
    path = tmp_path / "FeatureImage_normal.npy"
    message = _message(check_features, np.zeros((4, 3)), path, 5)
    assert str(path) in message and "expected 5 rows" in message and "found 4" in message
    message = _message(check_features, np.zeros(5), path, 5)
    assert "expected a 2-D matrix" in message and "found shape (5,)" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_feature_names_first_bad_row(tmp_path, bad):
    path = tmp_path / "FeatureText_normal.npy"
    matrix = np.ones((6, 3), dtype=np.float32)
    matrix[2, 1] = bad
    matrix[4, 0] = bad
    message = _message(check_features, matrix, path, 6)
    assert str(path) in message and "row 2 (item 2" in message and "column 1" in message
    assert "expected a finite number" in message and f"found {bad}" in message


def test_labels_must_be_integers(tmp_path):
    path = tmp_path / "MetaData_normal.npy"
    message = _message(check_labels, np.array([0.0, 2.0, 1.5, 3.0]), path, 4)
    assert str(path) in message and "row 2 (item 2" in message
    assert "expected an integer class" in message and "found 1.5" in message
    message = _message(check_labels, np.array([0.0, np.nan]), path, 2)
    assert "row 1" in message and "found nan" in message
    np.testing.assert_array_equal(check_labels(np.array([[1.0], [0.0]]), path, 2), [1, 0])


def test_labels_must_be_in_range(tmp_path):
    path = tmp_path / "MetaData_normal.npy"
    message = _message(check_labels, np.array([0, 1, -1]), path, 3)
    assert str(path) in message and "row 2" in message
    assert "expected a class >= 0" in message and "found -1" in message
    message = _message(check_labels, np.array([0, 7, 1]), path, 3, n_classes=3)
    assert "row 1" in message and "expected a class in 0..2" in message and "found 7" in message
    message = _message(check_labels, np.array([0, 1]), path, 3)
    assert "expected 3 labels" in message and "found shape (2,)" in message


def test_duplicates_are_reported_and_dropped(tmp_path, caplog):
    path = _csv(tmp_path / "train.csv", [(0, 0), (1, 0), (0, 0), (2, 1), (1, 0), (0, 0)])
    pairs, lines = read_interactions(path)
    with caplog.at_level(logging.WARNING):
        kept, kept_lines = drop_duplicates(pairs, lines, path)
    assert str(path) in caplog.text and "3 duplicate (user, item) rows dropped" in caplog.text
    assert "first at lines 4, 6, 7" in caplog.text
    np.testing.assert_array_equal(kept, [[0, 0], [0, 1], [1, 2]])
    np.testing.assert_array_equal(kept_lines, [2, 3, 5])


def test_test_rows_repeating_train_pairs_are_dropped(tmp_path, caplog):
    train = np.array([[0, 0], [1, 1]])
    test = np.array([[0, 2], [1, 1], [0, 0]])
    with caplog.at_level(logging.WARNING):
        kept, _ = drop_duplicates(
            test,
            np.array([2, 3, 4]),
            tmp_path / "test.csv",
            seen=train,
            seen_path=tmp_path / "train.csv",
        )
    assert "test.csv: 2 rows repeat a (user, item) pair of" in caplog.text
    assert "train.csv" in caplog.text and "first at lines 3, 4" in caplog.text
    np.testing.assert_array_equal(kept, [[0, 2]])


def test_test_only_items_are_reported(tmp_path, caplog):
    train = np.array([[0, 0], [1, 1]])
    test = np.array([[0, 5], [1, 3], [0, 1], [1, 5]])
    with caplog.at_level(logging.WARNING):
        only = report_test_only_items(train, test, tmp_path / "test.csv")
    np.testing.assert_array_equal(only, [3, 5])
    assert "test.csv: 2 items occur only in the test split (ids 3, 5)" in caplog.text


def test_ids_are_counted_as_max_plus_one_over_splits(caplog):
    train = np.array([[0, 0], [3, 1]])
    test = np.array([[1, 4]])
    with caplog.at_level(logging.WARNING):
        assert count_ids(train, test) == (4, 5)
    assert "1 user ids in 0..3 occur in no split (first: 2)" in caplog.text
    assert "2 item ids in 0..4 occur in no split (first: 2, 3)" in caplog.text


def test_small_folder_end_to_end(tmp_path, caplog):
    folder = tmp_path / "office"
    folder.mkdir()
    _csv(folder / "train.csv", [(0, 0), (1, 0), (2, 0), (1, 0), (0, 1), (1, 1), (2, 1)])
    _csv(folder / "test.csv", [(3, 0), (4, 1), (0, 1)], end="\r\n")
    np.save(folder / FEATURE_FILES["image"], np.ones((5, 4), dtype=np.float32))
    np.save(folder / FEATURE_FILES["text"], np.ones((5, 2), dtype=np.float64))
    np.save(folder / LABEL_FILE, np.array([0, 1, 1, 2, 0]))
    with caplog.at_level(logging.WARNING):
        data = load_amazon("office", tmp_path, seed=1)
    assert (data.n_users, data.n_items, data.n_classes) == (2, 5, 3)
    assert len(data.train) + len(data.valid) == 6 and len(data.test) == 2
    assert len(data.valid) == 2  # one per user, both have at least 3 training items
    assert data.features["text"].dtype == np.float32
    assert "duplicate" in caplog.text and "repeat a (user, item) pair" in caplog.text
    assert "2 items occur only in the test split (ids 3, 4)" in caplog.text

    np.save(folder / FEATURE_FILES["text"], np.array([[1.0], [np.nan], [1], [1], [1]]))
    message = _message(load_amazon, "office", tmp_path)
    assert str(folder / FEATURE_FILES["text"]) in message and "row 1 (item 1" in message


def test_movielens_bad_rating_and_unknown_item(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    inter = folder / "ml-100k.inter"
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter.write_text(head + "1\t10\t5\t100\n2\t10\tfive\t101\n")
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tA Film\t1990\tDrama\n"
    )
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert str(inter) in message and "line 3" in message and "rating" in message
    assert "expected a finite number" in message and "found 'five'" in message

    inter.write_text(head + "1\t10\t5\t100\n2\t11\t4\t101\n")
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert str(inter) in message and "line 3" in message
    assert "expected item '11' to have a row in the item file" in message

    inter.write_text("user_id:token\titem:token\trating:float\ttimestamp:float\n1\t10\t5\t1\n")
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert "line 1 (header)" in message and "missing: item_id" in message
    assert "found user_id, item, rating, timestamp" in message

    inter.write_text(head)
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert str(inter) in message and "expected at least one rating >= 4, found no ratings" in message

    inter.write_text(head + "1\t10\t5\t100\n")
    item = folder / "ml-100k.item"
    item.write_bytes(item.read_bytes().replace(b"A Film", b"Caf\xe9"))
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert f"{item}: line 2: expected utf-8 text, found the byte 0xe9" in message


def test_movielens_data_root_without_the_files_is_an_error(tmp_path):
    message = _message(load_movielens, tmp_path, cache=tmp_path / "cache")
    assert str(tmp_path) in message and "no MovieLens 100K files here" in message
