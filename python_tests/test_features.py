"""Feature extraction: packaged MiniLM on product titles, chunked resumption, image backbones."""

import json
import sys

import numpy as np
import pytest
import torch

from sgfd_ext.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureError,
    encode_chunked,
    main,
    text_encoder,
)

TITLES = [
    "Blue ballpoint pens, medium point, pack of 12",
    "Black gel ink pens, fine tip, 10 count",
    "Ergonomic mesh office chair with lumbar support",
    "Adjustable swivel desk chair, high back",
    "Copy paper, letter size, 500 sheets",
    "Premium printer paper, bright white, 8.5 x 11",
    "Heavy duty stapler, 40 sheet capacity",
    "Staples, standard 1/4 inch, 5000 per box",
    "Yellow sticky notes, 3 x 3 inches, 12 pads",
    "Wireless keyboard and mouse combo",
    "Desk organizer with drawers, wood",
    "Permanent markers, assorted colours, 24 pack",
    "Dry erase whiteboard, 36 x 24 inches",
    "Laminated wall calendar 2024",
    "Manila file folders, letter size, 100 per box",
    "Paper clips, jumbo, 1000 count",
    "Scientific calculator with 240 functions",
    "Label maker with tape cassette",
    "Mechanical pencils 0.7 mm with erasers",
    "Shredder, cross cut, 8 sheets",
]
INPUTS = dict(enumerate(TITLES))


@pytest.fixture(scope="module")
def encode():
    return text_encoder(None, "cpu", batch_size=8)


class Counting:
    """Wraps an encoder; counts calls and can fail on a chosen call (a simulated crash)."""

    def __init__(self, encode, fail_on=None):
        self.encode, self.fail_on, self.calls = encode, fail_on, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        return self.encode(batch)


def test_packaged_minilm_encodes_titles(encode, tmp_path):
    out = tmp_path / "text_feat.npy"
    summary = encode_chunked(INPUTS, encode, out, 20, {"m": "x"}, chunk_size=100,
                             progress=False)
    assert summary["complete"] and summary["computed"] == 1
    matrix = np.load(out)
    assert matrix.shape == (20, 384) and matrix.dtype == np.float32
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 4]  # pens with pens, chairs with chairs
    assert not (tmp_path / "text_feat.npy.chunks").exists()


def test_interrupted_job_continues_from_saved_chunks(encode, tmp_path):
    reference = tmp_path / "ref.npy"
    encode_chunked(INPUTS, encode, reference, 20, {"m": "x"}, chunk_size=6, progress=False)

    out = tmp_path / "text_feat.npy"
    first = encode_chunked(INPUTS, encode, out, 20, {"m": "x"}, chunk_size=6, max_chunks=1,
                           progress=False)
    assert first == {"path": str(out), "chunks": 4, "computed": 1, "skipped": 0,
                     "complete": False, "items_without_input": 0}
    assert not out.exists()

    crashing = Counting(encode, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        encode_chunked(INPUTS, crashing, out, 20, {"m": "x"}, chunk_size=6, batch_size=6,
                       progress=False)
    manifest = json.loads((tmp_path / "text_feat.npy.chunks" / "manifest.json").read_text())
    assert manifest["done"] == [0, 1]

    counting = Counting(encode)
    last = encode_chunked(INPUTS, counting, out, 20, {"m": "x"}, chunk_size=6, batch_size=6,
                          progress=False)
    assert last["complete"] and last["skipped"] == 2 and last["computed"] == 2
    assert counting.calls == 2  # only the two missing chunks were encoded
    np.testing.assert_allclose(np.load(out), np.load(reference), atol=1e-5)


def test_chunks_of_another_job_are_refused(encode, tmp_path):
    out = tmp_path / "text_feat.npy"
    encode_chunked(INPUTS, encode, out, 20, {"model": "a"}, chunk_size=6, max_chunks=1,
                   progress=False)
    with pytest.raises(FeatureError, match="different job .*signature"):
        encode_chunked(INPUTS, encode, out, 20, {"model": "b"}, chunk_size=6, progress=False)


def test_command_line_paper_layout_with_chunk_limit(tmp_path, capsys):
    rows = ["asin,itemID,title"] + [f"A{i},{i if i < 10 else i + 2},\"{t}\""
                                    for i, t in enumerate(TITLES)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    argv = ["--out-dir", str(tmp_path / "out"), "--layout", "paper", "--csv",
            str(tmp_path / "items.csv"), "--text-column", "title", "--chunk-size", "8",
            "--quiet"]
    assert main(argv + ["--max-chunks", "1"]) == 3
    assert "1 of 3 chunks done" in capsys.readouterr().out
    assert main(argv) == 0
    matrix = np.load(tmp_path / "out" / "FeatureText_normal.npy")
    assert matrix.shape == (22, 384)
    assert not matrix[10].any() and not matrix[11].any()  # ids 10 and 11 have no row in the CSV
    assert matrix[12].any()


def test_command_line_reports_bad_csv(tmp_path, capsys):
    (tmp_path / "items.csv").write_text("itemID,title\n0,pen\nx1,chair\n")
    with pytest.raises(SystemExit) as stop:
        main(["--out-dir", str(tmp_path), "--csv", str(tmp_path / "items.csv"),
              "--text-column", "title"])
    assert stop.value.code == 2
    assert "items.csv: line 3, column itemID: expected an integer item id, found 'x1'" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["export", "torchscript"])
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_image_features_with_a_saved_backbone(tmp_path, caplog, kind):
    image = pytest.importorskip("PIL.Image", reason="image features need Pillow")
    colours = {0: (255, 0, 0), 2: (0, 0, 255), 5: (30, 200, 90)}
    folder = tmp_path / "images"
    folder.mkdir()
    for item, rgb in colours.items():
        ext = "jpg" if item == 5 else "png"
        image.new("RGB", (300, 260) if item else (64, 64), rgb).save(folder / f"{item}.{ext}")
    (folder / "readme.txt").write_text("not an image")
    (folder / "3.png").write_bytes(b"broken")

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, kernel_size=1)
    if kind == "export":
        backbone = tmp_path / "backbone.pt2"
        batch = torch.export.Dim("batch")
        program = torch.export.export(conv, (torch.zeros(2, 3, 32, 32),),
                                      dynamic_shapes=({0: batch},))
        torch.export.save(program, str(backbone))
    else:
        backbone = tmp_path / "backbone.pt"
        torch.jit.script(conv).save(str(backbone))

    code = main(["--out-dir", str(tmp_path / "out"), "--image-dir", str(folder),
                 "--backbone-file", str(backbone), "--image-size", "32",
                 "--chunk-size", "2", "--quiet"])
    assert code == 0
    matrix = np.load(tmp_path / "out" / "image_feat.npy")
    assert matrix.shape == (6, 5)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    for item, rgb in colours.items():  # a 1x1 convolution of a plain colour, averaged
        pixel = (torch.tensor(rgb) / 255.0 - mean) / std
        expected = conv.weight[:, :, 0, 0] @ pixel + conv.bias
        np.testing.assert_allclose(matrix[item], expected.detach().numpy(), atol=2e-2)
    assert not matrix[[1, 3, 4]].any()
    assert "3.png: unreadable image" in caplog.text and "readme.txt" in caplog.text


def test_torchvision_backbone_without_torchvision_names_what_to_install(tmp_path, monkeypatch,
                                                                        capsys):
    pytest.importorskip("PIL.Image", reason="image features need Pillow")
    image = sys.modules["PIL.Image"]
    (tmp_path / "images").mkdir()
    image.new("RGB", (8, 8)).save(tmp_path / "images" / "0.png")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(SystemExit) as stop:
        main(["--out-dir", str(tmp_path), "--image-dir", str(tmp_path / "images"),
              "--backbone", "resnet50", "--weights", str(tmp_path / "w.pt")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "needs torchvision" in err and f"torch {torch.__version__}" in err
    assert "--backbone-file" in err
