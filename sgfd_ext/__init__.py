"""Semantic-Guided Feature Distillation for multimodal recommendation."""

import logging

import torch  # noqa: F401  (loads the PyTorch libraries the extension links against)

from sgfd_ext._loader import load_extension

_C = load_extension()  # registers the torch.ops.sgfd_ext operators

from sgfd_ext import ops  # noqa: F401  (fake implementations and autograd formulas)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
