"""ProMP's first-order meta-optimizer: PPO's clipped surrogate over the adapted policies.

Rothfuss et al. 2019 (arXiv 1810.06784, section 6; jonasrothfuss/ProMP
``meta_algos/pro_mp.py``): a few Adam steps on the same meta-batch, each one
re-adapting theta (with the objective's inner surrogate, differentiably unless
first-order) and evaluating PPO's clipped surrogate on the post-adaptation
episodes, plus an optional penalty ``inner_kl_coeff * KL(pi_theta_old || pi_theta)``
on the pre-adaptation observations, ProMP's trust region for the pre-update policy.
``target_kl`` stops the epochs early as stable-baselines3's PPO does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from metarl.adaptation import AdaptationSettings, policy_stats
from metarl.config import MetaOptimizerConfig, check_non_negative, check_positive, with_settings
from metarl.meta_learners import MAML, MetaLearner
from metarl.objectives import (
    MetaBatch,
    clipped_surrogate,
    gaussian_log_prob,
    masked_task_mean,
    task_mean,
)
from metarl.optim import check_finite, check_step_inputs, mean_kl
from metarl.policies import Params, params_of

__all__ = ["PPO", "PPOConfig"]


@dataclass(frozen=True)
class PPOConfig(MetaOptimizerConfig):
    """Clipped-surrogate meta-optimizer with Adam (ProMP, Rothfuss et al. 2019)."""

    NAME: ClassVar[str] = "ppo"

    name: Literal["ppo"] = "ppo"
    """Selects this optimizer under ``meta_optimizer:``."""
    lr: float = 1e-3
    """Adam learning rate of the meta-update (ProMP: 1e-3)."""
    epochs: int = 5
    """Gradient steps on each meta-batch (ProMP: 5)."""
    clip: float = 0.3
    """Likelihood-ratio clipping range (ProMP: 0.3)."""
    inner_kl_coeff: float = 0.0
    """Penalty on the KL between the pre-adaptation policies before and after each meta-step,
    on the pre-adaptation observations (ProMP: 5e-4; 0 disables)."""
    target_kl: float | None = None
    """Stop the epochs early once the approximate KL of the post-adaptation policies from the
    sampling ones exceeds ``1.5 * target_kl`` (stable-baselines3's PPO ``target_kl``, same
    meaning); null: no limit (ProMP's)."""

    def _check(self) -> None:
        check_positive(self.lr, "lr")
        check_positive(self.epochs, "epochs")
        check_positive(self.clip, "clip")
        check_non_negative(self.inner_kl_coeff, "inner_kl_coeff")
        if self.target_kl is not None:
            check_positive(self.target_kl, "target_kl")


class PPO:
    """Clipped-surrogate meta-optimizer with Adam (ProMP).

    Args:
        lr: Adam learning rate (ProMP: 1e-3).
        epochs: gradient steps per meta-batch, full batch each (ProMP: 5).
        clip: likelihood-ratio clipping range (ProMP's configs: 0.3).
        inner_kl_coeff: fixed weight of the pre-update KL penalty (ProMP: 5e-4, 0 disables).
        target_kl: stop the epochs once the approximate KL of the post-adaptation policies
            from the sampling ones passes ``1.5 * target_kl`` (stable-baselines3's), or None.
    """

    def __init__(self, config: PPOConfig | None = None, **settings: Any) -> None:
        # The config checks every value, once.
        self.config = config = with_settings(PPOConfig, config, settings)
        self.lr = config.lr
        self.epochs = config.epochs
        self.clip = config.clip
        self.inner_kl_coeff = config.inner_kl_coeff
        self.target_kl = config.target_kl
        self.num_steps = 0
        self._adam: torch.optim.Adam | None = None
        self._pending_adam_state: dict[str, Any] | None = None

    def _optimizer(self, params: list[Tensor]) -> torch.optim.Adam:
        # Adam is bound to the policy on the first step (the policy arrives with it).
        if self._adam is None:
            self._adam = torch.optim.Adam(params, lr=self.lr)
            if self._pending_adam_state is not None:
                self._adam.load_state_dict(self._pending_adam_state)
                self._pending_adam_state = None
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
        post-adaptation policies), ``inner_kl`` (pre-update KL after the step), and with
        ``target_kl`` ``epochs`` (the Adam steps taken before the early stop, if any).

        Raises:
            FloatingPointError: NaN/inf in the parameters, the batch, a loss or a
                gradient; parameters and Adam's state are then restored first.
        """
        learner = MAML() if learner is None else learner
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

        def approx_kl(mean: Tensor, std: Tensor) -> float:
            """stable-baselines3's estimate of KL(sampling || current): mean (r - 1) - log r."""
            log_ratio = gaussian_log_prob(mean, std, post.actions) - post.log_probs
            per_task = masked_task_mean(torch.expm1(log_ratio) - log_ratio, post.mask)
            return float(per_task.mean())

        with torch.no_grad():
            old_mean, old_std = (t.detach() for t in stats(first_order=True)[1:])
            old_pre_mean, old_pre_std = policy_stats(policy, theta, pre.observations)

        snapshot = [p.detach().clone() for p in params]
        adam_state = copy.deepcopy(adam.state_dict())
        loss_before = float("nan")
        epochs = 0
        try:
            for epoch in range(self.epochs):
                trace, mean, std = stats(adaptation.first_order)
                if self.target_kl is not None and epoch > 0:
                    with torch.no_grad():
                        if approx_kl(mean.detach(), std.detach()) > 1.5 * self.target_kl:
                            break
                loss = learner.meta_loss(
                    policy, params_of(policy), batch, adaptation, trace, mean, std, clipped
                )
                total = loss
                if self.inner_kl_coeff:
                    pre_mean, pre_std = policy_stats(policy, params_of(policy), pre.observations)
                    inner = mean_kl(old_pre_mean, old_pre_std, pre_mean, pre_std, pre.mask)
                    total = loss + self.inner_kl_coeff * inner
                check_finite(f"meta-loss at epoch {epoch}", total)
                grads = learner.meta_gradient(policy, total, params, trace, batch, adaptation)
                check_finite(f"meta-gradient at epoch {epoch}", grads)
                if epoch == 0:
                    loss_before = float(loss.detach())
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                adam.step()
                adam.zero_grad(set_to_none=True)
                epochs += 1
            check_finite("parameters after the Adam steps", params)
        except FloatingPointError:
            with torch.no_grad():
                for p, old in zip(params, snapshot, strict=True):
                    p.copy_(old)
            adam.load_state_dict(adam_state)
            adam.zero_grad(set_to_none=True)
            raise

        with torch.no_grad():
            loss_after, kl = after_step()
            pre_mean, pre_std = policy_stats(policy, params_of(policy), pre.observations)
            metrics = {
                "loss_before": loss_before,
                "loss_after": loss_after,
                "kl": kl,
                "inner_kl": float(mean_kl(old_pre_mean, old_pre_std, pre_mean, pre_std, pre.mask)),
            }
        if self.target_kl is not None:
            metrics["epochs"] = float(epochs)
        self.num_steps += 1
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Adam's moments and the step counter (``adam`` is ``None`` before the first step)."""
        adam = self._adam.state_dict() if self._adam is not None else self._pending_adam_state
        return {"num_steps": self.num_steps, "adam": copy.deepcopy(adam)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        adam = copy.deepcopy(state["adam"])
        if self._adam is not None and adam is not None:
            self._adam.load_state_dict(adam)
        else:
            self._pending_adam_state = adam
