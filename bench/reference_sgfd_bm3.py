"""SGFD-BM3 training loss written the way the published reference code is structured.

Same math as ``BM3.training_loss`` with the SGFD extractor, but every step works on whole
tables: the student runs on every item for every batch (then rows are picked), the shared
predictor projects all users and all items, dropout masks whole tables, and everything is
plain autograd (no fused operator). The teacher runs on the batch's items, as in the reference.
It is the baseline of ``bench_train_epoch.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sgfd_ext.models.bm3 import BM3
from sgfd_ext.sgfd import SGFD


def _alignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


def _student_all_items(sgfd: SGFD, modality: str) -> torch.Tensor:
    """Student features of every item, by plain autograd."""
    student = sgfd.students[modality]
    z = torch.addmm(student.bias, sgfd.feature(modality), student.weight)
    return F.normalize(F.leaky_relu(z, student.negative_slope), dim=1)


def _sgfd_loss(sgfd: SGFD, items: torch.Tensor, students: dict[str, torch.Tensor]):
    """The weighted SGFD loss on the batch's items, from the full student tables."""
    cfg = sgfd.cfg
    y = sgfd.labels[items]
    teachers, fd_losses, ld_losses = {}, [], []
    for m in sgfd.modalities:
        t = sgfd.teachers[m](sgfd.feature(m)[items])
        t_kd = t.detach() if cfg.detach_teacher else t
        s = students[m][items]
        teachers[m] = t
        fd_losses.append(F.mse_loss(s, t_kd))
        ld_losses.append(sgfd._response_distance(m, t_kd, s))

    loss = torch.zeros((), device=items.device)
    if cfg.use_ce:
        loss = loss + cfg.lambda_ce * sgfd._semantic_loss(teachers, y)
    kd = torch.zeros((), device=items.device)
    if cfg.use_ld:
        kd = kd + torch.stack(ld_losses).mean()
    if cfg.use_fd:
        kd = kd + torch.stack(fd_losses).mean()
    return loss + cfg.lambda_kd * kd


def reference_training_loss(model: BM3, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """BM3 + SGFD loss of one batch, computed over whole tables as the reference code does."""
    users, items = batch["users"], batch["items"]
    sgfd: SGFD = model.extractor.sgfd
    p = model.cfg.dropout

    u_all, i_all = model.propagated()
    students = {m: _student_all_items(sgfd, m) for m in sgfd.modalities}
    with torch.no_grad():
        u_target_all = F.dropout(u_all.detach().clone(), p)
        i_target_all = F.dropout(i_all.detach().clone(), p)
        f_target_all = {m: F.dropout(s.detach().clone(), p) for m, s in students.items()}
    u_online_all, i_online_all = model.predictor(u_all), model.predictor(i_all)

    u_online, i_online = u_online_all[users], i_online_all[items]
    u_target, i_target = u_target_all[users], i_target_all[items]
    loss = _alignment(u_online, i_target) + _alignment(i_online, u_target)
    cl = torch.zeros((), device=u_all.device)
    for m, s in students.items():
        f_online = model.predictor(s)[items]
        cl = cl + _alignment(f_online, i_target) + _alignment(f_online, f_target_all[m][items])
    reg = (u_all.norm() + i_all.norm()) / model.n_items
    aux = _sgfd_loss(sgfd, items, students)
    return loss + model.cfg.reg_weight * reg + model.cfg.cl_weight * cl + aux
