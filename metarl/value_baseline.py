"""The linear feature baseline of Duan et al. 2016 (arXiv 1604.06778, appendix).

MAML-RL (Finn et al. 2017, appendix A.2) uses it for the inner policy-gradient
step. It is rllab's ``LinearFeatureBaseline`` (also pytorch-maml-rl
``maml_rl/baseline.py``): a ridge regression of the discounted return on
hand-made features of the observation and the time step, refitted on each
batch of episodes. Here one fit per task is solved in a single batched call,
and ``torch.linalg.solve_ex`` replaces the ``torch.lstsq`` that PyTorch removed
(pytorch-maml-rl issue #72).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metarl.episodes import Episodes, discounted_returns

__all__ = ["MAX_REG_TRIES", "LinearFeatureBaseline", "fit_linear", "linear_features"]

# rllab and pytorch-maml-rl give up after 5 tries; float32 observations squared
# can put F^T F near 1e12, where a 1e-5 ridge term is lost to rounding, so a
# few more decades are allowed before declaring the fit hopeless.
MAX_REG_TRIES = 10


def linear_features(observations: Tensor, mask: Tensor) -> Tensor:
    """Features ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]`` per step, ``[..., T, E, 2D + 4]``.

    The feature map is rllab's (Duan et al. 2016), without its clipping of the
    observations to [-10, 10]; ``t`` counts steps from 0 along the time axis
    (-3 of ``observations``, -2 of ``mask``). Masked steps get all-zero
    features so they drop out of the least-squares fit.

    Args:
        observations: ``[..., T, E, D]``.
        mask: ``[..., T, E]``, one on steps an episode took.
    """
    if observations.shape[:-1] != mask.shape:
        raise ValueError(
            f"observations {tuple(observations.shape)} and mask {tuple(mask.shape)} "
            "must agree on every axis but the last"
        )
    mask = mask.unsqueeze(-1).to(observations.dtype)
    horizon = observations.shape[-3]
    # [T, 1, 1] broadcasts over episodes, features and any leading task axes.
    time = torch.arange(horizon, dtype=observations.dtype, device=observations.device)
    time = (time / 100.0).view(horizon, 1, 1).expand(*mask.shape)
    features = torch.cat(
        [observations, observations**2, time, time**2, time**3, torch.ones_like(time)], dim=-1
    )
    return features * mask


def fit_linear(features: Tensor, targets: Tensor, mask: Tensor, reg_coeff: float = 1e-5) -> Tensor:
    """Ridge-regression weights ``[..., F]``, one independent fit per leading index.

    Solves ``(F^T F + reg I) w = F^T R`` over the unmasked steps of each task in
    float64. ``reg`` starts at ``reg_coeff`` and is multiplied by 10, for the
    tasks whose solve was singular or not finite only, up to
    :data:`MAX_REG_TRIES` times (rllab's ``LinearFeatureBaseline.fit``).

    Args:
        features: ``[..., T, E, F]``.
        targets: ``[..., T, E]``, the values to regress (discounted returns).
        mask: ``[..., T, E]``; masked steps are ignored.
        reg_coeff: the first ridge coefficient, positive.

    Returns:
        Weights ``[..., F]`` in float64.

    Raises:
        ValueError: on bad shapes or a non-positive ``reg_coeff``.
        RuntimeError: when no ridge coefficient gives a finite solution (for
            example because the targets hold NaN).
    """
    if not reg_coeff > 0:
        raise ValueError(f"reg_coeff must be positive (it is multiplied by 10), got {reg_coeff}")
    if features.shape[:-1] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"features {tuple(features.shape)} must be targets {tuple(targets.shape)} "
            f"and mask {tuple(mask.shape)} plus a feature axis"
        )
    # The baseline is a constant to the policy gradient: no graph through it.
    mask = mask.detach().to(torch.float64)
    x = features.detach().to(torch.float64) * mask.unsqueeze(-1)
    y = targets.detach().to(torch.float64) * mask
    num_features = x.shape[-1]
    x = x.flatten(-3, -2)  # [..., T*E, F]
    y = y.flatten(-2, -1).unsqueeze(-1)  # [..., T*E, 1]
    gram = x.mT @ x
    rhs = x.mT @ y
    eye = torch.eye(num_features, dtype=torch.float64, device=x.device)

    # One ridge coefficient per task, so a batched fit equals the per-task fits.
    reg = torch.full(gram.shape[:-2], reg_coeff, dtype=torch.float64, device=x.device)
    weights = torch.zeros_like(rhs)
    todo = torch.ones(gram.shape[:-2], dtype=torch.bool, device=x.device)
    for _ in range(MAX_REG_TRIES):
        # The ridge system is symmetric positive definite: Cholesky, not LU. Batched LU
        # (torch 2.13, MKL) was seen to abort with "Pivots given to lu_solve must all be
        # >= 1" on Ant's systems, whose never-touching bodies give all-zero features.
        factor, info = torch.linalg.cholesky_ex(gram + reg[..., None, None] * eye)
        solution = torch.cholesky_solve(rhs, factor)
        ok = (info == 0) & torch.isfinite(solution).all(dim=(-2, -1))
        newly = todo & ok
        weights = torch.where(newly[..., None, None], solution, weights)
        todo = todo & ~ok
        if not todo.any():
            return weights.squeeze(-1)
        reg = torch.where(todo, reg * 10.0, reg)
    bad = todo.nonzero().tolist() if todo.dim() else "the only task"
    raise RuntimeError(
        f"linear baseline fit failed for task(s) {bad}: no finite solution with ridge "
        f"coefficients up to {reg_coeff * 10.0 ** (MAX_REG_TRIES - 1):g}; check the "
        "observations and returns for NaN or inf"
    )


class LinearFeatureBaseline:
    """Per-task linear value estimate on :func:`linear_features` (Duan et al. 2016).

    Usage: ``values = LinearFeatureBaseline().fit_predict(episodes, gamma)`` for
    one task (``[T, E]``) or a stack of tasks (``[K, T, E]``, one fit per task).
    Inputs are never modified; results have the episodes' dtype.

    Args:
        reg_coeff: first ridge coefficient of the fit.
    """

    def __init__(self, reg_coeff: float = 1e-5) -> None:
        if not reg_coeff > 0:
            raise ValueError(f"reg_coeff must be positive, got {reg_coeff}")
        self.reg_coeff = reg_coeff
        self.weights: Tensor | None = None
        """Fitted float64 weights ``[..., F]``; ``None`` before :meth:`fit`."""

    def fit(self, episodes: Episodes, returns: Tensor) -> LinearFeatureBaseline:
        """Fit the weights to ``returns`` (``[..., T, E]``) and return ``self``."""
        features = linear_features(episodes.observations.to(torch.float64), episodes.mask)
        self.weights = fit_linear(features, returns, episodes.mask, self.reg_coeff)
        return self

    def predict(self, episodes: Episodes) -> Tensor:
        """Baseline values ``[..., T, E]``, zero on masked steps."""
        if self.weights is None:
            raise RuntimeError("LinearFeatureBaseline.predict called before fit")
        features = linear_features(episodes.observations.detach().to(torch.float64), episodes.mask)
        if features.shape[-1] != self.weights.shape[-1]:
            raise ValueError(
                f"baseline was fitted on {self.weights.shape[-1]} features, "
                f"these episodes give {features.shape[-1]} (different observation size)"
            )
        if features.shape[:-3] != self.weights.shape[:-1]:
            # Broadcasting would silently apply one task's fit to another.
            raise ValueError(
                f"baseline was fitted on task axes {tuple(self.weights.shape[:-1])}, "
                f"these episodes have {tuple(features.shape[:-3])}"
            )
        values = torch.einsum("...tef,...f->...te", features, self.weights)
        return (values * episodes.mask.to(torch.float64)).to(episodes.rewards.dtype)

    def fit_predict(self, episodes: Episodes, gamma: float) -> Tensor:
        """Fit on the discounted returns of ``episodes`` and predict on the same episodes."""
        returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
        return self.fit(episodes, returns).predict(episodes)
