"""topk_eval: the fused op and the PyTorch reference against a plain-Python ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sgfd_ext  # noqa: F401  (registers torch.ops.sgfd_ext)
from sgfd_ext.csr import CSR
from sgfd_ext.ops.kernels import use_kernels
from sgfd_ext.ops.topk_eval import METRIC_NAMES, topk_eval, topk_eval_reference

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]


def slow_topk_eval(user_emb, item_emb, exclude_rows, target_rows, ks):
    """Loops and sorted(): rank every allowed item by (-score, item), then count hits."""
    scores = (user_emb.double() @ item_emb.double().T).tolist()
    n_items, max_k = item_emb.shape[0], max(ks)
    tops, metrics = [], []
    for u, row in enumerate(scores):
        excluded = set(exclude_rows[u])
        allowed = [i for i in range(n_items) if i not in excluded]
        ranked = sorted(allowed, key=lambda i: (-row[i], i))[:max_k]
        top = ranked + [-1] * (max_k - len(ranked))
        tops.append(top)

        targets = set(target_rows[u])
        per_k = []
        for k in ks:
            if not targets:
                per_k.append([math.nan] * len(METRIC_NAMES))
                continue
            hit_positions = [p for p in range(k) if top[p] != -1 and top[p] in targets]
            hits = len(hit_positions)
            dcg = sum(1 / math.log2(p + 2) for p in hit_positions)
            ideal = sum(1 / math.log2(p + 2) for p in range(min(len(targets), k)))
            hit_ideal = sum(1 / math.log2(p + 2) for p in range(hits))
            per_k.append(
                [
                    hits / len(targets),
                    dcg / ideal,
                    hits / k,
                    float(hits > 0),
                    dcg / hit_ideal if hits else 0.0,
                ]
            )
        metrics.append(per_k)
    top_items = torch.tensor(tops, dtype=torch.int64).reshape(len(scores), max_k)
    return top_items, torch.tensor(metrics, dtype=torch.float32).reshape(len(scores), len(ks), 5)


def to_csr(rows: list[list[int]]) -> CSR:
    """CSR that keeps each row's order and duplicates, so kernels cannot rely on sorted rows."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return CSR(torch.from_numpy(indptr), torch.from_numpy(indices))


def make_case(seed, n_users, n_items, dim, kind="int", dtype=torch.float32):
    """Embeddings whose dot products are exact (small integers or multiples of 1/8), with
    exclusions, targets, users without targets and users with every item excluded."""
    rng = np.random.default_rng(seed)
    if kind == "int":
        user = rng.integers(-2, 3, (n_users, dim))
        item = rng.integers(-2, 3, (n_items, dim))
    else:
        user = rng.integers(-16, 17, (n_users, dim)) / 8
        item = rng.integers(-16, 17, (n_items, dim)) / 8
    exclude_rows, target_rows = [], []
    for u in range(n_users):
        roll = rng.random()
        if roll < 0.05:
            excl = list(range(n_items))
        else:
            excl = rng.integers(0, n_items, rng.integers(0, max(2, n_items // 3))).tolist()
        targ = [] if roll > 0.9 else rng.integers(0, n_items, rng.integers(1, 6)).tolist()
        if excl and targ and rng.random() < 0.5:
            targ.append(excl[0])  # an excluded target can never be a hit
        exclude_rows.append(excl)
        target_rows.append(targ)
    return (
        torch.tensor(user, dtype=dtype).reshape(n_users, dim),
        torch.tensor(item, dtype=dtype).reshape(n_items, dim),
        exclude_rows,
        target_rows,
    )


def run_op(user, item, exclude_rows, target_rows, ks, device):
    exclude, target = to_csr(exclude_rows).to(device), to_csr(target_rows).to(device)
    top, metrics = torch.ops.sgfd_ext.topk_eval(
        user.to(device),
        item.to(device),
        exclude.indptr,
        exclude.indices,
        target.indptr,
        target.indices,
        list(ks),
    )
    return top.cpu(), metrics.cpu()


def assert_same(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6, equal_nan=True)


CASES = [
    # (seed, users, items, dim, ks, kind)
    (0, 1, 1, 1, [1], "int"),
    (1, 1, 7, 3, [1, 3, 7], "int"),
    (2, 9, 40, 2, [5, 10, 20], "int"),
    (3, 33, 300, 4, [10, 20], "int"),
    (4, 70, 25, 8, [25, 3], "dyadic"),
    (5, 131, 150, 16, [10, 20, 50], "dyadic"),
    (6, 67, 2100, 8, [10, 20], "int"),
    (7, 20, 4500, 64, [1, 20, 100], "dyadic"),
    (8, 5, 60, 1, [40, 60], "int"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c[0]}")
def test_op_matches_plain_python(case, device):
    seed, n_users, n_items, dim, ks, kind = case
    user, item, exclude_rows, target_rows = make_case(seed, n_users, n_items, dim, kind)
    want = slow_topk_eval(user, item, exclude_rows, target_rows, ks)
    assert_same(run_op(user, item, exclude_rows, target_rows, ks, device), want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: f"seed{c[0]}")
def test_reference_matches_plain_python(case, device):
    seed, n_users, n_items, dim, ks, kind = case
    user, item, exclude_rows, target_rows = make_case(seed, n_users, n_items, dim, kind)
    want = slow_topk_eval(user, item, exclude_rows, target_rows, ks)
    exclude, target = to_csr(exclude_rows).to(device), to_csr(target_rows).to(device)
    got = topk_eval_reference(user.to(device), item.to(device), exclude, target, ks)
    assert_same((got[0].cpu(), got[1].cpu()), want)


def test_many_tiles_and_user_blocks_on_one_thread():
    # On one thread the CPU kernel splits 1,100 users x 1,500 items into several user blocks
    # and item tiles, with partial ones at both ends.
    user, item, exclude_rows, target_rows = make_case(12, 1100, 1500, 8, "int")
    want = slow_topk_eval(user, item, exclude_rows, target_rows, [10, 20])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = run_op(user, item, exclude_rows, target_rows, [10, 20], "cpu")
    finally:
        torch.set_num_threads(threads)
    assert_same(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_and_large_k(device):
    user, item, exclude_rows, target_rows = make_case(11, 12, 2600, 6, "dyadic", torch.float64)
    ks = [2500, 10]
    want = slow_topk_eval(user, item, exclude_rows, target_rows, ks)
    assert_same(run_op(user, item, exclude_rows, target_rows, ks, device), want)


@pytest.mark.parametrize("device", DEVICES)
def test_ties_break_to_lower_index(device):
    user = torch.ones(2, 4)
    item = torch.zeros(50, 4)
    item[[7, 30, 41], :] = 1.0
    exclude_rows, target_rows = [[30], []], [[41, 0], [3]]
    top, metrics = run_op(user, item, exclude_rows, target_rows, [5], device)
    assert top.tolist() == [[7, 41, 0, 1, 2], [7, 30, 41, 0, 1]]
    # user 0: hits at positions 1 (item 41) and 2 (item 0) out of two targets
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    torch.testing.assert_close(
        metrics[0, 0], torch.tensor([1.0, dcg / ideal, 2 / 5, 1.0, dcg / ideal]), rtol=1e-6, atol=0
    )
    assert metrics[1, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("device", DEVICES)
def test_continuous_scores_agree_with_reference(device):
    gen = torch.Generator().manual_seed(0)
    user, item = torch.randn(150, 32, generator=gen), torch.randn(2500, 32, generator=gen)
    rng = np.random.default_rng(0)
    exclude_rows = [rng.integers(0, 2500, 30).tolist() for _ in range(150)]
    target_rows = [rng.integers(0, 2500, 4).tolist() for _ in range(150)]
    top, metrics = run_op(user, item, exclude_rows, target_rows, [10, 20], device)
    ref_top, ref_metrics = topk_eval_reference(
        user, item, to_csr(exclude_rows), to_csr(target_rows), [10, 20]
    )
    scores = user.double() @ item.double().T
    torch.testing.assert_close(scores.gather(1, top), scores.gather(1, ref_top), atol=1e-4, rtol=0)
    same = (top == ref_top).all(1)
    assert same.float().mean() > 0.9
    torch.testing.assert_close(metrics[same], ref_metrics[same], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs_and_zero_dim(device):
    user, item, exclude_rows, target_rows = make_case(13, 40, 70, 6)
    want = slow_topk_eval(user, item, exclude_rows, target_rows, [7])
    strided = (user.T.contiguous().T, item.repeat_interleave(2, dim=1)[:, ::2])
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    assert_same(run_op(*strided, exclude_rows, target_rows, [7], device), want)

    empty_user, empty_item = user[:, :0], item[:, :0]  # every score is 0: ranked by index
    want = slow_topk_eval(empty_user, empty_item, exclude_rows, target_rows, [7])
    assert_same(run_op(empty_user, empty_item, exclude_rows, target_rows, [7], device), want)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    user, item = torch.empty(0, 8), torch.randn(30, 8)
    top, metrics = run_op(user, item, [], [], [5, 10], device)
    assert top.shape == (0, 10) and metrics.shape == (0, 2, 5)
    ref_top, ref_metrics = topk_eval_reference(user, item, to_csr([]), to_csr([]), [5, 10])
    assert ref_top.shape == (0, 10) and ref_metrics.shape == (0, 2, 5)


def test_wrapper_dispatches_to_both_kernels():
    user, item, exclude_rows, target_rows = make_case(21, 10, 90, 4)
    exclude, target = to_csr(exclude_rows), to_csr(target_rows)
    want = slow_topk_eval(user, item, exclude_rows, target_rows, [5, 10])
    for name in ("fused", "reference"):
        with use_kernels(name):
            assert_same(topk_eval(user, item, exclude, target, (5, 10)), want)


def test_grad_inputs_are_accepted():
    user, item, exclude_rows, target_rows = make_case(22, 6, 40, 3)
    top, metrics = topk_eval(
        user.requires_grad_(), item, to_csr(exclude_rows), to_csr(target_rows), [4]
    )
    assert not metrics.requires_grad
    assert_same((top, metrics), slow_topk_eval(user.detach(), item, exclude_rows, target_rows, [4]))


def test_opcheck():
    user, item, exclude_rows, target_rows = make_case(23, 9, 50, 4)
    # opcheck compares outputs without equal_nan, so every user gets a target here.
    target_rows = [rows or [u] for u, rows in enumerate(target_rows)]
    exclude, target = to_csr(exclude_rows), to_csr(target_rows)
    args = (user, item, exclude.indptr, exclude.indices, target.indptr, target.indices, [3, 10])
    torch.library.opcheck(torch.ops.sgfd_ext.topk_eval.default, args)


def error_args():
    user, item = torch.ones(3, 4), torch.ones(10, 4)
    indptr, indices = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 5, 9])
    return [user, item, indptr, indices, indptr.clone(), indices.clone(), [5]]


def with_nan(t):
    t = t.clone()
    t[0, 0] = math.nan
    return t


def with_inf(t):
    t = t.clone()
    t[-1, -1] = math.inf
    return t


ERRORS = {
    "nan_user": (0, with_nan, "user_emb contains NaN or infinite"),
    "inf_item": (1, with_inf, "item_emb contains NaN or infinite"),
    "half": (0, lambda t: t.half(), "float32 or float64"),
    "dtype_mismatch": (1, lambda t: t.double(), "dtype"),
    "dim_mismatch": (1, lambda t: torch.ones(10, 5), "embedding size|share d"),
    "indptr_decreasing": (2, lambda t: torch.tensor([0, 2, 1, 3]), "non-decreasing"),
    "indptr_length": (2, lambda t: torch.tensor([0, 1, 3]), "one entry per user"),
    "indptr_start": (4, lambda t: torch.tensor([1, 1, 2, 3]), "start at 0|run from 0"),
    "indptr_end": (4, lambda t: torch.tensor([0, 1, 2, 2]), "end at|run from 0"),
    "index_high": (3, lambda t: torch.tensor([0, 5, 10]), r"lie in \[0, 10\)"),
    "index_negative": (5, lambda t: torch.tensor([0, -1, 9]), r"lie in \[0, 10\)"),
    "index_dtype": (3, lambda t: t.int(), "int64"),
    "k_zero": (6, lambda ks: [0], "every K"),
    "k_above_items": (6, lambda ks: [11], "every K"),
    "no_k": (6, lambda ks: [], "at least one K|every K"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(ERRORS))
def test_op_rejects_bad_input(name, device):
    position, change, message = ERRORS[name]
    args = error_args()
    args[position] = change(args[position])
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    with pytest.raises(RuntimeError, match=message):
        torch.ops.sgfd_ext.topk_eval(*args)


@pytest.mark.parametrize("name", list(ERRORS))
def test_reference_rejects_bad_input(name):
    position, change, message = ERRORS[name]
    args = error_args()
    args[position] = change(args[position])
    user, item, e_ptr, e_idx, t_ptr, t_idx, ks = args
    with pytest.raises(ValueError, match=message):
        topk_eval_reference(user, item, CSR(e_ptr, e_idx), CSR(t_ptr, t_idx), ks)
