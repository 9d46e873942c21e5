"""ProMP's first-order meta-optimizer: PPO's clipped surrogate over the adapted policies.

Rothfuss et al. 2019 (arXiv 1810.06784, section 6; jonasrothfuss/ProMP
``meta_algos/pro_mp.py``): a few Adam steps on the same meta-batch, each one
re-adapting theta (with the objective's inner surrogate, differentiably unless
first-order) and evaluating PPO's clipped surrogate on the post-adaptation
episodes, plus an optional penalty ``inner_kl_coeff * KL(pi_theta_old || pi_theta)``
on the pre-adaptation observations, ProMP's trust region for the pre-update policy,
and optionally ``anchor_kl_coeff * KL(pi_anchor || pi_theta)`` to the pre-update policy
of the run's first meta-step, which bounds how far those steps add up. With ``max_kl``
the whole meta-step is also held to a trust region on the post-adaptation policies, by
TRPO's backtracking line search along the step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from metarl.adaptation import AdaptationSettings, policy_stats
from metarl.config import PPOConfig, with_settings
from metarl.meta_optimizers.optim import LineSearchResult, backtracking_line_search, flat
from metarl.meta_optimizers.trpo import _default_learner, check_finite, check_step_inputs, mean_kl
from metarl.objectives import MetaBatch, clipped_surrogate, gaussian_log_prob, task_mean
from metarl.policies import Params, params_of

if TYPE_CHECKING:
    from metarl.meta_learners import MetaLearner

__all__ = ["PPO"]

# The max_kl guard halves a meta-step that goes too far, up to 10 times (1/1024 of it).
GUARD_HALVINGS = 10


class PPO:
    """Clipped-surrogate meta-optimizer with Adam (ProMP).

    Args:
        lr: Adam learning rate (ProMP: 1e-3).
        epochs: gradient steps per meta-batch, full batch each (ProMP: 5).
        clip: likelihood-ratio clipping range (ProMP's configs: 0.3).
        inner_kl_coeff: fixed weight of the pre-update KL penalty (ProMP: 5e-4, 0 disables).
        anchor_kl_coeff: fixed weight of the penalty on the KL from the pre-update policy at
            the first step this optimizer took (the anchor, kept in its state) to the current
            one (0, ProMP's, disables).
        max_kl: bound on the mean KL between the post-adaptation policies before and after
            the meta-step (0, ProMP's, disables): a step past it is halved along its own
            direction until it fits, and dropped after ``GUARD_HALVINGS`` halvings.
    """

    def __init__(self, config: PPOConfig | None = None, **settings: Any) -> None:
        # The config checks every value, once.
        self.config = config = with_settings(PPOConfig, config, settings)
        self.lr = config.lr
        self.epochs = config.epochs
        self.clip = config.clip
        self.inner_kl_coeff = config.inner_kl_coeff
        self.anchor_kl_coeff = config.anchor_kl_coeff
        self.anchor: Params | None = None  # the pre-update policy of the first step
        self.max_kl = config.max_kl
        self.num_steps = 0
        self._adam: torch.optim.Adam | None = None
        self._pending_adam_state: dict[str, Any] | None = None
        self._warm_moments: list[dict[str, Tensor]] | None = None

    def _optimizer(self, params: list[Tensor]) -> torch.optim.Adam:
        # Adam is bound to the policy on the first step (the policy arrives with it).
        if self._adam is None:
            self._adam = torch.optim.Adam(params, lr=self.lr)
            if self._pending_adam_state is not None:
                self._adam.load_state_dict(self._pending_adam_state)
                self._pending_adam_state = None
            elif self._warm_moments is not None:
                for p, moments in zip(params, self._warm_moments, strict=False):
                    if moments["exp_avg"].shape != p.shape:
                        raise ValueError(
                            "the warm start's Adam moments do not fit this policy "
                            f"({tuple(moments['exp_avg'].shape)} there, {tuple(p.shape)} here)"
                        )
                    self._adam.state[p] = {k: v.clone() for k, v in moments.items()}
                self._warm_moments = None
        bound = self._adam.param_groups[0]["params"]
        if len(bound) != len(params) or any(a is not b for a, b in zip(bound, params, strict=True)):
            raise ValueError("this PPO meta-optimizer was first used with a different policy")
        return self._adam

    def step(
        self,
        policy: nn.Module,
        batch: MetaBatch,
        adaptation: AdaptationSettings,
        learner: MetaLearner | None = None,
    ) -> dict[str, float]:
        """``epochs`` Adam steps on ``policy`` in place; returns metrics.

        ``learner`` (default MAML) says how to re-adapt and how to form the meta-gradient
        (:mod:`metarl.meta_learners`); its own meta-parameters move with the policy's.

        Metrics: ``loss_before`` (clipped surrogate at the first epoch),
        ``loss_after`` (after the last), ``kl`` (mean KL between the old and new
        post-adaptation policies), ``inner_kl`` (pre-update KL after the step), with
        ``anchor_kl_coeff`` ``anchor_kl`` (the pre-update policy's KL from the anchor after
        the step), and with ``max_kl`` ``step_fraction`` (the share of the Adam steps' sum
        kept: 1 unless the guard cut it, 0 when it dropped the step).

        Raises:
            FloatingPointError: NaN/inf in the parameters, the batch, a loss or a
                gradient; parameters and Adam's state are then restored first.
        """
        learner = _default_learner() if learner is None else learner
        theta = params_of(policy)
        params = learner.meta_parameters(policy)
        check_step_inputs(params, batch)
        adam = self._optimizer(params)
        pre, post = batch.first_pre, batch.post

        def stats(first_order: bool) -> tuple[list[Params], Tensor, Tensor]:
            return learner.adapted_stats(policy, params_of(policy), batch, adaptation, first_order)

        def clipped(log_probs: Tensor, old: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
            return clipped_surrogate(log_probs, old, advantages, mask, self.clip)

        def surrogate(mean: Tensor, std: Tensor) -> Tensor:
            log_probs = gaussian_log_prob(mean, std, post.actions)
            per_task = clipped(log_probs, post.log_probs, batch.post_advantages, post.mask)
            return task_mean(per_task, batch, adaptation.tail_fraction)

        def after_step() -> tuple[float, float]:
            _, mean, std = stats(first_order=True)
            kl = mean_kl(old_mean, old_std, mean, std, post.mask)
            return float(surrogate(mean, std)), float(kl)

        def pre_kls() -> tuple[Tensor, Tensor]:
            """The pre-update policy's KL from the step's start and from the anchor."""
            mean, std = policy_stats(policy, params_of(policy), pre.observations)
            inner = mean_kl(old_pre_mean, old_pre_std, mean, std, pre.mask)
            if anchor_stats is None:
                return inner, torch.zeros(())
            return inner, mean_kl(*anchor_stats, mean, std, pre.mask)

        def penalty() -> Tensor:
            inner, anchor = pre_kls()
            return self.inner_kl_coeff * inner + self.anchor_kl_coeff * anchor

        if self.anchor_kl_coeff and self.anchor is None:
            self.anchor = {n: p.detach().clone() for n, p in theta.items()}
        with torch.no_grad():
            old_mean, old_std = (t.detach() for t in stats(first_order=True)[1:])
            old_pre_mean, old_pre_std = policy_stats(policy, theta, pre.observations)
            anchor_stats = (
                policy_stats(policy, self.anchor, pre.observations)
                if self.anchor_kl_coeff
                else None
            )
        penalised = bool(self.inner_kl_coeff or self.anchor_kl_coeff)

        snapshot = [p.detach().clone() for p in params]
        adam_state = copy.deepcopy(adam.state_dict())
        loss_before = float("nan")
        try:
            for epoch in range(self.epochs):
                trace, mean, std = stats(adaptation.first_order)
                loss = learner.meta_loss(
                    policy, params_of(policy), batch, adaptation, trace, mean, std, clipped
                )
                total = loss + penalty() if penalised else loss
                check_finite(f"meta-loss at epoch {epoch}", total)
                grads = learner.meta_gradient(policy, total, params, trace, batch, adaptation)
                check_finite(f"meta-gradient at epoch {epoch}", grads)
                if epoch == 0:
                    loss_before = float(loss.detach())
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                adam.step()
                adam.zero_grad(set_to_none=True)
            check_finite("parameters after the Adam steps", params)
            guarded = self._guard(params, snapshot, after_step) if self.max_kl else None
        except FloatingPointError:
            with torch.no_grad():
                for p, old in zip(params, snapshot, strict=True):
                    p.copy_(old)
            adam.load_state_dict(adam_state)
            adam.zero_grad(set_to_none=True)
            raise

        with torch.no_grad():
            # The guard's line search measured the step it kept; without the guard, or when it
            # dropped the step, the policy is measured here.
            kept = guarded is not None and guarded.fraction is not None
            loss_after, kl = (guarded.loss, guarded.kl) if kept else after_step()
            inner, anchor = pre_kls()
            metrics = {
                "loss_before": loss_before,
                "loss_after": loss_after,
                "kl": kl,
                "inner_kl": float(inner),
            }
            if self.anchor_kl_coeff:
                metrics["anchor_kl"] = float(anchor)
        if guarded is not None:
            metrics["step_fraction"] = guarded.fraction or 0.0
        self.num_steps += 1
        return metrics

    def _guard(
        self,
        params: list[Tensor],
        snapshot: list[Tensor],
        evaluate: Callable[[], tuple[float, float]],
    ) -> LineSearchResult:
        """Hold the epochs' summed step to ``max_kl`` (TRPO's line search on the KL alone;
        ``evaluate`` gives the surrogate and the KL at the current parameters); its result
        has the share of the step kept (``None``: dropped). Adam's moments keep the epochs'
        gradients either way."""
        with torch.no_grad():
            step = flat([p - old for p, old in zip(params, snapshot, strict=True)])
            for p, old in zip(params, snapshot, strict=True):
                p.copy_(old)
        # Any finite loss passes (loss_before = inf): only the KL decides.
        return backtracking_line_search(
            params, step, evaluate, math.inf, self.max_kl, GUARD_HALVINGS + 1, 0.5
        )

    def state_dict(self) -> dict[str, Any]:
        """Adam's moments, the step counter and the anchor (``adam`` and ``anchor`` are
        ``None`` before the first step, and ``anchor`` without ``anchor_kl_coeff``)."""
        adam = self._adam.state_dict() if self._adam is not None else self._pending_adam_state
        anchor = None if self.anchor is None else {n: t.clone() for n, t in self.anchor.items()}
        return {"num_steps": self.num_steps, "adam": copy.deepcopy(adam), "anchor": anchor}

    def warm_start(self, state: dict[str, Any], count: int) -> None:
        """Start Adam's moments for the first ``count`` meta-parameters (the policy's) from a
        source run's PPO ``state`` (:meth:`state_dict`); the others (learned rates, say) and
        the learning rate and step counter of this optimizer start as configured.

        Without it a warm start's first steps are fresh Adam's, ``lr`` times the gradient's
        sign in every coordinate at once whatever the gradient's size: on a converged
        HalfCheetahDir policy (seed 1 at 500 iterations) that first meta-step moved the
        adapted policy by a mean KL of 900 to 4e10.

        Raises:
            ValueError: the source holds no Adam moments for all ``count`` tensors (it never
                took a PPO step: a Reptile run, say).
        """
        adam = state.get("adam")
        indices = adam["param_groups"][0]["params"][:count] if adam is not None else []
        if len(indices) != count or any(i not in adam["state"] for i in indices):
            raise ValueError(
                f"the source holds no Adam moments for all {count} of the policy's tensors "
                "(it took no PPO step)"
            )
        self._warm_moments = [
            {k: v.detach().clone() for k, v in adam["state"][i].items()} for i in indices
        ]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        anchor = state.get("anchor")  # absent from checkpoints written before it existed
        self.anchor = None if anchor is None else {n: t.clone() for n, t in anchor.items()}
        adam = copy.deepcopy(state["adam"])
        if self._adam is not None and adam is not None:
            self._adam.load_state_dict(adam)
        else:
            self._pending_adam_state = adam
