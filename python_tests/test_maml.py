"""MAML: the loss on a hand-worked case, the norm clip, and ranking against brute force."""

import math

import numpy as np
import pytest
import torch
from synthetic import tiny_dataset

from sgfd_ext.config import TrainConfig
from sgfd_ext.csr import CSR
from sgfd_ext.models import build_model
from sgfd_ext.models.extractors import FeatureExtractor, SGFDExtractor
from sgfd_ext.models.maml import MAML, MAMLConfig
from sgfd_ext.trainer import Trainer

U = [[0.6, 0.0], [0.0, -0.5]]
Q = [[0.5, 0.5], [-0.3, 0.4], [0.1, -0.2]]
X = [[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]
W_USER, B_USER = [[1.0, 0.0], [0.0, 1.0]], [0.1, -0.2]
W_ITEM, W_FEAT = [[0.5, 0.0], [0.0, 0.5]], [[0.0, 1.0], [1.0, 0.0]]
W_OUT, B_OUT = [[1.0, -1.0], [0.5, 2.0]], [0.0, 0.3]
MLP_OUT_SCALE, MLP_OUT_BIAS = 0.9, [0.1, -0.1]


class _ConstantAux(FeatureExtractor):
    """Identity features plus a fixed auxiliary loss."""

    def __init__(self, features: torch.Tensor, aux: float):
        super().__init__()
        self.modalities, self.out_dims = ["m"], {"m": features.shape[1]}
        self.register_buffer("x", features)
        self.aux = aux

    def forward(self, items):
        return self.features(items), torch.tensor(self.aux)

    def features(self, items=None):
        return {"m": self.x if items is None else self.x[items]}


def _matvec(w, v):
    return [sum(a * b for a, b in zip(row, v)) for row in w]


def _hand_model(cfg: MAMLConfig, aux: float) -> MAML:
    model = MAML(2, 3, np.zeros((0, 2), dtype=np.int64), 2, _ConstantAux(torch.tensor(X), aux),
                 cfg)
    t = torch.tensor
    with torch.no_grad():
        model.user_embedding.copy_(t(U))
        model.item_embedding.copy_(t(Q))
        model.mlp[0].weight.copy_(torch.eye(2))
        model.mlp[0].bias.zero_()
        model.mlp[3].weight.copy_(MLP_OUT_SCALE * torch.eye(2))
        model.mlp[3].bias.copy_(t(MLP_OUT_BIAS))
        model.attn_user.weight.copy_(t(W_USER))
        model.attn_user.bias.copy_(t(B_USER))
        model.attn_item.weight.copy_(t(W_ITEM))
        model.attn_feature.weight.copy_(t(W_FEAT))
        model.attn_out.weight.copy_(t(W_OUT))
        model.attn_out.bias.copy_(t(B_OUT))
    return model


def _hand_loss(margin, feature_weight, cov_weight, aux):
    proj = []
    for x in X:
        n = math.hypot(*x)
        z = [MLP_OUT_SCALE * max(v / n, 0.0) + b for v, b in zip(x, MLP_OUT_BIAS)]
        scale = max(1.0, math.hypot(*z))
        proj.append([v / scale for v in z])

    def dist(u, i):
        pre = [a + b + c + e for a, b, c, e in zip(_matvec(W_USER, U[u]), B_USER,
                                                   _matvec(W_ITEM, Q[i]), _matvec(W_FEAT, proj[i]))]
        logits = [v + b for v, b in zip(_matvec(W_OUT, [math.tanh(v) for v in pre]), B_OUT)]
        e = [math.exp(v) for v in logits]
        return sum(2 * w / sum(e) * (a - b) ** 2 for w, a, b in zip(e, U[u], Q[i]))

    metric = 0.0
    for u, pos, negs in ((0, 0, (1, 2)), (1, 2, (0, 1))):
        d_pos, d_neg = dist(u, pos), [dist(u, j) for j in negs]
        hinge = max(0.0, d_pos - min(d_neg) + margin)
        assert hinge > 0
        impostors = sum(d_pos - d + margin > 0 for d in d_neg) / len(d_neg)
        metric += hinge * math.log(1 + impostors * 3) / 2

    feature = sum((a - b) ** 2 for p, q in zip(proj, Q) for a, b in zip(p, q)) / 3
    rows = U + Q
    mean = [sum(r[j] for r in rows) / 5 for j in range(2)]
    c01 = sum((r[0] - mean[0]) * (r[1] - mean[1]) for r in rows) / 5
    return metric + feature_weight * feature + cov_weight * 2 * c01**2 + aux


@pytest.mark.parametrize("aux", [0.0, 0.25])
def test_loss_matches_hand_computation(aux):
    # The margin puts one of user 1's two negatives inside it and the other outside.
    cfg = MAMLConfig(n_negatives=2, margin=1.38, mlp_hidden=2, dropout=0.0, attention_hidden=2,
                     feature_weight=0.5, cov_weight=5.0)
    model = _hand_model(cfg, aux)
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 2]),
             "negatives": torch.tensor([[1, 2], [0, 1]])}
    expected = _hand_loss(1.38, 0.5, 5.0, aux)
    assert model.training_loss(batch).item() == pytest.approx(expected, rel=1e-5)


def test_after_step_clips_embeddings_to_the_unit_ball():
    model = MAML(2, 3, np.zeros((0, 2), dtype=np.int64), 2,
                 _ConstantAux(torch.tensor(X), 0.0), MAMLConfig())
    with torch.no_grad():
        model.user_embedding.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
    model.after_step()
    torch.testing.assert_close(model.user_embedding.data, torch.tensor([[0.6, 0.8], [0.3, 0.4]]),
                               rtol=1e-5, atol=1e-6)


def test_rank_equals_brute_force_ranking():
    ds = tiny_dataset(n_users=25, n_items=60, dims=(20, 10))
    cfg = TrainConfig(model="maml", sgfd=False, embedding_dim=8, model_args={"attention_hidden": 5})
    torch.manual_seed(0)
    model = build_model(ds, cfg, torch.device("cpu")).double().eval()
    exclude, target = ds.csr("train"), ds.csr("test")
    ks = (5, 10)

    with torch.no_grad():
        state = model.ranking_state()
        users = torch.arange(ds.n_users)
        top, metrics = model.rank(state, users, exclude, target, ks)

        projection = model.project(model.extractor.features(None))
        scores = -model.distance(model.user_embedding[:, None], model.item_embedding[None],
                                 projection[None])
    rows = torch.repeat_interleave(users, exclude.indptr.diff())
    scores[rows, exclude.indices] = -math.inf
    expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :10]
    assert torch.equal(top, expected)
    assert metrics.shape == (ds.n_users, 2, 5)
    hits = [len(set(expected[u, :10].tolist())
                & set(target.indices[target.indptr[u]:target.indptr[u + 1]].tolist()))
            for u in range(ds.n_users)]
    n_target = target.indptr.diff()
    recall = [h / n for h, n in zip(hits, n_target.tolist()) if n]
    assert metrics[n_target > 0, 1, 0].tolist() == pytest.approx(recall)


@pytest.mark.parametrize("sgfd", [False, True])
def test_training_keeps_embeddings_clipped(sgfd):
    ds = tiny_dataset()
    cfg = TrainConfig(model="maml", sgfd=sgfd, epochs=2, batch_size=32, lr=0.05,
                      embedding_dim=8)
    trainer = Trainer(ds, cfg)
    model = trainer.model
    assert isinstance(model.extractor, SGFDExtractor) == sgfd
    expected_in = 2 * 8 if sgfd else 24 + 12
    assert model.mlp[0].in_features == expected_in
    state = trainer.fit()
    assert all(math.isfinite(h["loss"]) for h in state.history)
    for table in (model.user_embedding, model.item_embedding):
        assert table.norm(dim=1).max().item() <= 1.0 + 1e-5
    assert 0.0 <= trainer.evaluate("valid")["ndcg@20"] <= 1.0


def test_sampler_draws_the_configured_negatives():
    ds = tiny_dataset()
    cfg = TrainConfig(model="maml", sgfd=False, batch_size=16, embedding_dim=4,
                      model_args={"n_negatives": 3})
    trainer = Trainer(ds, cfg)
    batch = next(iter(trainer.sampler))
    assert batch["negatives"].shape == (16, 3)
    train = ds.csr("train")
    for u, negs in zip(batch["users"].tolist(), batch["negatives"].tolist()):
        known = set(train.indices[train.indptr[u]:train.indptr[u + 1]].tolist())
        assert not known & set(negs)


def test_rank_uses_exclusions_of_the_given_rows():
    ds = tiny_dataset(n_users=6, n_items=30)
    cfg = TrainConfig(model="maml", sgfd=False, embedding_dim=4)
    model = build_model(ds, cfg, torch.device("cpu")).eval()
    state = model.ranking_state()
    all_items = CSR.from_pairs(np.repeat([0, 1], 30), np.tile(np.arange(30), 2), 2)
    top, metrics = model.rank(state, torch.tensor([3, 4]), all_items, CSR(
        torch.tensor([0, 1, 1]), torch.tensor([2])), (5,))
    assert top.eq(-1).all()
    assert metrics[0, 0, 0].item() == 0.0 and torch.isnan(metrics[1]).all()
