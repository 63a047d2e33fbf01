"""The in-memory dataset every model and trainer works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sgfd_ext.csr import CSR


@dataclass
class Dataset:
    """Implicit feedback split into train/valid/test, item features per modality, item labels.

    Interactions are int64 arrays of shape (n, 2) holding (user, item) pairs with 0-based ids.
    ``features`` maps a modality name to a float32 matrix of shape (n_items, D_m).
    ``labels`` holds one semantic class in ``0..n_classes-1`` per item.
    ``feature_source`` is ``"real"`` or ``"generated"``; every output of a run on generated
    features must say so.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray]
    labels: np.ndarray
    n_classes: int
    feature_source: str = "real"
    info: dict = field(default_factory=dict)

    def csr(self, split: str) -> CSR:
        """Items per user of one split (``"train"``, ``"valid"`` or ``"test"``) as CSR."""
        pairs = getattr(self, split)
        return CSR.from_pairs(pairs[:, 0], pairs[:, 1], self.n_users)

    def statistics(self) -> dict:
        """Counts that a results file records next to the metrics."""
        n_inter = len(self.train) + len(self.valid) + len(self.test)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "density": n_inter / max(1, self.n_users * self.n_items),
            "modalities": {m: int(f.shape[1]) for m, f in self.features.items()},
            "classes": int(self.n_classes),
            "feature_source": self.feature_source,
        }
