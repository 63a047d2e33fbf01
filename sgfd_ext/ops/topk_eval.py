"""TEMPORARY placeholder: replaced by the fused op."""
import torch

METRIC_NAMES = ("recall", "ndcg", "precision", "hit", "ndcg_hitnorm")


def topk_eval_reference(user_emb, item_emb, exclude, target, ks):
    B, I = user_emb.shape[0], item_emb.shape[0]
    kmax = max(ks)
    scores = user_emb @ item_emb.T
    rows = torch.repeat_interleave(torch.arange(B), exclude.indptr.diff())
    scores[rows, exclude.indices] = float("-inf")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :kmax]
    valid = torch.gather(scores, 1, order) > float("-inf")
    top = torch.where(valid, order, torch.full_like(order, -1))
    tmask = torch.zeros(B, I, dtype=torch.bool)
    trows = torch.repeat_interleave(torch.arange(B), target.indptr.diff())
    tmask[trows, target.indices] = True
    hits = torch.gather(tmask, 1, order) & valid
    n_t = target.indptr.diff().float()
    disc = 1.0 / torch.log2(torch.arange(kmax, dtype=torch.float32) + 2)
    out = torch.empty(B, len(ks), 5)
    for j, k in enumerate(ks):
        h = hits[:, :k].float()
        nh = h.sum(1)
        dcg = (h * disc[:k]).sum(1)
        cdisc = torch.cat([torch.zeros(1), disc.cumsum(0)])
        idcg = cdisc[torch.clamp(n_t, max=k).long()]
        ihit = cdisc[nh.long()]
        out[:, j, 0] = nh / n_t
        out[:, j, 1] = dcg / idcg
        out[:, j, 2] = nh / k
        out[:, j, 3] = (nh > 0).float()
        out[:, j, 4] = torch.where(nh > 0, dcg / ihit.clamp(min=1e-12), torch.zeros_like(nh))
    out[n_t == 0] = float("nan")
    return top, out


topk_eval = topk_eval_reference
