"""Writing result files so that a reader never sees a half-written one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(obj: object, path: str | os.PathLike, indent: int = 2) -> None:
    """Write ``obj`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)
