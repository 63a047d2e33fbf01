"""The fused MAML top-K op against its PyTorch reference, exact cases and the metric helper."""

import math

import numpy as np
import pytest
import torch

import sgfd_ext  # noqa: F401  (registers the operators)
from sgfd_ext.csr import CSR
from sgfd_ext.metrics import topk_metrics
from sgfd_ext.ops.kernels import use_kernels
from sgfd_ext.ops.maml_topk import maml_topk, maml_topk_reference
from sgfd_ext.ops.topk_eval import topk_eval_reference


def _case(n_users, n_items, a, d, dtype=torch.float64, n_exclude=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = [torch.randn(*s, generator=g, dtype=dtype)
         for s in ((n_users, a), (n_users, d), (n_items, a), (n_items, d), (d, a), (d,))]
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, max(n_users, 1), n_exclude)
    cols = rng.integers(0, max(n_items, 1), n_exclude)
    return (*t, CSR.from_pairs(rows, cols, n_users))


def _fused(*args):
    with use_kernels("fused"):
        return maml_topk(*args)


def _dense_scores(uh, ue, ih, ie, w2, b2):
    """Every (user, item) score in float64, written out without the reference's helpers."""
    h = torch.tanh(uh.double()[:, None] + ih.double()[None])
    logits = torch.einsum("uia,ka->uik", h, w2.double()) + b2.double()
    weight = ue.shape[1] * torch.softmax(logits, dim=-1)
    return -(weight * (ue.double()[:, None] - ie.double()[None]) ** 2).sum(-1)


@pytest.mark.parametrize(
    "n_users,n_items,a,d,k,n_exclude",
    [(1, 1, 1, 1, 1, 0), (5, 17, 3, 2, 4, 10), (37, 101, 12, 7, 20, 300), (20, 300, 16, 8, 50, 0),
     (3, 33, 5, 4, 40, 20), (70, 15, 9, 5, 10, 500)],
)
def test_fused_matches_reference_in_float64(n_users, n_items, a, d, k, n_exclude):
    args = _case(n_users, n_items, a, d, n_exclude=n_exclude, seed=n_items)
    top, score = _fused(*args, k)
    ref_top, ref_score = maml_topk_reference(*args, k)
    assert top.shape == (n_users, k) and top.dtype == torch.int64
    assert torch.equal(top, ref_top)
    torch.testing.assert_close(score, ref_score, rtol=1e-12, atol=1e-12)


def test_fused_float32_ranks_by_the_exact_scores():
    args = _case(25, 200, 16, 16, dtype=torch.float32, n_exclude=400, seed=3)
    top, score = _fused(*args, 20)
    exact = _dense_scores(*args[:6])
    exact[torch.repeat_interleave(torch.arange(25), args[6].indptr.diff()), args[6].indices] = (
        -math.inf)
    best = exact.sort(dim=1, descending=True).values[:, :20]
    got = exact.gather(1, top)
    torch.testing.assert_close(score.double(), got, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, best, rtol=1e-5, atol=1e-5)


def test_ties_go_to_the_lower_item_index():
    # Zero second layer: every weight is exactly 1, and small integer embeddings make every
    # distance an exact integer, so many items tie.
    n_users, n_items, d = 6, 40, 4
    g = torch.Generator().manual_seed(0)
    ue = torch.randint(-2, 3, (n_users, d), generator=g).double()
    ie = torch.randint(-1, 2, (n_items, d), generator=g).double()
    uh = torch.randn(n_users, 3, dtype=torch.float64)
    ih = torch.randn(n_items, 3, dtype=torch.float64)
    w2, b2 = torch.zeros(d, 3, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    exclude = CSR.from_pairs(np.array([0, 0, 3]), np.array([5, 1, 39]), n_users)
    k = 25
    top, _ = _fused(uh, ue, ih, ie, w2, b2, exclude, k)
    ref, _ = maml_topk_reference(uh, ue, ih, ie, w2, b2, exclude, k)
    for u in range(n_users):
        excluded = set(exclude.indices[exclude.indptr[u]:exclude.indptr[u + 1]].tolist())
        dist = [sum((ue[u, j].item() - ie[i, j].item()) ** 2 for j in range(d))
                for i in range(n_items)]
        candidates = [i for i in range(n_items) if i not in excluded]
        expected = sorted(candidates, key=lambda i: (dist[i], i))
        assert top[u].tolist() == expected[:k]
        assert ref[u].tolist() == expected[:k]
    assert len({tuple(sorted(set(r))) for r in top.tolist()}) > 1


def test_identical_items_in_different_lanes_tie_exactly():
    uh, ue, ih, ie, w2, b2, exclude = _case(4, 70, 8, 6, dtype=torch.float32, seed=5)
    for i in (3, 20, 35, 69):  # different lane groups and lanes
        ih[i], ie[i] = ih[3], ue[1]
    top, score = _fused(uh, ue, ih, ie, w2, b2, exclude, 6)
    assert top[1, :4].tolist() == [3, 20, 35, 69]
    assert torch.all(score[1, :4] == score[1, 0])


def test_excluded_items_are_never_ranked_and_short_lists_pad():
    uh, ue, ih, ie, w2, b2, _ = _case(3, 20, 4, 3)
    # Rows: items 2..19; all 20 in descending order; 7, 7, 3 (unsorted, with a duplicate).
    cols = np.array(list(range(2, 20)) + list(range(19, -1, -1)) + [7, 7, 3])
    exclude = CSR(torch.tensor([0, 18, 38, 41]), torch.from_numpy(cols))
    for impl in (_fused, maml_topk_reference):
        top, score = impl(uh, ue, ih, ie, w2, b2, exclude, 30)
        assert sorted(top[0, :2].tolist()) == [0, 1] and top[0, 2:].eq(-1).all()
        assert top[1].eq(-1).all() and score[1].eq(-math.inf).all()
        assert sorted(top[2, :18].tolist()) == sorted(set(range(20)) - {3, 7})
        assert top[2, 18:].eq(-1).all() and torch.isinf(score[2, 18:]).all()
        assert torch.isfinite(score[2, :18]).all()


def test_no_users_and_input_checks():
    uh, ue, ih, ie, w2, b2, exclude = _case(0, 10, 3, 2)
    top, score = _fused(uh, ue, ih, ie, w2, b2, exclude, 5)
    assert top.shape == (0, 5) and score.shape == (0, 5)

    uh, ue, ih, ie, w2, b2, exclude = _case(4, 10, 3, 2, n_exclude=5)
    op = torch.ops.sgfd_ext.maml_topk
    csr = (exclude.indptr, exclude.indices)
    with pytest.raises(RuntimeError, match="k must be at least 1"):
        op(uh, ue, ih, ie, w2, b2, *csr, 0)
    with pytest.raises(RuntimeError, match="user_hidden"):
        op(uh[:, :2], ue, ih, ie, w2, b2, *csr, 3)
    with pytest.raises(RuntimeError, match="dtype|must be"):
        op(uh.float(), ue, ih, ie, w2, b2, *csr, 3)
    with pytest.raises(RuntimeError, match="exclude_indices must lie"):
        op(uh, ue, ih, ie, w2, b2, exclude.indptr, exclude.indices + 10, 3)
    with pytest.raises(RuntimeError, match="exclude_indptr"):
        op(uh, ue, ih, ie, w2, b2, exclude.indptr[:-1], exclude.indices, 3)
    bad = ue.clone()
    bad[0, 0] = math.nan
    with pytest.raises(RuntimeError, match="NaN"):
        op(uh, bad, ih, ie, w2, b2, *csr, 3)
    with pytest.raises(ValueError):
        maml_topk_reference(uh, bad, ih, ie, w2, b2, exclude, 3)


def test_kernel_selection_reaches_the_reference():
    uh, ue, ih, ie, w2, b2, exclude = _case(3, 9, 2, 2)
    with use_kernels("reference"), pytest.raises(ValueError):
        maml_topk(uh, ue, ih, ie, w2, b2, exclude, 0)
    with use_kernels("fused"), pytest.raises(RuntimeError):
        maml_topk(uh, ue, ih, ie, w2, b2, exclude, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    for shape in ((4, 30, 5, 3), (17, 9, 16, 8)):
        uh, ue, ih, ie, w2, b2, exclude = _case(*shape, dtype=dtype, n_exclude=12)
        torch.library.opcheck(torch.ops.sgfd_ext.maml_topk,
                              (uh, ue, ih, ie, w2, b2, exclude.indptr, exclude.indices, 7))


def test_topk_metrics_by_hand():
    top = torch.tensor([[4, 2, 9, -1], [1, 0, 3, 2], [0, 1, 2, 3]])
    target = CSR(torch.tensor([0, 3, 4, 4]), torch.tensor([2, 7, 9, 5]))
    m = topk_metrics(top, target, (2, 4))
    disc = [1 / math.log2(r + 2) for r in range(4)]
    # User 0: hits at ranks 2 and 3 of 3 targets.
    assert m[0, 0].tolist() == pytest.approx(
        [1 / 3, disc[1] / (disc[0] + disc[1]), 1 / 2, 1.0, disc[1] / disc[0]])
    assert m[0, 1].tolist() == pytest.approx(
        [2 / 3, (disc[1] + disc[2]) / sum(disc[:3]), 2 / 4, 1.0,
         (disc[1] + disc[2]) / (disc[0] + disc[1])])
    # User 1: no hit among 1 target; user 2: no targets at all.
    assert m[1].tolist() == [[0.0] * 5] * 2
    assert torch.isnan(m[2]).all()


def test_maml_ranking_agrees_with_topk_eval_when_attention_is_uniform():
    # With uniform attention the score is -|u - i|^2 = [u, 1] . [2i, -|i|^2] - |u|^2, a dot
    # product up to a per-user constant; integer embeddings keep every score exact.
    n_users, n_items, d = 12, 50, 3
    g = torch.Generator().manual_seed(1)
    ue = torch.randint(-3, 4, (n_users, d), generator=g).double()
    ie = torch.randint(-3, 4, (n_items, d), generator=g).double()
    zeros = torch.zeros(d, 2, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    uh = torch.randn(n_users, 2, dtype=torch.float64)
    ih = torch.randn(n_items, 2, dtype=torch.float64)
    rng = np.random.default_rng(0)
    exclude = CSR.from_pairs(rng.integers(0, n_users, 80), rng.integers(0, n_items, 80), n_users)
    target = CSR.from_pairs(rng.integers(0, n_users - 1, 40), rng.integers(0, n_items, 40), n_users)
    ks = (5, 10)

    top, _ = _fused(uh, ue, ih, ie, *zeros, exclude, max(ks))
    user_aug = torch.cat([ue, torch.ones(n_users, 1, dtype=torch.float64)], 1)
    item_aug = torch.cat([2 * ie, -(ie**2).sum(1, keepdim=True)], 1)
    ref_top, ref_metrics = topk_eval_reference(user_aug, item_aug, exclude, target, ks)
    assert torch.equal(top, ref_top)
    torch.testing.assert_close(topk_metrics(top, target, ks), ref_metrics, equal_nan=True)
