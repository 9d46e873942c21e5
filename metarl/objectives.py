"""Surrogate objectives of meta-policy-gradient methods, selected by name.

Every function here is pure tensor arithmetic on ``[..., T, E]`` log-probabilities,
advantages and masks, and returns one loss per task (the leading axes), so the
same code serves one task and a stack of tasks. Losses are to be minimised.

The *inner* surrogate is what the adaptation step differentiates; its value
never matters, only its first and (through the meta-gradient) second
derivatives. The three names follow ProMP's code (jonasrothfuss/ProMP,
``meta_policy_search/meta_algos/``):

``maml``
    REINFORCE, ``-mean(log pi * A)``: the MAML-RL inner step (Finn et al. 2017;
    ProMP ``trpo_maml.py``, ``inner_type='log_likelihood'``). Its Hessian lacks
    the ``grad log pi grad log pi^T`` term, so the meta-gradient is biased
    (Rothfuss et al. 2019, section 4).
``dice``
    The DiCE magic box over the cumulative log-probability (Foerster et al.
    2018, arXiv 1802.05098; ProMP ``dice_maml.py``), whose derivatives of every
    order are unbiased.
``lvc``
    ProMP's low-variance curvature estimator, ``-mean(pi / pi_old * A)``
    (Rothfuss et al. 2019, arXiv 1810.06784, eq. 13; ``pro_mp.py`` /
    ``trpo_maml.py``, ``inner_type='likelihood_ratio'``).

The *outer* surrogate is TRPO's importance-weighted one on the post-adaptation
episodes, ``-mean(exp(log pi_phi - log pi_old) * A_post)`` (ProMP ``trpo_maml.py``),
or PPO's clipped version (``pro_mp.py``); :func:`gaussian_kl` gives the trust
region's ``KL(old || new)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from metarl.config import register_choice
from metarl.episodes import Episodes
from metarl.policies import gaussian_log_prob_of_noise

__all__ = [
    "EXPLORING_OBJECTIVES",
    "INNER_SURROGATES",
    "OBJECTIVES",
    "MetaBatch",
    "Surrogate",
    "clipped_surrogate",
    "dice_surrogate",
    "exploration_surrogate",
    "gaussian_kl",
    "gaussian_log_prob",
    "gaussian_log_prob_of_noise",
    "inner_surrogate",
    "lvc_surrogate",
    "magic_box",
    "masked_task_mean",
    "outer_surrogate",
    "reinforce_surrogate",
    "tail_weights",
    "task_mean",
]

Surrogate = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""``(log_probs, old_log_probs, advantages, mask) -> loss per task``; inputs ``[..., T, E]``."""


def masked_task_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the valid steps of each task: ``[..., T, E] -> [...]``."""
    mask = mask.to(values.dtype)
    # clamp: a task with no valid step gives 0, not NaN (it never happens in a rollout).
    return (values * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).clamp_min(1.0)


def tail_weights(returns: Tensor, fraction: float) -> Tensor:
    """Weights ``[K]`` that average over the ``ceil(fraction * K)`` tasks of lowest return.

    The meta-objective's average over a meta-batch's tasks (``fraction`` 1: every task alike)
    or its tail, the conditional value at risk of the tasks' losses (the tail-task risk of
    DR-MAML, Wang et al., NeurIPS 2023): the meta-step then serves the tasks that adapt worst. Ties at the
    cut keep the first task in index order; the weights carry no gradient (the returns are the
    sampled episodes').
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    num_tasks = returns.shape[0]
    kept = math.ceil(fraction * num_tasks - 1e-9)
    order = torch.sort(returns.detach(), stable=True).indices[:kept]
    weights = torch.zeros(num_tasks, dtype=returns.dtype, device=returns.device)
    weights[order] = 1.0 / kept
    return weights


def gaussian_log_prob(mean: Tensor, std: Tensor, actions: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over the last (action) axis."""
    return gaussian_log_prob_of_noise((actions - mean) / std, std)


def gaussian_kl(mean_p: Tensor, std_p: Tensor, mean_q: Tensor, std_q: Tensor) -> Tensor:
    """``KL(N(mean_p, std_p) || N(mean_q, std_q))`` of diagonal Gaussians, summed over the last axis."""
    var_ratio = (std_p / std_q).square()
    mahalanobis = ((mean_p - mean_q) / std_q).square()
    return 0.5 * (var_ratio + mahalanobis - 1.0 - var_ratio.log()).sum(dim=-1)


def _masked_log_ratio(log_probs: Tensor, old_log_probs: Tensor, mask: Tensor) -> Tensor:
    # Padded steps hold arbitrary log-probabilities; exp of their difference could
    # overflow to inf and inf * 0 is NaN, so they are zeroed before the exp.
    return torch.where(mask > 0, log_probs - old_log_probs, torch.zeros_like(log_probs))


def reinforce_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """REINFORCE (Williams 1992): ``-sum(log pi * A * mask) / sum(mask)`` per task.

    ``old_log_probs`` is unused; it is accepted so every inner surrogate has one signature.
    """
    del old_log_probs
    return -masked_task_mean(log_probs * advantages, mask)


def lvc_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """ProMP's LVC inner objective ``-mean(pi / pi_old * A)`` (Rothfuss et al. 2019, eq. 13).

    ``pi_old`` is the policy that sampled the episodes, as in ProMP's
    ``likelihood_ratio_sym(action, dist_info_old, dist_info_new)``. At the
    sampling parameters this is ``pi / stop_grad(pi)``: same first derivative as
    REINFORCE, plus the ``grad log pi grad log pi^T`` term in the second. Away
    from them (PPO epochs, a line search) the inner gradient is importance weighted.
    """
    ratio = _masked_log_ratio(log_probs, old_log_probs, mask).exp()
    return -masked_task_mean(ratio * advantages, mask)


def magic_box(x: Tensor) -> Tensor:
    """DiCE's magic box ``exp(x - stop_grad(x))``: value 1, derivative ``magic_box(x) * dx``."""
    return torch.exp(x - x.detach())


def dice_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """DiCE (Foerster et al. 2018, eq. 5) with advantages in place of rewards.

    ``-sum_t magic_box(sum_{s<=t} log pi_s) * (A_t - A_{t+1})`` over valid steps,
    divided by their number. The increments telescope, ``sum_{t'>=t} (A_t' - A_{t'+1}) = A_t``,
    so the first derivative is exactly :func:`reinforce_surrogate`'s while the
    second keeps DiCE's cross-time terms. With ``gamma = 1``, no baseline and no
    normalisation ``A_t - A_{t+1} = r_t``: Foerster et al.'s estimator itself.
    ProMP's ``dice_maml.py`` feeds ``gamma^t r_t - b_t`` instead, which needs its
    own baseline; this form reuses the advantages every other objective uses.
    ``old_log_probs`` is unused.
    """
    del old_log_probs
    mask = mask.to(log_probs.dtype)
    advantages = advantages * mask
    following = torch.cat([advantages[..., 1:, :], torch.zeros_like(advantages[..., :1, :])], -2)
    cumulative = torch.cumsum(log_probs * mask, dim=-2)
    return -masked_task_mean(magic_box(cumulative) * (advantages - following), mask)


INNER_SURROGATES: dict[str, Surrogate] = {
    "maml": reinforce_surrogate,
    "dice": dice_surrogate,
    "lvc": lvc_surrogate,
    # E-MAML adapts as MAML does; its difference is the exploration term of the outer loss.
    "emaml": reinforce_surrogate,
}
OBJECTIVES = tuple(INNER_SURROGATES)
EXPLORING_OBJECTIVES = frozenset({"emaml"})
for _name in OBJECTIVES:
    register_choice("objective", _name)
"""Objectives whose outer loss adds :func:`exploration_surrogate` (E-MAML)."""


def inner_surrogate(objective: str | Surrogate) -> Surrogate:
    """The inner surrogate called ``objective`` (``maml | dice | lvc``), or ``objective`` if callable."""
    if callable(objective):
        return objective
    try:
        return INNER_SURROGATES[objective]
    except KeyError:
        raise ValueError(
            f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}"
        ) from None


def outer_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """TRPO's surrogate ``-mean(exp(log pi - log pi_old) * A)`` per task (ProMP ``trpo_maml.py``)."""
    ratio = _masked_log_ratio(log_probs, old_log_probs, mask).exp()
    return -masked_task_mean(ratio * advantages, mask)


def clipped_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor, clip: float
) -> Tensor:
    """PPO's clipped surrogate per task (Schulman et al. 2017, eq. 7; ProMP ``pro_mp.py``).

    ``-mean(min(r * A, clip(r, 1 - clip, 1 + clip) * A))`` with ``r = pi / pi_old``.
    """
    ratio = _masked_log_ratio(log_probs, old_log_probs, mask).exp()
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    return -masked_task_mean(torch.minimum(ratio * advantages, clipped * advantages), mask)


def exploration_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, mask: Tensor, post_returns: Tensor
) -> Tensor:
    """E-MAML's exploration term per task (Stadie et al. 2018, arXiv 1803.01118, eq. 6).

    The MAML meta-gradient ignores that theta also chose the pre-adaptation
    episodes; E-MAML credits them with what adaptation on them achieved: the
    post-adaptation return of the task, standardised across the meta-batch's tasks,
    times the pre-adaptation log-likelihood. As an importance-weighted surrogate,
    ``-w_k * mean_t(pi_theta / pi_old)``, its gradient at the sampling parameters is
    ``-w_k * mean_t grad log pi_theta(a_t | s_t)``.

    Args:
        log_probs, old_log_probs, mask: ``[K, T, E]`` of the pre-adaptation episodes.
        post_returns: ``[K]`` mean post-adaptation return of each task.
    """
    weight = post_returns - post_returns.mean()
    weight = weight / (weight.square().mean().sqrt() + 1e-8)
    ratio = _masked_log_ratio(log_probs, old_log_probs, mask).exp()
    return -weight.detach() * masked_task_mean(ratio, mask)


@dataclass(frozen=True)
class MetaBatch:
    """Everything a meta-optimizer step needs, all stacked over tasks ``[K, ...]``.

    The trainer builds one from its samples and their advantages
    (:func:`metarl.adaptation.compute_advantages`); :func:`metarl.adaptation.make_meta_batch`
    does both steps for tests and scripts.

    Attributes:
        pre: episodes sampled with the meta-parameters theta; with several inner
            steps on fresh episodes, a tuple with one batch per step (step ``k``'s
            sampled with the parameters after ``k`` steps).
        post: episodes sampled with the adapted parameters phi_i of each task.
        pre_advantages: ``[K, T, E]`` advantages of ``pre`` (the inner steps'), a tuple
            when ``pre`` is one.
        post_advantages: ``[K, T', E']`` advantages of ``post`` (the outer surrogate's).
    """

    pre: Episodes | tuple[Episodes, ...]
    post: Episodes
    pre_advantages: Tensor | tuple[Tensor, ...]
    post_advantages: Tensor

    def __post_init__(self) -> None:
        pre, pre_adv = self.pre_list, self.pre_advantages_list
        if len(pre) != len(pre_adv):
            raise ValueError(f"{len(pre)} batches of pre episodes but {len(pre_adv)} of advantages")
        several = isinstance(self.pre, tuple)
        named = [
            (f"pre[{k}]" if several else "pre", e, a)
            for k, (e, a) in enumerate(zip(pre, pre_adv, strict=True))
        ]
        for name, episodes, advantages in [*named, ("post", self.post, self.post_advantages)]:
            if episodes.rewards.dim() != 3:
                raise ValueError(
                    f"{name} episodes must be stacked over tasks ([K, T, E] rewards), "
                    f"got rewards of shape {tuple(episodes.rewards.shape)}; use stack_episodes"
                )
            if advantages.shape != episodes.rewards.shape:
                raise ValueError(
                    f"{name}_advantages has shape {tuple(advantages.shape)}, "
                    f"expected the rewards' {tuple(episodes.rewards.shape)}"
                )
            if episodes.rewards.shape[0] != self.post.rewards.shape[0]:
                raise ValueError(
                    f"{name} has {episodes.rewards.shape[0]} tasks but post has "
                    f"{self.post.rewards.shape[0]}"
                )

    @property
    def pre_list(self) -> list[Episodes]:
        """The pre-adaptation batches, one per inner step (one for all steps when not a tuple)."""
        return list(self.pre) if isinstance(self.pre, tuple) else [self.pre]

    @property
    def pre_advantages_list(self) -> list[Tensor]:
        adv = self.pre_advantages
        return list(adv) if isinstance(adv, tuple) else [adv]

    @property
    def first_pre(self) -> Episodes:
        """The episodes sampled with theta itself."""
        return self.pre_list[0]

    @property
    def num_tasks(self) -> int:
        return self.post.rewards.shape[0]

    def to(self, dtype: torch.dtype) -> MetaBatch:
        """A copy with every floating tensor cast to ``dtype``."""
        return self._map(lambda e: e.to(dtype), lambda t: t.to(dtype))

    def select(self, tasks: Tensor) -> MetaBatch:
        """The meta-batch of the tasks at the indices ``tasks`` (a 1-D long tensor)."""

        def part(episodes: Episodes) -> Episodes:
            picked = {
                f.name: getattr(episodes, f.name)[tasks]
                for f in fields(Episodes)
                if f.name != "tasks"
            }
            names = tuple(episodes.tasks[i] for i in tasks.tolist()) if episodes.tasks else ()
            return Episodes(**picked, tasks=names)

        return self._map(part, lambda t: t[tasks])

    def _map(self, on_episodes, on_tensor) -> MetaBatch:
        several = isinstance(self.pre, tuple)
        pre = tuple(on_episodes(e) for e in self.pre_list)
        pre_adv = tuple(on_tensor(a) for a in self.pre_advantages_list)
        return MetaBatch(
            pre=pre if several else pre[0],
            post=on_episodes(self.post),
            pre_advantages=pre_adv if several else pre_adv[0],
            post_advantages=on_tensor(self.post_advantages),
        )

    def nonfinite_fields(self) -> list[str]:
        """Names of the tensors that hold NaN or inf (empty when all are finite)."""
        bad = []
        several = isinstance(self.pre, tuple)
        batches = [(f"pre[{k}]" if several else "pre", e) for k, e in enumerate(self.pre_list)] + [
            ("post", self.post)
        ]
        for name, episodes in batches:
            for f in ("observations", "actions", "rewards", "mask", "log_probs"):
                if not torch.isfinite(getattr(episodes, f)).all():
                    bad.append(f"{name}.{f}")
        for k, adv in enumerate(self.pre_advantages_list):
            if not torch.isfinite(adv).all():
                bad.append(f"pre_advantages[{k}]" if several else "pre_advantages")
        if not torch.isfinite(self.post_advantages).all():
            bad.append("post_advantages")
        return bad


def task_mean(per_task: Tensor, batch: MetaBatch, tail_fraction: float = 1.0) -> Tensor:
    """The meta-loss over the tasks of ``batch`` from each task's ``[K]``: their mean, or with
    ``tail_fraction < 1`` the mean over the tasks of lowest post-adaptation return
    (:func:`tail_weights`; the config's ``tail_fraction``)."""
    if tail_fraction == 1:
        return per_task.mean()
    returns = batch.post.episode_returns.mean(dim=-1)
    return (tail_weights(returns, tail_fraction).to(per_task.dtype) * per_task).sum()
