"""Finding the raw MovieLens 100K files: a local copy, the raw cache, or a download.

Order: the given data root, then SGFD_DATA_ROOT (each as the folder itself, or its
``movielens-100k`` or ``ml-100k`` subfolder), then earlier downloads in the cache, then the
official GroupLens archive, then the RecBole 1.2.1 package from the Python package index (its
wheel ships the dataset, knowledge graph included). Downloads are kept under ``<cache>/raw``.

Limitation: the GroupLens archive has no knowledge graph, so a machine that reaches it builds
MovieLens 100K without the ``kg`` modality; a local RecBole copy avoids that difference.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sgfd_ext.data.checks import DataError

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
LAYOUT_FILES = {
    "recbole": ("ml-100k.inter", "ml-100k.item", "ml-100k.kg", "ml-100k.link"),
    "grouplens": ("u.data", "u.item", "u.genre"),
}
REQUIRED = {"recbole": LAYOUT_FILES["recbole"][:2], "grouplens": LAYOUT_FILES["grouplens"]}
CONNECT_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RawFiles:
    """A folder of raw MovieLens 100K files, its layout and where it came from."""

    folder: Path
    layout: str
    origin: str

    def files(self) -> list[Path]:
        """The files of the layout that exist (the knowledge graph is optional)."""
        return [self.folder / f for f in LAYOUT_FILES[self.layout] if (self.folder / f).is_file()]


def detect_layout(folder: Path) -> str | None:
    """``"recbole"`` or ``"grouplens"`` if the folder holds that layout's required files."""
    for layout, names in REQUIRED.items():
        if all((folder / n).is_file() for n in names):
            return layout
    return None


def _local(base: Path, origin: str) -> RawFiles | None:
    for folder in (base, base / "movielens-100k", base / "ml-100k"):
        layout = detect_layout(folder)
        if layout:
            return RawFiles(folder, layout, origin)
    return None


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A scratch folder next to ``target`` that replaces it once filled; removed on failure."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists() and detect_layout(target) is None:
            shutil.rmtree(target)
        with contextlib.suppress(OSError):  # another process may have published first
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_grouplens(target: Path) -> None:
    """Fetch the official archive; the connection must answer within a few seconds."""
    result: dict = {}
    answered = threading.Event()

    def get() -> None:
        try:
            with urllib.request.urlopen(GROUPLENS_URL, timeout=CONNECT_TIMEOUT_S) as response:
                answered.set()
                result["body"] = response.read()
        except Exception as err:  # noqa: BLE001  (any failure means: try the next source)
            result["error"] = err
        answered.set()

    worker = threading.Thread(target=get, daemon=True)
    worker.start()
    if not answered.wait(CONNECT_TIMEOUT_S + 1.0):
        raise TimeoutError(f"no answer within {CONNECT_TIMEOUT_S:.0f} s")
    worker.join()
    if "error" in result:
        raise result["error"]

    with _staging(target) as staging, zipfile.ZipFile(io.BytesIO(result["body"])) as archive:
        for name in LAYOUT_FILES["grouplens"]:
            (staging / name).write_bytes(archive.read(f"ml-100k/{name}"))
        (staging / "ORIGIN").write_text(f"{GROUPLENS_URL}\n")


def _download_recbole(target: Path) -> None:
    """Fetch the RecBole package with pip and take the dataset folder out of its wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            RECBOLE_REQUIREMENT,
            "-d",
            tmp,
        ]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download failed: {done.stderr.strip()[-500:]}")

        prefix = "recbole/dataset_example/ml-100k/"
        with _staging(target) as staging, zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(prefix) and m != prefix]
            for member in members:
                (staging / Path(member).name).write_bytes(wheel.read(member))
            if detect_layout(staging) != "recbole":
                raise RuntimeError(f"{wheels[0].name} holds no {prefix} folder")
            (staging / "ORIGIN").write_text(
                f"{RECBOLE_REQUIREMENT} from the Python package index\n"
            )


def locate_movielens(data_root: str | os.PathLike | None, cache: Path) -> RawFiles:
    """Find or download the raw files; raises naming every source tried when none works."""
    tried = []
    for base, origin in (
        (data_root, "data root"),
        (os.environ.get("SGFD_DATA_ROOT"), "SGFD_DATA_ROOT"),
    ):
        if base:
            found = _local(Path(base).expanduser(), f"local copy ({origin})")
            if found:
                return found
            if origin == "data root":
                raise DataError(
                    f"{base}: no MovieLens 100K files here (ml-100k.inter and ml-100k.item, or "
                    "u.data, u.item and u.genre, directly or in a movielens-100k or ml-100k "
                    "folder); leave out the data root to use the cached or downloaded copy"
                )
            tried.append(f"{base} ({origin}): no ml-100k.inter/.item or u.data/u.item/u.genre")

    raw = cache / "raw"
    for sub in ("ml-100k-recbole", "ml-100k-grouplens"):
        layout = detect_layout(raw / sub)
        if layout:
            note = raw / sub / "ORIGIN"
            origin = note.read_text().strip() if note.is_file() else "unknown origin"
            return RawFiles(raw / sub, layout, f"cache of {origin}")

    raw.mkdir(parents=True, exist_ok=True)
    sources = (
        ("ml-100k-grouplens", _download_grouplens, f"the GroupLens archive {GROUPLENS_URL}"),
        (
            "ml-100k-recbole",
            _download_recbole,
            f"{RECBOLE_REQUIREMENT} from the Python package index",
        ),
    )
    for sub, download, what in sources:
        log.info("MovieLens 100K: fetching %s", what)
        try:
            download(raw / sub)
        except Exception as err:  # noqa: BLE001  (report and try the next source)
            log.info("MovieLens 100K: %s not available (%s)", what, err)
            tried.append(f"{what}: {err}")
            continue
        return RawFiles(raw / sub, detect_layout(raw / sub), what)

    raise DataError(
        "MovieLens 100K raw files not found and not downloadable; tried:\n  "
        + "\n  ".join(tried)
        + "\nPut ml-100k.inter and ml-100k.item (RecBole layout) or u.data, u.item and u.genre "
        "(GroupLens layout) into <root>/movielens-100k and give the root with --data-root or "
        "SGFD_DATA_ROOT."
    )
