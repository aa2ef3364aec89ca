"""Contrastive part loss (the paper's recipe).

For a part proposal (any node of the part hierarchy), an anchor and a positive are drawn
from inside it; the positive must be more similar (cosine / temperature) than a set of
negatives from outside it: uniform ones, 3D-hard ones (nearest to the anchor in space)
and feature-hard ones (most similar to the anchor in feature space). InfoNCE with the
positive as the target class, computed both ways (anchor <-> positive swapped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossConfig:
    proposals_per_shape: int = 8
    pairs_per_proposal: int = 64
    uniform_negatives: int = 64
    spatial_negatives: int = 64
    feature_negatives: int = 64
    # 3D-hard negatives are drawn from this many nearest outside points.
    spatial_pool: int = 128
    initial_temperature: float = 0.07


class Temperature(nn.Module):
    """Learnable softmax temperature, stored as its log (`log_tau`)."""

    def __init__(self, initial: float = 0.07):
        super().__init__()
        self.log_tau = nn.Parameter(torch.tensor(math.log(initial)))

    def forward(self) -> torch.Tensor:
        return self.log_tau.clamp(math.log(0.01), math.log(1.0)).exp()


def _sample_rows(mask: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n indices per row of a (R, Q) bool mask, uniformly with replacement -> (R, n)."""
    return torch.multinomial(mask.float(), n, replacement=True, generator=generator)


def part_contrastive_loss(
    features: torch.Tensor,
    positions: torch.Tensor,
    labels: torch.Tensor,
    proposals: torch.Tensor,
    tau: torch.Tensor,
    cfg: LossConfig = LossConfig(),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """Loss for one shape.

    features (Q, F) raw field values at the query points, positions (Q, 3), labels (Q,)
    leaf part per point, proposals (P, L) bool leaf membership of every part proposal.
    Returns (scalar loss, stats dict).
    """
    device = features.device
    z = F.normalize(features, dim=-1)
    member = proposals.to(device)[:, labels]  # (P, Q)
    n_in = member.sum(1)
    valid = (n_in >= 2) & (n_in <= member.shape[1] - 1)
    idx = torch.nonzero(valid).flatten()
    if idx.numel() == 0:
        return features.sum() * 0.0, {"proposals": 0}
    k = min(cfg.proposals_per_shape, idx.numel())
    pick = idx[torch.randperm(idx.numel(), generator=generator, device="cpu")[:k].to(device)]
    inside = member[pick]  # (K, Q)
    a = cfg.pairs_per_proposal
    anchors = _sample_rows(inside, a, generator)  # (K, A)
    positives = _sample_rows(inside, a, generator)
    # Both ways: rows are (anchor, positive) and (positive, anchor).
    rows_a = torch.cat([anchors, positives], 1).reshape(-1)  # (K*2A,)
    rows_p = torch.cat([positives, anchors], 1).reshape(-1)
    row_inside = inside.repeat_interleave(2 * a, dim=0)  # (R, Q)
    outside = ~row_inside

    # Every logit is an entry of one (R, Q) similarity matrix: gathering from it is much
    # cheaper, forwards and backwards, than gathering (R, M, F) negative features.
    sim = z[rows_a] @ z.T  # (R, Q)
    negs = []
    if cfg.uniform_negatives:
        negs.append(_sample_rows(outside, cfg.uniform_negatives, generator))
    if cfg.spatial_negatives:
        d = torch.cdist(positions[rows_a], positions)  # (R, Q)
        d = d.masked_fill(row_inside, float("inf"))
        pool = min(cfg.spatial_pool, d.shape[1])
        near = torch.topk(d, pool, dim=1, largest=False).indices  # (R, pool)
        ok = torch.gather(outside, 1, near)
        choice = _sample_rows(ok | ~ok.any(1, keepdim=True), cfg.spatial_negatives, generator)
        negs.append(torch.gather(near, 1, choice))
    if cfg.feature_negatives:
        with torch.no_grad():
            s = sim.detach().masked_fill(row_inside, -float("inf"))
            n_out = int(outside.sum(1).min())
            kf = min(cfg.feature_negatives, max(n_out, 1))
            hard = torch.topk(s, kf, dim=1).indices
        negs.append(hard)
    neg = torch.cat(negs, 1)  # (R, M)

    pos_logit = sim.gather(1, rows_p[:, None])  # (R, 1)
    neg_logit = sim.gather(1, neg)  # (R, M)
    logits = torch.cat([pos_logit, neg_logit], 1) / tau
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=device)
    loss = F.cross_entropy(logits, target)
    with torch.no_grad():
        acc = (pos_logit > neg_logit.max(1, keepdim=True).values).float().mean()
    return loss, {"proposals": k, "top1": float(acc)}
