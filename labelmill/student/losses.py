"""Multi-label losses on soft targets for the student classifier.

Both losses take ``logits: (N, K)``, ``targets: (N, K)`` with values in [0, 1] (aggregated
soft labels) and optional ``row_weights: (N,)``. The per-element losses are averaged over the
K labels of a row, then combined as a weighted mean over rows:
``sum_i w_i * l_i / sum_i w_i`` (plain mean when ``row_weights`` is None).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_inputs(
    logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate shapes/values; return targets and weights cast to the logits' dtype/device."""
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        got = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point torch.Tensor, got {got}")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape (N, K) with N, K >= 1, got {tuple(logits.shape)}")
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} does not match logits shape "
            f"{tuple(logits.shape)}"
        )
    targets = targets.to(device=logits.device, dtype=logits.dtype)
    bad = ~((targets >= 0.0) & (targets <= 1.0))  # NaN fails both comparisons
    if bool(bad.any()):
        raise ValueError(f"targets values must lie in [0, 1], got {float(targets[bad][0])!r}")
    if row_weights is None:
        return targets, None
    if not isinstance(row_weights, torch.Tensor):
        raise ValueError(f"row_weights must be a torch.Tensor, got {type(row_weights).__name__}")
    if row_weights.shape != logits.shape[:1]:
        raise ValueError(
            f"row_weights must have shape ({logits.shape[0]},), got {tuple(row_weights.shape)}"
        )
    row_weights = row_weights.to(device=logits.device, dtype=logits.dtype)
    bad_w = ~((row_weights >= 0.0) & torch.isfinite(row_weights))
    if bool(bad_w.any()):
        raise ValueError(
            f"row_weights must be finite and >= 0, got {float(row_weights[bad_w][0])!r}"
        )
    total = float(row_weights.sum())
    if total <= 0.0:
        raise ValueError(f"row_weights must have a positive sum, got {total!r}")
    return targets, row_weights


def _reduce(elementwise: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
    """(N, K) element losses -> scalar: mean over labels, weighted mean over rows."""
    per_row = elementwise.mean(dim=1)
    if row_weights is None:
        return per_row.mean()
    return (per_row * row_weights).sum() / row_weights.sum()


def soft_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy with logits against soft targets.

    Shapes: logits (N, K), targets (N, K) in [0, 1], row_weights (N,) >= 0 or None -> scalar.
    """
    targets, row_weights = _check_inputs(logits, targets, row_weights)
    elementwise = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _reduce(elementwise, row_weights)


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    row_weights: torch.Tensor | None = None,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al., 2021, "Asymmetric Loss For Multi-Label Classification").

    Adapted to soft targets y in [0, 1]. With p = sigmoid(logit) and the shifted probability
    p_m = max(p - clip, 0) used on the negative side, each element costs
    ``-y * (1 - p)**gamma_pos * log(p) - (1 - y) * p_m**gamma_neg * log(1 - p_m)``.
    With gamma_pos = gamma_neg = clip = 0 this is exactly the soft BCE.

    Shapes: logits (N, K), targets (N, K) in [0, 1], row_weights (N,) >= 0 or None -> scalar.
    ``eps`` floors the arguments of log/pow to keep values and gradients finite.
    """
    targets, row_weights = _check_inputs(logits, targets, row_weights)
    for name, gamma in (("gamma_pos", gamma_pos), ("gamma_neg", gamma_neg)):
        if not (isinstance(gamma, int | float) and math.isfinite(gamma) and gamma >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {gamma!r}")
    if not (isinstance(clip, int | float) and 0.0 <= clip < 1.0):
        raise ValueError(f"clip must lie in [0, 1), got {clip!r}")
    if not (isinstance(eps, int | float) and 0.0 < eps < 1e-2):
        raise ValueError(f"eps must lie in (0, 0.01), got {eps!r}")

    prob = torch.sigmoid(logits)
    log_pos = F.logsigmoid(logits)  # log(p), stable for large |logit|
    pos_focus = torch.sigmoid(-logits).clamp(min=eps).pow(gamma_pos)  # (1 - p)**gamma_pos
    if clip > 0.0:
        prob_m = (prob - clip).clamp(min=0.0)
        log_neg = torch.log((1.0 - prob_m).clamp(min=eps))
    else:
        prob_m = prob
        log_neg = F.logsigmoid(-logits)  # log(1 - p)
    # The clamp only matters where prob_m == 0, and there log_neg == 0, so the value is exact;
    # it keeps pow's gradient finite for 0 < gamma_neg < 1.
    neg_focus = prob_m.clamp(min=eps).pow(gamma_neg)
    elementwise = -(targets * pos_focus * log_pos + (1.0 - targets) * neg_focus * log_neg)
    return _reduce(elementwise, row_weights)
