"""Where the real data for tests lives: $SGFD_SHARED_DATA, else ../shared/data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data(sub: str) -> Path:
    """The folder ``sub`` of the shared real data; skips the test when it is not on this machine."""
    candidates = [REPO.parent / "shared" / "data"]
    if os.environ.get("SGFD_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["SGFD_SHARED_DATA"]))
    for base in candidates:
        if (base / sub).is_dir():
            return base / sub
    pytest.skip(f"real data folder {sub!r} not found under {', '.join(map(str, candidates))}")
