"""Fused BPR loss against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch

import sgfd_ext  # noqa: F401  (loads the operators)
from sgfd_ext.ops import use_kernels
from sgfd_ext.ops.bpr import bpr_loss, bpr_loss_reference

OPS = torch.ops.sgfd_ext
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

# (users, items, d, batch): empty batch, one triple, widths that are not multiples of the SIMD
# width, more triples than rows (so indices repeat).
SHAPES = [(5, 5, 8, 0), (3, 4, 3, 1), (20, 30, 17, 50), (40, 25, 65, 300), (200, 150, 128, 512)]


def make_inputs(n_users, n_items, d, B, *, dtype=torch.float32, device="cpu", grad=True):
    gen = torch.Generator().manual_seed(n_users * 100 + n_items * 10 + d + B)
    user_table = torch.randn(n_users, d, generator=gen, dtype=torch.float64).to(device, dtype)
    item_table = torch.randn(n_items, d, generator=gen, dtype=torch.float64).to(device, dtype)
    users = torch.randint(0, n_users, (B,), generator=gen).to(device)
    pos = torch.randint(0, n_items, (B,), generator=gen).to(device)
    neg = torch.randint(0, n_items, (B,), generator=gen).to(device)
    return user_table.requires_grad_(grad), item_table.requires_grad_(grad), users, pos, neg


def value_and_grads(fn, tables, users, pos, neg, reg, scale=2.5):
    loss = fn(*tables, users, pos, neg, reg)
    grads = torch.autograd.grad(scale * loss, [t for t in tables if t.requires_grad])
    return loss.detach(), grads


def assert_matches(tables, users, pos, neg, reg, rtol, atol):
    loss, grads = value_and_grads(bpr_loss, tables, users, pos, neg, reg)
    loss_ref, grads_ref = value_and_grads(bpr_loss_reference, tables, users, pos, neg, reg)
    torch.testing.assert_close(loss, loss_ref, rtol=rtol, atol=atol)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape, dtype):
    user_table, item_table, users, pos, neg = make_inputs(*shape, dtype=dtype)
    tol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-10, 1e-12)
    assert_matches((user_table, item_table), users, pos, neg, 0.05, *tol)


def test_repeated_indices():
    user_table, item_table, _, _, _ = make_inputs(6, 7, 19, 0, dtype=torch.float64)
    users = torch.tensor([2, 2, 2, 2, 0, 2, 5, 5])
    pos = torch.tensor([1, 1, 3, 6, 1, 1, 0, 3])
    neg = torch.tensor([1, 3, 1, 1, 6, 0, 3, 0])  # also pos == neg within a triple
    assert_matches((user_table, item_table), users, pos, neg, 0.3, 1e-10, 1e-12)


def test_same_result_for_any_thread_count():
    user_table, item_table, users, pos, neg = make_inputs(50, 40, 33, 4000)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(
                value_and_grads(bpr_loss, (user_table, item_table), users, pos, neg, 0.1)
            )
    finally:
        torch.set_num_threads(previous)
    loss0, grads0 = results[0]
    for loss, grads in results[1:]:
        assert torch.equal(loss, loss0)
        assert all(torch.equal(g, g0) for g, g0 in zip(grads, grads0, strict=True))


def test_one_table_without_grad():
    user_table, item_table, users, pos, neg = make_inputs(20, 30, 17, 50, dtype=torch.float64)
    user_table.requires_grad_(False)
    assert_matches((user_table, item_table), users, pos, neg, 0.1, 1e-10, 1e-12)


def test_tables_as_views_of_one_matrix():
    # A graph propagation often returns users and items stacked in one matrix.
    stacked = torch.randn(45, 12, dtype=torch.float64, requires_grad=True)
    users, pos, neg = (
        torch.randint(0, 20, (64,)),
        torch.randint(0, 25, (64,)),
        torch.arange(64) % 25,
    )
    grads = [
        torch.autograd.grad(fn(stacked[:20], stacked[20:], users, pos, neg, 0.2), stacked)[0]
        for fn in (bpr_loss, bpr_loss_reference)
    ]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_non_contiguous_tables():
    user_base = torch.randn(12, 20, dtype=torch.float64, requires_grad=True)
    item_base = torch.randn(12, 30, dtype=torch.float64, requires_grad=True)
    users, pos, neg = (
        torch.randint(0, 20, (40,)),
        torch.randint(0, 30, (40,)),
        torch.arange(40) % 30,
    )
    tables = (user_base.t(), item_base.t())
    grads = [
        torch.autograd.grad(fn(*tables, users, pos, neg, 0.2), (user_base, item_base))
        for fn in (bpr_loss, bpr_loss_reference)
    ]
    for g, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    torch.library.opcheck(OPS.bpr_loss.default, (*tables, users, pos, neg, 0.2))


def test_gradcheck_float64():
    user_table, item_table, users, pos, neg = make_inputs(4, 5, 3, 6, dtype=torch.float64)
    users[1] = users[0]
    pos[2] = neg[2]
    assert torch.autograd.gradcheck(
        lambda u, i: bpr_loss(u, i, users, pos, neg, 0.3), (user_table, item_table)
    )


def test_empty_batch_is_zero():
    user_table, item_table, users, pos, neg = make_inputs(5, 5, 8, 0)
    loss = bpr_loss(user_table, item_table, users, pos, neg, 0.1)
    assert loss.item() == 0.0
    grads = torch.autograd.grad(loss, (user_table, item_table))
    assert all(torch.count_nonzero(g) == 0 for g in grads)
    assert grads[0].shape == user_table.shape and grads[1].shape == item_table.shape


@pytest.mark.parametrize(
    "arg,value,match",
    [
        ("users", 9, r"users\[2\] = 9 is out of range for user_table with 4 rows"),
        ("users", -1, r"users\[2\] = -1 is out of range"),
        ("pos", 5, r"pos\[2\] = 5 is out of range for item_table with 5 rows"),
        ("neg", 70, r"neg\[2\] = 70 is out of range for item_table with 5 rows"),
    ],
)
def test_index_out_of_range_raises(arg, value, match):
    user_table, item_table, users, pos, neg = make_inputs(4, 5, 3, 6)
    named = {"users": users, "pos": pos, "neg": neg}
    named[arg][2] = value
    with pytest.raises(IndexError, match=match):
        bpr_loss(user_table, item_table, users, pos, neg, 0.1)


def test_non_finite_row_raises():
    user_table, item_table, _, _, _ = make_inputs(4, 5, 3, 0, grad=False)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 3, 4])
    item_table[4, 1] = float("nan")
    with pytest.raises(RuntimeError, match=r"item_table row 4 \(neg\[2\]\) contains NaN"):
        bpr_loss(user_table, item_table, users, pos, neg, 0.1)
    user_table[1, 0] = float("inf")
    with pytest.raises(RuntimeError, match=r"user_table row 1 \(users\[1\]\) contains NaN"):
        bpr_loss(user_table, item_table, users, pos, neg, 0.1)


def test_unused_non_finite_row_is_ignored():
    user_table, item_table, _, _, _ = make_inputs(4, 5, 3, 0, grad=False)
    user_table[3] = float("nan")
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3])
    loss = bpr_loss(user_table, item_table, users, pos, neg, 0.1)
    torch.testing.assert_close(
        loss, bpr_loss_reference(user_table, item_table, users, pos, neg, 0.1)
    )


def test_bad_arguments_raise():
    user_table, item_table, users, pos, neg = make_inputs(4, 5, 3, 6)
    with pytest.raises(RuntimeError, match="users must be Long"):
        bpr_loss(user_table, item_table, users.int(), pos, neg, 0.1)
    with pytest.raises(RuntimeError, match="same length"):
        bpr_loss(user_table, item_table, users[:5], pos, neg, 0.1)
    with pytest.raises(RuntimeError, match="same width"):
        bpr_loss(user_table, item_table[:, :2], users, pos, neg, 0.1)
    with pytest.raises(RuntimeError, match="item_table must be"):
        bpr_loss(user_table, item_table.double(), users, pos, neg, 0.1)


def test_reference_kernels_selectable():
    user_table, item_table, users, pos, neg = make_inputs(4, 5, 3, 6)
    tables = (user_table.detach().bfloat16(), item_table.detach().bfloat16())
    with pytest.raises(RuntimeError, match="CPU kernel supports float32 and float64"):
        bpr_loss(*tables, users, pos, neg, 0.1)
    with use_kernels("reference"):
        loss = bpr_loss(*tables, users, pos, neg, 0.1)
    assert torch.equal(loss, bpr_loss_reference(*tables, users, pos, neg, 0.1))


@pytest.mark.parametrize("shape", [(5, 5, 8, 0), (20, 30, 17, 50)])
def test_opcheck(shape):
    torch.library.opcheck(OPS.bpr_loss.default, (*make_inputs(*shape), 0.1))


def test_opcheck_backward():
    user_table, item_table, users, pos, neg = make_inputs(20, 30, 17, 50, grad=False)
    _, sig = OPS.bpr_loss(user_table, item_table, users, pos, neg, 0.1)
    for mask in ([True, True], [False, True]):
        args = (torch.tensor(1.5), sig, user_table, item_table, users, pos, neg, 0.1, mask)
        torch.library.opcheck(OPS.bpr_loss_backward.default, args)


@CUDA
@pytest.mark.parametrize("shape", [(3, 4, 3, 1), (40, 25, 65, 300), (200, 150, 128, 512)])
def test_cuda_matches_reference(shape):
    user_table, item_table, users, pos, neg = make_inputs(*shape, device="cuda")
    assert_matches((user_table, item_table), users, pos, neg, 0.05, 1e-5, 1e-6)
    torch.library.opcheck(OPS.bpr_loss.default, (user_table, item_table, users, pos, neg, 0.05))


@CUDA
def test_cuda_bfloat16_close_to_float32():
    user_table, item_table, users, pos, neg = make_inputs(200, 150, 128, 512, device="cuda")
    loss_ref, grads_ref = value_and_grads(
        bpr_loss_reference, (user_table, item_table), users, pos, neg, 0.05
    )
    low = [t.detach().bfloat16().requires_grad_() for t in (user_table, item_table)]
    loss, grads = value_and_grads(bpr_loss, low, users, pos, neg, 0.05)
    torch.testing.assert_close(loss.float(), loss_ref, rtol=2e-2, atol=1e-2)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g.float(), g_ref, rtol=5e-2, atol=2e-2)


@CUDA
def test_cuda_errors():
    user_table, item_table, users, pos, neg = make_inputs(4, 5, 3, 6, device="cuda", grad=False)
    bad = pos.clone()
    bad[3] = 5
    with pytest.raises(IndexError, match=r"pos\[3\] = 5 is out of range"):
        bpr_loss(user_table, item_table, users, bad, neg, 0.1)
    user_table[users[0]] = float("nan")
    with pytest.raises(RuntimeError, match="user_table row .* contains NaN"):
        bpr_loss(user_table, item_table, users, pos, neg, 0.1)
