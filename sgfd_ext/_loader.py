"""Loading of the compiled extension, also when the package is imported from a source checkout.

``pip install .`` puts the compiled ``_C`` module into the installed package only. Running
``python -m sgfd_ext.train`` from the repository root imports the source folder instead, which
has no ``_C``; the installed build of the same version is then loaded from the distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from types import ModuleType

DISTRIBUTION = "sgfd-ext"


def _installed_extension() -> str | None:
    """Path of ``sgfd_ext/_C*`` in the installed distribution, if there is one."""
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        parts = f.parts
        if len(parts) == 2 and parts[0] == "sgfd_ext" and parts[1].startswith("_C."):
            return str(f.locate())
    return None


def load_extension() -> ModuleType:
    """Import ``sgfd_ext._C``, from this package's folder or else from the installed build."""
    try:
        return importlib.import_module("sgfd_ext._C")
    except ImportError as err:
        path = _installed_extension()
        if path is None:
            raise ImportError(
                "the compiled extension sgfd_ext._C was not found; install the package with "
                "'pip install --no-build-isolation .' (or -e . for development)"
            ) from err
    spec = importlib.util.spec_from_file_location("sgfd_ext._C", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sgfd_ext._C"] = module
    spec.loader.exec_module(module)
    return module
