"""A dense knowledge modality from (head, relation, tail) triples linked to items.

Each item is described by the (relation, tail) pairs of the triples whose head is its entity.
Pairs shared by fewer than ``min_items`` items say nothing about similarity and are dropped.
The binary item x pair matrix, rows scaled to unit length, is reduced to its leading singular
directions: row ``i`` is ``U[i] * s`` of a truncated SVD, signs fixed so the largest entry of
each column is positive. Items without facts get zero rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp


def fact_matrix(
    entities: Sequence[str | None], triples: Sequence[tuple[str, str, str]], min_items: int = 2
) -> tuple[sp.csr_matrix, list[tuple[str, str]]]:
    """Binary item x (relation, tail) matrix over pairs held by at least ``min_items`` items."""
    items_of = defaultdict(list)
    for item, entity in enumerate(entities):
        if entity:
            items_of[entity].append(item)
    facts = {(item, r, t) for h, r, t in triples for item in items_of.get(h, ())}

    holders = defaultdict(int)
    for _, r, t in facts:
        holders[(r, t)] += 1
    vocab = sorted(p for p, n in holders.items() if n >= min_items)
    column = {p: j for j, p in enumerate(vocab)}
    cells = sorted((i, column[(r, t)]) for i, r, t in facts if (r, t) in column)
    rows = np.array([c[0] for c in cells], dtype=np.int64)
    cols = np.array([c[1] for c in cells], dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(cells)), (rows, cols)), shape=(len(entities), len(vocab)))
    return matrix, vocab


def truncated_svd(matrix: sp.csr_matrix, dims: int) -> np.ndarray:
    """Rows of ``U * s`` for the leading ``dims`` singular directions (fewer if the rank is lower).

    Computed exactly from the eigendecomposition of the smaller Gram matrix, so the result is
    repeatable. Limitation: that Gram matrix is dense, sized min(items, pairs) squared.
    """
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    scaled = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix
    n, m = scaled.shape
    gram = (scaled @ scaled.T if n <= m else scaled.T @ scaled).toarray()
    top = min(dims, gram.shape[0])
    if top == 0:
        return np.zeros((n, 0), dtype=np.float32)
    values, vectors = scipy.linalg.eigh(
        gram, subset_by_index=[gram.shape[0] - top, gram.shape[0] - 1], driver="evr"
    )
    values, vectors = values[::-1], vectors[:, ::-1]
    keep = int((values > max(values[0], 0.0) * 1e-10).sum())
    values, vectors = values[:keep], vectors[:, :keep]
    out = vectors * np.sqrt(values) if n <= m else scaled @ vectors
    out = np.asarray(out)
    out[norms == 0] = 0.0
    if keep:
        out *= np.sign(out[np.abs(out).argmax(axis=0), np.arange(keep)])
    return out.astype(np.float32)


def knowledge_features(
    entities: Sequence[str | None],
    triples: Sequence[tuple[str, str, str]],
    dims: int = 128,
    min_items: int = 2,
) -> tuple[np.ndarray, dict]:
    """Dense knowledge features per item and a summary of what went into them."""
    matrix, vocab = fact_matrix(entities, triples, min_items)
    features = truncated_svd(matrix, dims)
    summary = {
        "items_with_facts": int((np.diff(matrix.indptr) > 0).sum()),
        "pairs": len(vocab),
        "min_items_per_pair": min_items,
        "dims": int(features.shape[1]),
    }
    return features, summary
