"""The inner loop of MAML for RL, as pure functions (Finn et al. 2017, section 5.3).

One adaptation step for task ``i`` is ``phi_i = theta - lr * grad L_i(theta)``
with ``L_i`` a policy-gradient surrogate on task ``i``'s pre-adaptation
episodes. All tasks are adapted at once: the shared ``theta`` is expanded to
per-task copies ``[K, ...]``, every task's log-probabilities come from one
``torch.func.vmap`` over ``functional_call``, and a single
``torch.autograd.grad`` of the summed per-task losses with respect to the
expanded copies yields each task's own gradient (task ``k``'s loss depends on
copy ``k`` only). With ``create_graph=True`` that gradient stays differentiable
in ``theta``, which is what the second-order meta-gradient needs.

Parameters are "stacked" when every tensor has a leading task axis of size
``K`` in front of the policy's own parameter shape, "shared" otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from metarl.episodes import Episodes, gae
from metarl.objectives import (
    EXPLORING_OBJECTIVES,
    OBJECTIVES,
    MetaBatch,
    Surrogate,
    exploration_surrogate,
    gaussian_log_prob,
    inner_surrogate,
    reinforce_surrogate,
)
from metarl.policies import Params, stacked_tasks

if TYPE_CHECKING:
    from metarl.config import Config

__all__ = [
    "AdaptationSettings",
    "StepSize",
    "ValueBaseline",
    "adapt",
    "adapt_for_sampling",
    "adapt_steps",
    "adapt_with_advantages",
    "adapted_stats",
    "compute_advantages",
    "expand_params",
    "exploration_loss",
    "inner_loss",
    "is_stacked",
    "make_meta_batch",
    "normalize_advantages",
    "policy_log_probs",
    "policy_stats",
    "step_sizes",
]


StepSize = float | Mapping[str, Tensor | float]
"""One inner step's size: one float for every tensor, or one (learnable) scalar per parameter
tensor by name (MAML++'s per-layer rates; CAVIA's names the context alone)."""


class ValueBaseline(Protocol):
    """What the adaptation needs of a baseline (``metarl.value_baseline.LinearFeatureBaseline``)."""

    def fit_predict(self, episodes: Episodes, gamma: float) -> Tensor: ...


@dataclass(frozen=True)
class AdaptationSettings:
    """How the meta-optimizers adapt theta to each task (the config's ``adaptation`` + ``objective``).

    Attributes:
        lr: inner step size, one for every step or a sequence with one per step.
        steps: inner gradient steps, all on the same pre-adaptation episodes.
        first_order: drop the second derivatives through the inner step (FOMAML).
        objective: inner surrogate, ``maml | dice | lvc`` (see :mod:`metarl.objectives`).
        step_weights: MAML++'s multi-step loss, the weight of the post-adaptation surrogate
            after each inner step (one per step); ``None`` weighs the last step alone.
        tail_fraction: the share of the meta-batch's tasks, those of lowest post-adaptation
            return, the meta-loss averages over (the config's ``tail_fraction``; 1: all).
    """

    lr: float | Sequence[float] = 0.1
    steps: int = 1
    first_order: bool = False
    objective: str = "maml"
    step_weights: Sequence[float] | None = None
    tail_fraction: float = 1.0

    def __post_init__(self) -> None:
        step_sizes(self.lr, self.steps)  # validates lr and steps
        if not 0 < self.tail_fraction <= 1:
            raise ValueError(f"tail_fraction must be in (0, 1], got {self.tail_fraction!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if not isinstance(self.lr, (int, float)):
            object.__setattr__(self, "lr", tuple(float(x) for x in self.lr))
        if self.step_weights is not None:
            weights = tuple(float(w) for w in self.step_weights)
            if len(weights) != self.steps or not all(w >= 0 for w in weights):
                raise ValueError(
                    f"step_weights must hold {self.steps} non-negative weights, got {weights}"
                )
            object.__setattr__(self, "step_weights", weights)

    @classmethod
    def from_config(cls, config: Config) -> AdaptationSettings:
        """The settings of a run's config (its ``adaptation`` and ``objective``)."""
        return cls(
            lr=config.adaptation.lr,
            steps=config.adaptation.steps,
            first_order=config.adaptation.first_order,
            objective=config.objective,
            tail_fraction=config.tail_fraction,
        )

    def evaluation_lr(self, step: int) -> float:
        """The step size of evaluation step ``step`` (0-based), one fresh sample per step.

        The trained steps' own sizes first; after them half the last one, as the
        paper evaluates (0.1 for the first step, 0.05 after).
        """
        lrs = step_sizes(self.lr, self.steps)
        return lrs[step] if step < len(lrs) else lrs[-1] / 2


def step_sizes(lr: float | Sequence[float], steps: int) -> list[float]:
    """The step size of each of ``steps`` inner steps.

    ``lr`` is one float for all steps or a sequence with exactly one per step
    (the paper evaluates with 0.1 for the first step and 0.05 after it).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    lrs = [float(lr)] * steps if isinstance(lr, (int, float)) else [float(x) for x in lr]
    if len(lrs) != steps:
        raise ValueError(f"lr has {len(lrs)} entries but steps is {steps}; give one per step")
    if not all(x > 0 for x in lrs):
        raise ValueError(f"inner step sizes must be positive, got {lrs}")
    return lrs


def normalize_advantages(advantages: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit (population) std over each task's valid steps; zero on padding.

    As ProMP's ``utils.normalize_advantages``, applied per task because each
    task's episodes are processed separately there.
    """
    mask = mask.to(advantages.dtype)
    count = mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    mean = (advantages * mask).sum(dim=(-2, -1), keepdim=True) / count
    var = ((advantages - mean).square() * mask).sum(dim=(-2, -1), keepdim=True) / count
    return (advantages - mean) / (var.sqrt() + eps) * mask


def compute_advantages(
    episodes: Episodes,
    baseline: ValueBaseline,
    gamma: float,
    gae_lambda: float,
    normalize: bool = True,
) -> Tensor:
    """GAE advantages on the baseline's values, ``[..., T, E]`` (detached).

    The baseline is fitted on the same episodes (one fit per task when stacked),
    as in MAML-RL's inner step (Finn et al. 2017, appendix A.2).
    """
    values = baseline.fit_predict(episodes, gamma).to(episodes.rewards.dtype)
    advantages = gae(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    if normalize:
        advantages = normalize_advantages(advantages, episodes.mask)
    return advantages.detach()


def make_meta_batch(
    pre: Episodes,
    post: Episodes,
    baseline: ValueBaseline,
    gamma: float,
    gae_lambda: float,
    normalize: bool = True,
) -> MetaBatch:
    """A :class:`~metarl.objectives.MetaBatch` with the advantages of both stacked batches."""
    return MetaBatch(
        pre=pre,
        post=post,
        pre_advantages=compute_advantages(pre, baseline, gamma, gae_lambda, normalize),
        post_advantages=compute_advantages(post, baseline, gamma, gae_lambda, normalize),
    )


def is_stacked(policy: nn.Module, params: Params) -> bool:
    """Whether ``params`` carry a leading task axis (:func:`~metarl.policies.stacked_tasks`)."""
    return stacked_tasks(policy, params) is not None


def expand_params(params: Params, num_tasks: int) -> Params:
    """Per-task views ``[K, ...]`` of shared parameters (no copy; gradients flow back)."""
    return {name: p.expand(num_tasks, *p.shape) for name, p in params.items()}


def policy_stats(policy: nn.Module, params: Params, observations: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` of the policy at ``observations`` under ``params``.

    Stacked params ``[K, ...]`` pair with observations ``[K, ...]`` through
    ``torch.func.vmap``, so the layers become batched matrix products.
    """

    def stats(p: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
        return torch.func.functional_call(policy, p, (obs,), {"stats": True})

    if is_stacked(policy, params):
        return torch.func.vmap(stats)(params, observations)
    return stats(params, observations)


def policy_log_probs(policy: nn.Module, params: Params, episodes: Episodes) -> Tensor:
    """Log-probabilities ``[..., T, E]`` of the episodes' actions under ``params``."""
    mean, std = policy_stats(policy, params, episodes.observations)
    return gaussian_log_prob(mean, std, episodes.actions)


def inner_loss(
    policy: nn.Module,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    surrogate: Surrogate | str = reinforce_surrogate,
) -> Tensor:
    """The inner surrogate per task (REINFORCE by default: ``-sum(log pi * A * mask) / sum(mask)``).

    Shared params with stacked episodes give one loss per task as well.
    """
    if not is_stacked(policy, params) and episodes.rewards.dim() == 3:
        params = expand_params(params, episodes.rewards.shape[0])
    log_probs = policy_log_probs(policy, params, episodes)
    return inner_surrogate(surrogate)(log_probs, episodes.log_probs, advantages, episodes.mask)


def adapt_steps(
    policy: nn.Module,
    params: Params,
    episodes: Episodes | Sequence[Episodes],
    advantages: Tensor | Sequence[Tensor],
    lr: float | Sequence[StepSize],
    steps: int = 1,
    first_order: bool = False,
    objective: str | Surrogate = "maml",
    *,
    proximal: float = 0.0,
    anchor: Params | None = None,
) -> list[Params]:
    """Stacked parameters before and after each inner step: ``[theta_K, phi_1, ..., phi_steps]``.

    ``episodes`` and ``advantages`` must be stacked (``[K, T, E]``): one batch that
    every step reuses, or a sequence with one batch per step, step ``k`` taking
    the episodes sampled with ``phi_k`` (the paper's multi-step variant; ProMP).
    ``params`` are shared (expanded here to ``theta_K``) or stacked. Without
    ``first_order`` the steps are differentiable to second order in ``params``
    (``create_graph=True``); with it, ``phi`` still depends on ``params``, but
    through the identity only. Under ``torch.no_grad()`` (sampling) no graph is
    kept at all and the result is detached. Meta-optimizers use the intermediate
    entries for Jacobian-vector products through each step.

    ``lr`` holds floats, or one mapping per step from parameter name to a scalar
    (:data:`StepSize`; learned rates stay in the graph); a tensor the mapping does not name
    keeps its value (CAVIA's step names the context alone). ``proximal > 0`` steps
    on ``L(phi) + proximal / 2 * ||phi - anchor||^2`` instead, iMAML's inner problem
    (Rajeswaran et al. 2019, eq. 4); ``anchor`` defaults to ``params``.
    """
    per_step = _per_step(episodes, advantages, steps)
    if any(e.rewards.dim() != 3 for e, _ in per_step):
        raise ValueError("adapt_steps needs episodes stacked over tasks; see adapt_with_advantages")
    surrogate = inner_surrogate(objective)
    num_tasks = per_step[0][0].rewards.shape[0]
    current = params if is_stacked(policy, params) else expand_params(params, num_tasks)
    anchor = params if anchor is None else anchor
    trace = [current]
    # Without an ambient graph (sampling, evaluation, a line search) each step
    # starts from fresh leaves: views made under no_grad claim requires_grad yet
    # are cut off from the graph, and their gradient would silently be zero.
    graph = torch.is_grad_enabled()
    for lr_step, (step_episodes, step_advantages) in zip(
        _step_list(lr, steps), per_step, strict=True
    ):
        with torch.enable_grad():
            if not (graph and all(p.requires_grad for p in current.values())):
                current = {n: p.detach().requires_grad_() for n, p in current.items()}
                trace[-1] = current
            losses = inner_loss(policy, current, step_episodes, step_advantages, surrogate)
            # A mapping of rates adapts the tensors it names (CAVIA: the context alone).
            names = [n for n in current if not isinstance(lr_step, Mapping) or n in lr_step]
            # Task k's loss depends on copy k only: one backward gives every task's gradient.
            grads = torch.autograd.grad(
                losses.sum(),
                [current[n] for n in names],
                create_graph=graph and not first_order,
                materialize_grads=True,
            )
        if proximal:
            grads = [
                g + proximal * (current[n] - anchor[n]) for n, g in zip(names, grads, strict=True)
            ]
        rates = lr_step if isinstance(lr_step, Mapping) else dict.fromkeys(names, lr_step)
        stepped = {n: current[n] - rates[n] * g for n, g in zip(names, grads, strict=True)}
        current = {n: stepped.get(n, p) for n, p in current.items()}
        trace.append(current)
    return trace


def _step_list(lr: float | Sequence[StepSize], steps: int) -> list[StepSize]:
    """The size of each of ``steps`` inner steps: :func:`step_sizes` for floats, or one
    mapping of per-tensor rates per step."""
    if isinstance(lr, Sequence) and any(isinstance(x, Mapping) for x in lr):
        if len(lr) != steps or not all(isinstance(x, Mapping) for x in lr):
            raise ValueError(
                f"lr has {len(lr)} entries but steps is {steps}; give one mapping of "
                "per-tensor rates per step"
            )
        return list(lr)
    return step_sizes(lr, steps)  # type: ignore[arg-type]


def _per_step(
    episodes: Episodes | Sequence[Episodes], advantages: Tensor | Sequence[Tensor], steps: int
) -> list[tuple[Episodes, Tensor]]:
    """One ``(episodes, advantages)`` pair per inner step."""
    if isinstance(episodes, Episodes):
        if not isinstance(advantages, Tensor):
            raise ValueError("one batch of episodes takes one advantages tensor")
        return [(episodes, advantages)] * steps
    episodes, advantages = list(episodes), list(advantages)
    if len(episodes) != steps or len(advantages) != steps:
        raise ValueError(
            f"got {len(episodes)} batches of episodes and {len(advantages)} of advantages for "
            f"{steps} inner steps; give one of each per step"
        )
    return list(zip(episodes, advantages, strict=True))


def adapted_stats(
    policy: nn.Module,
    params: Params,
    batch: MetaBatch,
    settings: AdaptationSettings,
    first_order: bool | None = None,
) -> tuple[list[Params], Tensor, Tensor]:
    """The inner-step trace from ``params`` on ``batch.pre`` and the adapted policy's
    ``(mean, std)`` at the post-adaptation observations: the part of every meta-step
    (TRPO's gradient and line search, PPO's epochs) that re-adapts.

    ``first_order`` defaults to ``settings.first_order``; ``True`` keeps no graph
    through the inner step's gradient (a line search needs values only).
    """
    first_order = settings.first_order if first_order is None else first_order
    trace = adapt_steps(
        policy,
        params,
        batch.pre,
        batch.pre_advantages,
        settings.lr,
        settings.steps,
        first_order,
        settings.objective,
    )
    mean, std = policy_stats(policy, trace[-1], batch.post.observations)
    return trace, mean, std


def exploration_loss(
    policy: nn.Module, params: Params, batch: MetaBatch, settings: AdaptationSettings
) -> Tensor:
    """The outer loss's exploration term for an exploring objective (E-MAML), else 0.

    Computed on the episodes sampled with theta (``batch.first_pre``) under ``params``.
    """
    if settings.objective not in EXPLORING_OBJECTIVES:
        return torch.zeros(())
    pre = batch.first_pre
    post_returns = batch.post.episode_returns.mean(dim=-1)
    expanded = params if is_stacked(policy, params) else expand_params(params, batch.num_tasks)
    log_probs = policy_log_probs(policy, expanded, pre)
    return exploration_surrogate(log_probs, pre.log_probs, pre.mask, post_returns).mean()


def adapt_with_advantages(
    policy: nn.Module,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    lr: float | Sequence[StepSize],
    steps: int = 1,
    first_order: bool = False,
    objective: str | Surrogate = "maml",
    *,
    proximal: float = 0.0,
    anchor: Params | None = None,
) -> Params:
    """Adapted parameters phi from precomputed advantages (stacked ``[K, ...]`` for stacked episodes).

    Single-task episodes (``[T, E]`` rewards) give single-task parameters.
    ``proximal`` and ``anchor`` as :func:`adapt_steps`.
    """
    single = episodes.rewards.dim() == 2
    if single:
        episodes = Episodes(
            observations=episodes.observations.unsqueeze(0),
            actions=episodes.actions.unsqueeze(0),
            rewards=episodes.rewards.unsqueeze(0),
            mask=episodes.mask.unsqueeze(0),
            log_probs=episodes.log_probs.unsqueeze(0),
            tasks=episodes.tasks,
        )
        advantages = advantages.unsqueeze(0)
    trace = adapt_steps(
        policy,
        params,
        episodes,
        advantages,
        lr,
        steps,
        first_order,
        objective,
        proximal=proximal,
        anchor=anchor,
    )
    phi = trace[-1]
    return {n: p.squeeze(0) for n, p in phi.items()} if single else phi


def adapt(
    policy: nn.Module,
    params: Params,
    episodes: Episodes,
    baseline: ValueBaseline,
    lr: float | Sequence[float],
    steps: int = 1,
    first_order: bool = False,
    gamma: float = 0.99,
    gae_lambda: float = 1.0,
    objective: str | Surrogate = "maml",
    normalize: bool = True,
) -> Params:
    """``phi = theta - lr * grad L(theta)``, ``steps`` times, for every task of ``episodes``.

    The advantages are GAE on the baseline fitted to ``episodes``, normalised
    per task unless ``normalize`` is false. Returns stacked ``[K, ...]``
    parameters for stacked episodes. Detach the result before handing it to a
    sampler (or use :func:`adapt_for_sampling`).
    """
    advantages = compute_advantages(episodes, baseline, gamma, gae_lambda, normalize)
    return adapt_with_advantages(
        policy, params, episodes, advantages, lr, steps, first_order, objective
    )


def adapt_for_sampling(
    policy: nn.Module,
    params: Params,
    episodes: Episodes,
    baseline: ValueBaseline,
    settings: AdaptationSettings,
    *,
    gamma: float,
    gae_lambda: float,
    normalize: bool,
    lr: float | Sequence[StepSize] | None = None,
    steps: int | None = None,
    proximal: float = 0.0,
    anchor: Params | None = None,
) -> tuple[Tensor, Params]:
    """The advantages of ``episodes`` and the detached adapted parameters to sample with.

    The one inner-loop path of meta-training (the post-adaptation episodes) and
    of evaluation (each adaptation step), so that the evaluated step 1 is the
    trained step 1 (each meta-learner calls it with its own step: see
    :mod:`metarl.meta_learners`). ``lr`` and ``steps`` default to ``settings``';
    ``proximal`` and ``anchor`` as :func:`adapt_steps`.
    """
    advantages = compute_advantages(episodes, baseline, gamma, gae_lambda, normalize)
    with torch.no_grad():
        adapted = adapt_with_advantages(
            policy,
            params,
            episodes,
            advantages,
            settings.lr if lr is None else lr,
            steps=settings.steps if steps is None else steps,
            objective=settings.objective,
            proximal=proximal,
            anchor=anchor,
        )
    return advantages, {name: p.detach() for name, p in adapted.items()}
