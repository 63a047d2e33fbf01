"""Delimited text files read into named string columns, with the line number of every row."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgfd_ext.data.checks import DataError, require_columns


@dataclass
class Table:
    """The requested columns of a file as strings; ``lines[k]`` is the 1-based line of row ``k``."""

    path: Path
    columns: dict[str, list[str]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)


def read_table(
    path: Path,
    required: Sequence[str],
    delimiter: str = ",",
    names: Sequence[str] | None = None,
    typed_header: bool = False,
    encoding: str = "utf-8",
) -> Table:
    """Read ``required`` columns of a delimited file; CRLF and LF line ends are both accepted.

    The header is the first line unless ``names`` gives the columns of a headerless file.
    ``typed_header`` strips ``:type`` suffixes such as ``user_id:token``. Blank lines are skipped.
    """
    path = Path(path)
    try:
        return _read_table(path, required, delimiter, names, typed_header, encoding)
    except UnicodeDecodeError:
        raise DataError(_first_undecodable_line(path, encoding)) from None


def _first_undecodable_line(path: Path, encoding: str) -> str:
    """The message naming the first line of ``path`` that is not valid ``encoding`` text."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as err:
                return (f"{path}: line {number}: expected {encoding} text, found the byte "
                        f"0x{line[err.start]:02x}")
    return f"{path}: expected {encoding} text"


def _read_table(path: Path, required: Sequence[str], delimiter: str,
                names: Sequence[str] | None, typed_header: bool, encoding: str) -> Table:
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    with path.open(newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        if names is None:
            header = next(reader, [])
            header = [h.strip().lstrip("\ufeff") for h in header]
            if typed_header:
                header = [h.split(":", 1)[0] for h in header]
        else:
            header = list(names)
        index = require_columns(path, header, required)
        width = len(header)
        cells: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise DataError(
                    f"{path}: line {reader.line_num}: expected {width} fields "
                    f"({delimiter!r}-separated), found {len(row)}"
                )
            cells.append(row)
            lines.append(reader.line_num)
    columns = {c: [row[j] for row in cells] for c, j in index.items()}
    return Table(path, columns, np.array(lines, dtype=np.int64))
