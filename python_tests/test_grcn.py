"""GRCN: the loss on a hand-worked case, edge pruning, graph helpers and SGFD plumbing."""

import math

import numpy as np
import pytest
import torch
from synthetic import tiny_dataset

from sgfd_ext.config import SGFDConfig, TrainConfig
from sgfd_ext.graph import BipartiteEdges, segment_softmax
from sgfd_ext.models import MODELS, build_model
from sgfd_ext.models.extractors import SGFDExtractor
from sgfd_ext.models.grcn import GRCN, GRCNConfig
from sgfd_ext.sgfd import SGFD
from sgfd_ext.trainer import Trainer

TRAIN = np.array([[0, 0], [0, 1], [1, 1], [1, 2]])


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _add(a, b, s=1.0):
    return [x + s * y for x, y in zip(a, b)]


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def _hand_model(cfg: GRCNConfig, extra_modality: bool = False) -> GRCN:
    """2 users, 3 items, d=2, identity content projection, fixed embeddings."""
    feats = {"m": torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 1.0]])}
    if extra_modality:
        feats["n"] = torch.tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 1.0]])
    extractor = GRCN.own_extractor(feats, 2, cfg)
    model = GRCN(2, 3, TRAIN, 2, extractor, cfg)
    with torch.no_grad():
        for proj in extractor.projections.values():
            proj[0].weight.copy_(torch.eye(2))
            proj[0].bias.zero_()
        model.preference["m"].copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        if extra_modality:
            model.preference["n"].copy_(torch.tensor([[1.0, 1.0], [-1.0, 1.0]]))
        model.id_embedding.copy_(
            torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, -1.0]]))
    return model


def _hand_loss(reg_weight: float) -> float:
    f = [_unit([3, 4]), _unit([1, 0]), _unit([1, 1])]
    p = [_unit([1, 0]), _unit([0, 2])]
    items_of = {0: [0, 1], 1: [1, 2]}
    users_of = {0: [0], 1: [0, 1], 2: [1]}

    # One routing iteration.
    for u in (0, 1):
        a = _softmax([_dot(p[u], f[i]) for i in items_of[u]])
        agg = [0.0, 0.0]
        for w, i in zip(a, items_of[u]):
            agg = _add(agg, f[i], w)
        p[u] = _unit(_add(p[u], agg))

    # Edge weights: softmax of affinities over the receiving node's neighbours.
    to_user = {(u, i): w for u in (0, 1)
               for i, w in zip(items_of[u], _softmax([_dot(p[u], f[i]) for i in items_of[u]]))}
    to_item = {(u, i): w for i in (0, 1, 2)
               for u, w in zip(users_of[i], _softmax([_dot(p[u], f[i]) for u in users_of[i]]))}

    def conv(user_x, item_x):
        users = [_add(user_x[u], [sum(to_user[(u, i)] * item_x[i][j] for i in items_of[u])
                                  for j in range(2)]) for u in (0, 1)]
        items = [_add(item_x[i], [sum(to_item[(u, i)] * user_x[u][j] for u in users_of[i])
                                  for j in range(2)]) for i in (0, 1, 2)]
        return users, items

    content_u, content_i = conv(p, f)
    ids = [_unit(v) for v in ([1, 0], [0, 1], [1, 1], [2, 0], [0, -1])]
    id_u, id_i = conv(ids[:2], ids[2:])
    rep_u = [id_u[u] + content_u[u] for u in (0, 1)]
    rep_i = [id_i[i] + content_i[i] for i in (0, 1, 2)]

    # Batch: (user 0, item 0, negative 2), (user 1, item 2, negative 0).
    batch = [(0, 0, 2), (1, 2, 0)]
    bpr = sum(math.log1p(math.exp(-(_dot(rep_u[u], rep_i[i]) - _dot(rep_u[u], rep_i[j]))))
              for u, i, j in batch) / 2
    raw_id = [[1, 0], [0, 1], [1, 1], [2, 0], [0, -1]]

    def mean_sq(rows):
        return sum(x * x for r in rows for x in r) / (2 * len(rows))

    reg = (mean_sq([raw_id[0], raw_id[1]]) + mean_sq([raw_id[2], raw_id[4]])
           + mean_sq([raw_id[4], raw_id[2]]) + mean_sq([[1, 0], [0, 2]]))
    return bpr + reg_weight * reg


def test_loss_matches_hand_computation():
    cfg = GRCNConfig(n_routing=1, n_layers=1, weight_mode="max", reg_weight=0.1)
    model = _hand_model(cfg)
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 2]),
             "negatives": torch.tensor([[2], [0]])}
    assert model.training_loss(batch).item() == pytest.approx(_hand_loss(0.1), rel=1e-5)


def test_confidence_prunes_the_edges_a_node_sends():
    model = _hand_model(GRCNConfig(weight_mode="confid", pruning=True), extra_modality=True)
    with torch.no_grad():
        model.confidence[3] = -1.0  # item 1 (node 2 + 1) distrusted in both modalities
    feats = model.extractor.features(None)
    _, (to_user, to_item) = model.refine(feats)
    sent_by_item1 = model.edges.item == 1
    assert torch.all(to_user[sent_by_item1] == 0)
    assert torch.all(to_user[~sent_by_item1] > 0) and torch.all(to_item > 0)

    model.cfg.pruning = False
    _, (to_user, _) = model.refine(feats)
    assert torch.all(to_user[sent_by_item1] < 0)


def test_weight_modes_combine_modalities():
    per_mod = []
    for mode in ("max", "mean"):
        model = _hand_model(GRCNConfig(weight_mode=mode), extra_modality=True)
        feats = model.extractor.features(None)
        _, combined = model.refine(feats)
        if not per_mod:
            for m in ("m", "n"):
                f = torch.nn.functional.normalize(feats[m], dim=1)
                per_mod.append(model.edge_weights(model.route(model.preference[m], f), f))
        for direction in (0, 1):
            stacked = torch.stack([w[direction] for w in per_mod], 1)
            expected = stacked.amax(1) if mode == "max" else stacked.mean(1)
            torch.testing.assert_close(combined[direction], expected)


def test_segment_softmax_matches_dense_softmax():
    g = torch.Generator().manual_seed(0)
    seg = torch.tensor([2, 0, 2, 2, 1, 0])
    scores = torch.randn(6, generator=g) * 30
    out = segment_softmax(scores, seg, 4)
    for s in range(3):
        torch.testing.assert_close(out[seg == s], torch.softmax(scores[seg == s], 0))


def test_bipartite_products_match_dense_forms_and_gradients():
    train = np.array([[0, 3], [2, 0], [0, 1], [1, 3], [2, 3], [0, 3], [3, 2]])  # one duplicate
    edges = BipartiteEdges(train, 4, 5)
    assert list(zip(edges.user.tolist(), edges.item.tolist())) == [
        (0, 1), (0, 3), (1, 3), (2, 0), (2, 3), (3, 2)]
    g = torch.Generator().manual_seed(1)
    users = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(4, 5, dtype=torch.float64)
    dense[edges.user, edges.item] = weight.detach()

    torch.testing.assert_close(edges.dot(users, items),
                               (users[edges.user] * items[edges.item]).sum(1))
    torch.testing.assert_close(edges.to_users(weight, items), dense @ items)
    torch.testing.assert_close(edges.to_items(weight, users), dense.T @ users)
    assert torch.autograd.gradcheck(edges.dot, (users, items))
    assert torch.autograd.gradcheck(edges.to_users, (weight, items))
    assert torch.autograd.gradcheck(edges.to_items, (weight, users))


def test_sgfd_forward_all_equals_batch_forward():
    g = torch.Generator().manual_seed(0)
    feats = {"a": torch.randn(8, 40, generator=g), "b": torch.randn(8, 20, generator=g)}
    sg = SGFD(feats, torch.arange(8) % 3, 3, 6, SGFDConfig(lambda_ce=0.5, lambda_kd=2.0))
    items = torch.tensor([0, 2, 2, 5])
    students, loss = sg.forward_all(items)
    batch_students, batch_loss = sg(items)
    torch.testing.assert_close(loss, batch_loss)
    for m in feats:
        torch.testing.assert_close(students[m], sg.student_features(None)[m])
        torch.testing.assert_close(students[m][items], batch_students[m])


def test_grcn_with_and_without_sgfd_trains_and_ranks():
    ds = tiny_dataset()
    assert "grcn" in MODELS
    for sgfd in (False, True):
        cfg = TrainConfig(model="grcn", sgfd=sgfd, epochs=2, batch_size=64, embedding_dim=8,
                          model_args={"n_routing": 2})
        trainer = Trainer(ds, cfg)
        assert isinstance(trainer.model.extractor, SGFDExtractor) == sgfd
        state = trainer.fit()
        assert state.epoch == 2 and all(math.isfinite(h["loss"]) for h in state.history)
        metrics = trainer.evaluate("test")
        assert 0.0 <= metrics["recall@20"] <= 1.0 and metrics["users"] > 0


def test_sgfd_loss_reaches_grcn_objective():
    ds = tiny_dataset()
    cfg = TrainConfig(model="grcn", sgfd=True, embedding_dim=8)
    torch.manual_seed(0)
    model = build_model(ds, cfg, torch.device("cpu"))
    batch = {"users": torch.tensor([0, 1, 2]), "items": torch.tensor([3, 4, 5]),
             "negatives": torch.tensor([[6], [7], [3]])}
    with_aux = model.training_loss(batch)
    model.extractor.sgfd.cfg.lambda_ce = model.extractor.sgfd.cfg.lambda_kd = 0.0
    without = model.training_loss(batch)
    assert with_aux.item() > without.item()
    with_aux.backward()
    assert model.extractor.sgfd.teachers["m0"].layers[0].weight.grad is not None
