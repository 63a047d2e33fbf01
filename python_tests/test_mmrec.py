"""The MMRec folder reader on a folder built from the real Office split, and its error messages."""

from collections import Counter

import numpy as np
import pytest
import torch
from tiny_data import office_split, write_mmrec

from sgfd_ext.data.mmrec import MMRecError, default_clusters, kmeans, load_mmrec


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmrec") / "office"
    planted = write_mmrec(folder, n_classes=6)
    return folder, planted


def _purity(found: np.ndarray, planted: np.ndarray) -> float:
    return sum(Counter(planted[found == c]).most_common(1)[0][1]
               for c in np.unique(found)) / len(found)


def _rewrite(src, dst, edit):
    """Copy an MMRec folder, passing the .inter lines through ``edit``."""
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    lines = (src / "office.inter").read_text().splitlines()
    (dst / "office.inter").write_text("\n".join(edit(lines)) + "\n")
    return dst


def test_reads_the_office_split_with_kmeans_labels(office):
    folder, planted = office
    ds = load_mmrec(str(folder), "office", seed=0, n_clusters=6)
    train, _ = office_split()
    assert ds.n_users == int(train[:, 0].max()) + 1
    assert ds.n_items == planted["n_items"]
    assert sorted(ds.features) == ["image", "text"]
    assert ds.features["image"].dtype == np.float32
    dropped = sum(v for k, v in ds.info.items() if k.startswith("cold_start_dropped"))
    assert len(ds.train) == planted["train"]
    assert len(ds.valid) + len(ds.test) + dropped == planted["valid"] + planted["test"]
    assert set(np.unique(ds.train[:, 0])) >= set(np.unique(ds.test[:, 0]))

    labels = ds.info["labels"]
    assert labels["source"] == "kmeans" and labels["k"] == 6 and labels["k_rule"] == "given"
    assert sum(labels["cluster_sizes"]) == ds.n_items and ds.n_classes == 6
    assert _purity(ds.labels, planted["labels"]) > 0.95
    again = load_mmrec(str(folder), "office", seed=0, n_clusters=6)
    assert np.array_equal(again.labels, ds.labels)


def test_default_number_of_clusters():
    assert default_clusters(2406) == 35 and default_clusters(10**7) == 100
    assert default_clusters(3) == 2


def test_kmeans_is_deterministic_and_numbers_clusters_by_first_item():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 5, generator=g) * 10
    truth = torch.arange(200) % 4
    x = centres[truth] + torch.randn(200, 5, generator=g)
    a, _ = kmeans(x, 4, seed=1)
    b, _ = kmeans(x, 4, seed=1)
    assert torch.equal(a, b)
    assert torch.equal(a, truth)  # first items are 0, 1, 2, 3: the numbering follows them


def test_labels_from_npy_and_csv(office, tmp_path):
    folder, planted = office
    n = planted["n_items"]
    raw = planted["labels"] * 10 + 3  # non-contiguous values are renumbered
    np.save(tmp_path / "labels.npy", raw)
    ds = load_mmrec(str(folder), "office", labels_path=str(tmp_path / "labels.npy"))
    assert np.array_equal(ds.labels, planted["labels"])
    assert ds.info["labels"]["original_values"] == sorted(set(raw.tolist()))

    rows = ["item,label"] + [f"{i},{raw[i]}" for i in reversed(range(n))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load_mmrec(str(folder), "office", labels_path=str(tmp_path / "labels.csv"))
    assert np.array_equal(ds.labels, planted["labels"]) and ds.n_classes == 6


def test_typed_header_names_are_accepted(office, tmp_path):
    folder, _ = office
    typed = _rewrite(folder, tmp_path / "typed", lambda lines: [
        "userID:token\titemID:token\trating:float\ttimestamp:float\tx_label:token"] + lines[1:])
    a = load_mmrec(str(typed), "office", n_clusters=4)
    b = load_mmrec(str(folder), "office", n_clusters=4)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)


def test_one_modality_is_enough(office, tmp_path):
    folder, _ = office
    only_text = _rewrite(folder, tmp_path / "t", lambda lines: lines)
    (only_text / "image_feat.npy").unlink()
    ds = load_mmrec(str(only_text), "office", n_clusters=4)
    assert list(ds.features) == ["text"]


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ["userID,itemID,x_label"] + ls[1:],
     r"line 1 \(header\): expected columns userID, itemID, x_label.*tab-separated"),
    (lambda ls: ls[:5] + [ls[5].rsplit("\t", 1)[0] + "\t7"] + ls[6:],
     r"line 6, column x_label: expected 0 \(train\), 1 \(validation\) or 2 \(test\), found 7"),
    (lambda ls: ls[:3] + ["abc\t1\t5\t0\t0"] + ls[3:],
     r"line 4, column userID: expected an integer, found 'abc'"),
    (lambda ls: ls[:3] + ["1\t2\t5"] + ls[3:],
     r"line 4: expected 5 tab-separated fields, found 3"),
    (lambda ls: ls[:3] + ["1\t999999\t5\t0\t0"] + ls[3:],
     r"line 4, column itemID: expected an id below 2406 .*found 999999"),
    (lambda ls: ls[:3] + ["-1\t2\t5\t0\t0"] + ls[3:],
     r"line 4, column userID: expected an id >= 0, found -1"),
    (lambda ls: [ls[0]] + [l for l in ls[1:] if not l.endswith("\t1")],
     r"expected validation interactions \(x_label 1\)"),
])
def test_bad_interactions_name_file_line_and_values(office, tmp_path, edit, message):
    folder, _ = office
    bad = _rewrite(folder, tmp_path / "bad", edit)
    with pytest.raises(MMRecError, match=message) as err:
        load_mmrec(str(bad), "office", n_clusters=4)
    assert "office.inter" in str(err.value)


def test_bad_feature_and_label_files(office, tmp_path):
    folder, _ = office
    bad = _rewrite(folder, tmp_path / "bad", lambda lines: lines)
    np.save(bad / "text_feat.npy", np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(MMRecError, match=r"image_feat.npy has 2406 rows, text_feat.npy has 10"):
        load_mmrec(str(bad), "office")

    feats = np.load(folder / "text_feat.npy")
    feats[17, 3] = np.nan
    np.save(bad / "text_feat.npy", feats)
    with pytest.raises(MMRecError, match=r"text_feat.npy: row 17 .*expected finite numbers"):
        load_mmrec(str(bad), "office")

    (bad / "text_feat.npy").write_bytes(b"not a numpy file")
    with pytest.raises(MMRecError, match=r"text_feat.npy: cannot be read as a .npy array"):
        load_mmrec(str(bad), "office")

    (bad / "text_feat.npy").unlink()
    (bad / "image_feat.npy").unlink()
    with pytest.raises(MMRecError, match=r"expected at least one of image_feat.npy, text_feat.npy"):
        load_mmrec(str(bad), "office")

    np.save(tmp_path / "short.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(MMRecError, match=r"short.npy: expected 2406 labels .*found 5"):
        load_mmrec(str(folder), "office", labels_path=str(tmp_path / "short.npy"))
    (tmp_path / "gap.csv").write_text("0,1\n1,2\n1,3\n")
    with pytest.raises(MMRecError, match=r"gap.csv: line 3: item 1 already has a label \(line 2\)"):
        load_mmrec(str(folder), "office", labels_path=str(tmp_path / "gap.csv"))
    (tmp_path / "few.csv").write_text("item,label\n0,1\n1,2\n")
    with pytest.raises(MMRecError, match=r"few.csv: expected a label for every item .*2404 items"):
        load_mmrec(str(folder), "office", labels_path=str(tmp_path / "few.csv"))
    with pytest.raises(MMRecError, match=r"office.inter: interaction file not found"):
        load_mmrec(str(tmp_path), "office")
