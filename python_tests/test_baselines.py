"""The training-free baselines against brute-force rankings written out by hand."""

import numpy as np
import pytest

from sgfd_ext.baselines import item_knn, item_knn_weights, most_popular
from sgfd_ext.csr import CSR


def _random_csr(rng, n_rows, n_cols, density):
    dense = rng.random((n_rows, n_cols)) < density
    rows, cols = np.nonzero(dense)
    return CSR.from_pairs(rows, cols, n_rows), dense.astype(np.float64)


def _brute_weights(dense, neighbours):
    n_items = dense.shape[1]
    counts = dense.sum(0)
    w = np.zeros((n_items, n_items))
    for j in range(n_items):
        sims = []
        for i in range(n_items):
            if i == j:
                continue
            co = float(dense[:, i] @ dense[:, j])
            sims.append((co / (np.sqrt(counts[i] * counts[j]) + 1e-6), i))
        # most similar first, lower index first among equals (as topk over distinct values)
        for value, i in sorted(sims, key=lambda x: (-x[0], x[1]))[:neighbours]:
            w[i, j] = value
    return w


@pytest.mark.parametrize("neighbours", [1, 3, 100])
def test_item_knn_weights_match_brute_force(neighbours):
    rng = np.random.default_rng(neighbours)
    train, dense = _random_csr(rng, 12, 9, 0.35)
    got = item_knn_weights(train, 9, neighbours).double().numpy()
    want = _brute_weights(dense, neighbours)
    # equal similarities may be kept in a different order; compare the kept values per column
    for j in range(9):
        assert sorted(got[:, j]) == pytest.approx(sorted(want[:, j]), abs=1e-6)
    assert np.all(np.diag(got) == 0)


def test_item_knn_ranks_by_summed_neighbour_weights():
    # items 0 and 1 always co-occur, item 2 goes with item 3; user 2 has only item 2, so its
    # best item is 3 (a ranking by index or popularity would give 0)
    train = CSR.from_pairs(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 2, 3, 2]), 3)
    target = CSR.from_pairs(np.array([2]), np.array([3]), 3)
    result = item_knn(train, 4, train, target, (1,), neighbours=1)
    assert result["users"] == 1 and result["recall@1"] == 1.0


def test_most_popular_counts_training_users():
    train = CSR.from_pairs(np.array([0, 1, 2, 2]), np.array([3, 3, 3, 1]), 4)
    target = CSR.from_pairs(np.array([3, 3]), np.array([1, 0]), 4)
    exclude = CSR.from_pairs(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4)
    result = most_popular(train, 4, exclude, target, (2,))
    # user 3 gets items 3 (three users) and 1 (one user): one of its two targets
    assert result["users"] == 1 and result["recall@2"] == pytest.approx(0.5)
    dcg = 1 / np.log2(3)
    assert result["ndcg@2"] == pytest.approx(dcg / (1 + dcg))
