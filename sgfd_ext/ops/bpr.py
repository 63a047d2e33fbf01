"""Fused BPR loss over embedding tables, with the L2 penalty on the rows of each triple.

For an empty batch the loss is defined as 0 (and every gradient is zero). The fused op raises on
an out-of-range index and on NaN or infinity in a row the batch reads; other rows are not read.

Limitation: the fused op has no double backward; the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sgfd_ext.ops.kernels import get_kernels

__all__ = ["bpr_loss", "bpr_loss_reference"]


def bpr_loss_reference(
    user_table: Tensor, item_table: Tensor, users: Tensor, pos: Tensor, neg: Tensor, reg: float
) -> Tensor:
    """Plain PyTorch BPR loss: ``mean softplus(s_neg - s_pos) + reg * mean(|u|²+|i⁺|²+|i⁻|²) / 2``.

    It is the specification of the fused op and runs on any dtype and device.
    """
    u, i_pos, i_neg = user_table[users], item_table[pos], item_table[neg]
    margin = (u * (i_pos - i_neg)).sum(dim=1)
    penalty = u.square().sum() + i_pos.square().sum() + i_neg.square().sum()
    count = max(users.numel(), 1)
    return -F.logsigmoid(margin).sum() / count + reg * penalty / (2 * count)


def bpr_loss(
    user_table: Tensor, item_table: Tensor, users: Tensor, pos: Tensor, neg: Tensor, reg: float
) -> Tensor:
    """BPR loss of the triples ``(users[b], pos[b], neg[b])`` (int64 indices into the tables).

    The tables may be raw embeddings or the output of a graph propagation; their gradients are
    dense tensors of the tables' shapes.
    """
    if get_kernels() == "reference":
        return bpr_loss_reference(user_table, item_table, users, pos, neg, reg)
    loss, _ = torch.ops.sgfd_ext.bpr_loss.default(user_table, item_table, users, pos, neg, reg)
    return loss


def _sig_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


@torch.library.register_fake("sgfd_ext::bpr_loss")
def _bpr_loss_fake(user_table, item_table, users, pos, neg, reg):
    sig = user_table.new_empty((users.shape[0],), dtype=_sig_dtype(user_table.dtype))
    return user_table.new_empty(()), sig


@torch.library.register_fake("sgfd_ext::bpr_loss_backward")
def _bpr_loss_backward_fake(grad, sig, user_table, item_table, users, pos, neg, reg, output_mask):
    grad_user = user_table.new_empty(user_table.shape if output_mask[0] else (0,))
    grad_item = item_table.new_empty(item_table.shape if output_mask[1] else (0,))
    return grad_user, grad_item


def _setup_context(ctx, inputs, output):
    user_table, item_table, users, pos, neg, reg = inputs
    _loss, sig = output
    ctx.mark_non_differentiable(sig)
    ctx.save_for_backward(sig, user_table, item_table, users, pos, neg)
    ctx.reg = reg


def _backward(ctx, grad, _grad_sig):
    sig, user_table, item_table, users, pos, neg = ctx.saved_tensors
    mask = [bool(n) for n in ctx.needs_input_grad[:2]]
    if not any(mask):
        return None, None, None, None, None, None
    grad_user, grad_item = torch.ops.sgfd_ext.bpr_loss_backward.default(
        grad, sig, user_table, item_table, users, pos, neg, ctx.reg, mask
    )
    return (
        grad_user if mask[0] else None,
        grad_item if mask[1] else None,
        None,
        None,
        None,
        None,
    )


torch.library.register_autograd("sgfd_ext::bpr_loss", _backward, setup_context=_setup_context)
