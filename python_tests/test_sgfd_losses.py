"""The SGFD losses against values worked out by hand on a two-item, one-modality case."""

import math

import pytest
import torch

from sgfd_ext.config import SGFDConfig
from sgfd_ext.sgfd import SGFD, teacher_widths


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def _make(cfg: SGFDConfig) -> SGFD:
    """One modality with 2-d features, d=2, 2 classes; every layer an identity map."""
    feats = {"m": torch.tensor([[3.0, 4.0], [1.0, -1.0]])}
    labels = torch.tensor([0, 1])
    sg = SGFD(feats, labels, n_classes=2, dim=2, cfg=cfg)
    with torch.no_grad():
        for layer in sg.teachers["m"].layers:
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        # Student: W = [[1, 0], [0, 2]] (D x d), b = 0.
        sg.students["m"].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        sg.students["m"].bias.zero_()
        sg.classifiers["m"].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        sg.classifiers["m"].bias.zero_()
        sg.fusion.weight.copy_(torch.eye(2))
        sg.fusion.bias.zero_()
        sg.fusion_classifier.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
        sg.fusion_classifier.bias.zero_()
    return sg


def _by_hand(slope=0.01, tau=2.0):
    # Teacher: identity, leaky ReLU, normalise.
    t1 = [0.6, 0.8]
    t2 = [1 / math.sqrt(1 + slope**2), -slope / math.sqrt(1 + slope**2)]
    # Student: x W = [3, 8] and [1, -2]; leaky ReLU, normalise.
    s1 = [3 / math.sqrt(73), 8 / math.sqrt(73)]
    n2 = math.sqrt(1 + (2 * slope) ** 2)
    s2 = [1 / n2, -2 * slope / n2]
    fd = sum((a - b) ** 2 for a, b in zip(s1 + s2, t1 + t2)) / 4

    ce_m = (-math.log(_softmax(t1)[0]) - math.log(_softmax(t2)[1])) / 2
    # Fusion: identity then leaky ReLU; classifier doubles.
    h1, h2 = t1, [t2[0], slope * t2[1]]
    ce_f = (-math.log(_softmax([2 * v for v in h1])[0])
            - math.log(_softmax([2 * v for v in h2])[1])) / 2

    ld = 0.0
    for t, s in ((t1, s1), (t2, s2)):
        pt = _softmax([v / tau for v in t])
        ps = _softmax([v / tau for v in s])
        ld += sum(abs(a - b) for a, b in zip(pt, ps))
    ld /= 4
    return ce_m, ce_f, fd, ld


def test_teacher_widths_follow_reference_chain():
    assert teacher_widths(4096, 128, 4) == [4096, 1024, 256, 128]
    assert teacher_widths(4096, 64, 4) == [4096, 1024, 256, 64]
    assert teacher_widths(768, 64, 2) == [768, 384, 192, 96, 64]
    assert teacher_widths(48, 64, 4) == [48, 64]


def test_teacher_uses_hidden_activation_by_default_and_reference_optionally():
    x = torch.randn(5, 64)
    cfg = SGFDConfig()
    t = SGFD({"m": x}, torch.zeros(5, dtype=torch.long), 2, 4, cfg).teachers["m"]
    assert len(t.layers) == 2  # 64 -> 16 -> 4
    with torch.no_grad():
        for layer in t.layers:
            layer.weight.fill_(-1.0)
            layer.bias.zero_()
    h_act = t.hidden(torch.ones(1, 64))
    t.hidden_activation = False
    h_lin = t.hidden(torch.ones(1, 64))
    assert torch.all(h_act > h_lin)


@pytest.mark.parametrize("which", ["all", "ce", "fd", "ld"])
def test_losses_match_hand_computed_values(which):
    tau, lce, lkd = 2.0, 0.3, 0.7
    ce_m, ce_f, fd, ld = _by_hand(tau=tau)
    cfg = SGFDConfig(lambda_ce=lce, lambda_kd=lkd, tau=tau,
                     use_ce=which in ("all", "ce"), use_fd=which in ("all", "fd"),
                     use_ld=which in ("all", "ld"))
    sg = _make(cfg)
    students, loss = sg(torch.tensor([0, 1]))
    expected = {
        "all": lce * (ce_m + ce_f) + lkd * (fd + ld),
        "ce": lce * (ce_m + ce_f),
        "fd": lkd * fd,
        "ld": lkd * ld,
    }[which]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert students["m"][0].tolist() == pytest.approx([3 / math.sqrt(73), 8 / math.sqrt(73)])


def test_fusion_and_double_softmax_switches():
    tau = 2.0
    ce_m, _, _, _ = _by_hand(tau=tau)
    sg = _make(SGFDConfig(lambda_ce=1.0, lambda_kd=0.0, tau=tau, use_fusion=False))
    assert sg(torch.tensor([0, 1]))[1].item() == pytest.approx(ce_m, rel=1e-5)

    sg = _make(SGFDConfig(lambda_ce=1.0, lambda_kd=0.0, tau=tau, use_fusion=False,
                          reference_double_softmax=True))
    t1 = [0.6, 0.8]
    p = _softmax(t1)
    first = -math.log(_softmax(p)[0])
    got = sg(torch.tensor([0]))[1].item()
    assert got == pytest.approx(first, rel=1e-5)


def test_l2_response_distance():
    tau = 2.0
    sg = _make(SGFDConfig(lambda_ce=0.0, lambda_kd=1.0, tau=tau, use_fd=False, ld_distance="l2"))
    t1, s1 = [0.6, 0.8], [3 / math.sqrt(73), 8 / math.sqrt(73)]
    pt, ps = _softmax([v / tau for v in t1]), _softmax([v / tau for v in s1])
    expected = sum((a - b) ** 2 for a, b in zip(pt, ps)) / 2
    assert sg(torch.tensor([0]))[1].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_teacher_controls_teacher_gradient_from_distillation(detach):
    sg = _make(SGFDConfig(lambda_ce=0.0, lambda_kd=1.0, detach_teacher=detach))
    _, loss = sg(torch.tensor([0, 1]))
    loss.backward()
    g = sg.teachers["m"].layers[0].weight.grad
    if detach:
        assert g is None or torch.count_nonzero(g) == 0
    else:
        assert g is not None and torch.count_nonzero(g) > 0
    assert torch.count_nonzero(sg.students["m"].weight.grad) > 0


def test_deep_student_has_teacher_architecture():
    x = torch.randn(6, 300)
    sg = SGFD({"a": x, "b": x[:, :100]}, torch.arange(6) % 3, 3, 16,
              SGFDConfig(deep_student=True))
    assert len(sg.students["a"].layers) == len(sg.teachers["a"].layers)
    feats, loss = sg(torch.tensor([0, 2, 5]))
    assert feats["a"].shape == (3, 16) and feats["b"].shape == (3, 16)
    assert torch.isfinite(loss)



def test_repeated_items_weigh_by_their_rows():
    tau = 2.0
    sg = _make(SGFDConfig(lambda_ce=0.3, lambda_kd=0.7, tau=tau))
    _, loss_rows = sg(torch.tensor([1, 0, 1, 1]))
    _, loss_0 = sg(torch.tensor([0]))
    _, loss_1 = sg(torch.tensor([1]))
    # Every term is a mean over rows except the fusion CE, which is too; so the loss of the
    # batch is the row-weighted mix of the one-item losses.
    assert loss_rows.item() == pytest.approx((loss_0.item() + 3 * loss_1.item()) / 4, rel=1e-5)


def test_single_layer_teacher_is_reported(caplog):
    features = {"wide": torch.randn(5, 64), "narrow": torch.randn(5, 12)}
    with caplog.at_level("WARNING", logger="sgfd_ext.sgfd"):
        SGFD(features, torch.tensor([0, 1, 0, 1, 0]), 2, 8, SGFDConfig())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "the narrow teacher is a single layer (12 -> 8" in messages[0]
