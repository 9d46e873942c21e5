"""The methods of the MAML family, each a small strategy behind one interface.

A meta-learner says two things: how to adapt (the inner step, used alike by
sampling, evaluation and the differentiable re-adaptation of the meta-step) and
how to form the meta-gradient (or, for Reptile, the meta-update). The trainer
stays one loop that composes it::

    learner = make_meta_learner(config, policy)
    advantages, phi = learner.adapt_for_sampling(policy, phi, theta, episodes, baseline, settings, ...)
    metrics = learner.step(policy, MetaBatch(...), settings, meta_optimizer)

and the meta-optimizers (TRPO, PPO) ask it for the parameters they update, the
re-adapted policy, the meta-loss and its gradient. Methods are registered by
name in :data:`META_LEARNERS`, which the config's ``meta_learner`` key is
checked against; each checks the rest of the config it depends on in
:meth:`MAML.check_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import torch
from torch import Tensor, nn

from metarl.adaptation import (
    AdaptationSettings,
    StepSize,
    ValueBaseline,
    adapt_for_sampling,
    adapt_steps,
    adapted_stats,
    expand_params,
    exploration_loss,
    inner_loss,
    policy_stats,
    step_sizes,
)
from metarl.config import (
    Config,
    ConfigError,
    MethodConfig,
    check_one_of,
    check_positive,
    register_choice,
)
from metarl.episodes import Episodes
from metarl.objectives import MetaBatch, Surrogate, gaussian_log_prob, task_mean
from metarl.optim import (
    check_finite,
    check_step_inputs,
    conjugate_gradient,
    flat,
    hessian_vector_product,
    unflat,
)
from metarl.policies import Params, params_of

__all__ = [
    "CAVIA",
    "IMAML",
    "MAML",
    "META_LEARNERS",
    "REPTILE_OPTIMIZERS",
    "CAVIAConfig",
    "IMAMLConfig",
    "MetaLearner",
    "Reptile",
    "ReptileConfig",
    "implicit_meta_gradient",
    "load_meta_learner",
    "make_meta_learner",
    "multi_step_loss_weights",
]


class MAML:
    """MAML for RL (Finn et al. 2017, arXiv 1703.03400, section 5.3 and algorithm 3).

    Adapts with ``phi_{k+1} = phi_k - lr_k * grad L_k(phi_k)``, step ``k`` on the
    episodes sampled with ``phi_k``; the meta-gradient is the derivative of the
    post-adaptation surrogate through every inner step (second order, or first
    order on request), handed to the meta-optimizer (TRPO or PPO).

    With ``learn_lr`` the step sizes are MAML++'s learned per-layer, per-step rates
    (Antoniou, Edwards and Storkey 2019, arXiv 1810.09502, section 4, "LSLR"): one
    scalar per parameter tensor and inner step, starting at ``lr`` and meta-trained
    with the policy (they join :meth:`meta_parameters`, so TRPO's natural gradient
    and trust region and PPO's Adam cover them). They are not constrained, as in
    MAML++. With ``per_parameter`` as well there is one rate per parameter entry (Meta-SGD,
    Li et al. 2017, arXiv 1707.09835): ``alpha`` has theta's shapes, so meta-training sets
    the inner step's direction as well as its size.

    It is also the base of the others: each overrides the part it changes.

    Args:
        policy: the policy to adapt (needed for ``learn_lr``: the rates are per tensor).
        lr: the inner step size, one or one per step (the learned rates' start).
        steps: inner steps.
        learn_lr: learn the rates.
        per_parameter: one learned rate per parameter entry (Meta-SGD), not per tensor.
    """

    name: ClassVar[str] = "maml"
    label: ClassVar[str] = "MAML"
    """The method's name in result tables and plots."""
    proximal: float = 0.0
    """Weight of the inner problem's proximal term toward theta (iMAML's lambda; 0 for MAML)."""

    def __init__(
        self,
        policy: nn.Module | None = None,
        lr: float | Sequence[float] = 0.1,
        steps: int = 1,
        learn_lr: bool = False,
        per_parameter: bool = False,
    ) -> None:
        self.learned_lrs: list[dict[str, Tensor]] | None = None
        if per_parameter and not learn_lr:
            raise ValueError("per_parameter shapes the learned rates; it needs learn_lr")
        if learn_lr:
            if policy is None:
                raise ValueError(
                    "learn_lr needs the policy: there is one rate per parameter tensor"
                )
            own = params_of(policy)
            self.learned_lrs = [
                {
                    n: torch.full(
                        p.shape if per_parameter else (), rate, dtype=p.dtype
                    ).requires_grad_()
                    for n, p in own.items()
                }
                for rate in step_sizes(lr, steps)
            ]

    @classmethod
    def from_config(cls, config: Config, policy: nn.Module) -> MAML:
        """The learner a run's config describes, for ``policy``."""
        a = config.adaptation
        return cls(policy, a.lr, a.steps, a.learn_lr, a.learn_lr_per_parameter)

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Raise :class:`~metarl.config.ConfigError` naming the key the method cannot honour."""
        del config

    # --- how to adapt --------------------------------------------------------------------------
    def step_size(self, settings: AdaptationSettings, step: int) -> StepSize:
        """The size of inner step ``step`` (0-based): the trained steps' own, after them half the
        last (:meth:`~metarl.adaptation.AdaptationSettings.evaluation_lr`); learned rates are
        a mapping from parameter name to a (detached) scalar."""
        if self.learned_lrs is None:
            return settings.evaluation_lr(step)
        if step < len(self.learned_lrs):
            return {n: r.detach() for n, r in self.learned_lrs[step].items()}
        return {n: r.detach() / 2 for n, r in self.learned_lrs[-1].items()}

    def _trained_rates(self, settings: AdaptationSettings) -> list[StepSize] | None:
        """The trained steps' rates, one mapping per step from tensor name to its rate (a scalar,
        or Meta-SGD's tensor of its shape; the learned ones in the graph), or ``None`` where every
        tensor steps by ``settings.lr``."""
        del settings
        return self.learned_lrs

    def adapt_for_sampling(
        self,
        policy: nn.Module,
        params: Params,
        theta: Params,
        episodes: Episodes,
        baseline: ValueBaseline,
        settings: AdaptationSettings,
        *,
        gamma: float,
        gae_lambda: float,
        normalize: bool,
        step: int,
    ) -> tuple[Tensor, Params]:
        """Inner step ``step`` from ``params`` on ``episodes`` (sampled with them), values only:
        the episodes' advantages and the detached parameters to sample with next. ``theta`` is
        the meta-parameters the adaptation started from."""
        lr = self.step_size(settings, step)
        return adapt_for_sampling(
            policy,
            params,
            episodes,
            baseline,
            settings,
            gamma=gamma,
            gae_lambda=gae_lambda,
            normalize=normalize,
            lr=lr if isinstance(lr, float) else [lr],
            steps=1,
            proximal=self.proximal,
            anchor=theta,
        )

    def adapted_stats(
        self,
        policy: nn.Module,
        theta: Params,
        batch: MetaBatch,
        settings: AdaptationSettings,
        first_order: bool | None = None,
    ) -> tuple[list[Params], Tensor, Tensor]:
        """The inner steps from ``theta`` on ``batch.pre`` (a trace as
        :func:`~metarl.adaptation.adapt_steps` returns) and the adapted policy's
        ``(mean, std)`` at the post-adaptation observations, differentiable in ``theta``
        unless ``first_order`` (default ``settings.first_order``). Learned rates stay in
        the graph."""
        rates = self._trained_rates(settings)
        if rates is None:
            return adapted_stats(policy, theta, batch, settings, first_order)
        trace = adapt_steps(
            policy,
            theta,
            batch.pre,
            batch.pre_advantages,
            rates,
            settings.steps,
            settings.first_order if first_order is None else first_order,
            settings.objective,
        )
        mean, std = policy_stats(policy, trace[-1], batch.post.observations)
        return trace, mean, std

    # --- how to form the meta-gradient ---------------------------------------------------------
    def meta_parameters(self, policy: nn.Module) -> list[Tensor]:
        """What the outer step updates, in flat-vector order: the policy's parameters, then any
        learned rates (step by step, each in the policy's parameter order)."""
        params = list(params_of(policy).values())
        if self.learned_lrs is not None:
            params += [r for step in self.learned_lrs for r in step.values()]
        return params

    def meta_loss(
        self,
        policy: nn.Module,
        theta: Params,
        batch: MetaBatch,
        settings: AdaptationSettings,
        trace: Sequence[Params],
        mean: Tensor,
        std: Tensor,
        surrogate: Surrogate,
    ) -> Tensor:
        """``surrogate`` (TRPO's or PPO's) of the adapted policy on the post-adaptation episodes,
        averaged over tasks, plus E-MAML's exploration term where the objective has one.

        With ``settings.step_weights`` it is MAML++'s multi-step loss (Antoniou et al. 2019,
        section 4): ``sum_k w_k * surrogate(phi_k)``, ``phi_k`` the parameters after step
        ``k`` (``trace[k]``) on the episodes sampled with them, the next step's pre-adaptation
        batch (the post-adaptation batch for the last step).
        """
        post = batch.post
        log_probs = gaussian_log_prob(mean, std, post.actions)
        per_task = surrogate(log_probs, post.log_probs, batch.post_advantages, post.mask)
        loss = task_mean(per_task, batch, settings.tail_fraction)
        if settings.step_weights is not None:
            loss = settings.step_weights[-1] * loss + self._earlier_steps_loss(
                policy, batch, settings, trace, surrogate
            )
        return loss + exploration_loss(policy, theta, batch, settings)

    @staticmethod
    def _earlier_steps_loss(
        policy: nn.Module,
        batch: MetaBatch,
        settings: AdaptationSettings,
        trace: Sequence[Params],
        surrogate: Surrogate,
    ) -> Tensor:
        """The weighted surrogates of ``phi_1 .. phi_{K-1}`` on the episodes sampled with them
        (over the same tasks as the last step's, :func:`~metarl.objectives.task_mean`)."""
        weights = settings.step_weights or ()
        pres, advantages = batch.pre_list, batch.pre_advantages_list
        if len(pres) != settings.steps or len(trace) != settings.steps + 1:
            raise ValueError(
                "the multi-step loss needs the episodes sampled after every inner step (one "
                f"pre-adaptation batch per step, {settings.steps}) and the trace of each step; got "
                f"{len(pres)} batches and {len(trace) - 1} steps"
            )
        total = torch.zeros(())
        for k in range(1, settings.steps):
            episodes = pres[k]
            mean, std = policy_stats(policy, trace[k], episodes.observations)
            log_probs = gaussian_log_prob(mean, std, episodes.actions)
            loss_k = surrogate(log_probs, episodes.log_probs, advantages[k], episodes.mask)
            loss_k = task_mean(loss_k, batch, settings.tail_fraction)
            total = total + weights[k - 1] * loss_k
        return total

    def meta_gradient(
        self,
        policy: nn.Module,
        loss: Tensor,
        params: Sequence[Tensor],
        trace: Sequence[Params],
        batch: MetaBatch,
        settings: AdaptationSettings,
        retain_graph: bool = False,
    ) -> list[Tensor]:
        """The gradient of ``loss`` with respect to ``params`` (:meth:`meta_parameters`)."""
        del policy, trace, batch, settings
        return list(
            torch.autograd.grad(
                loss, list(params), retain_graph=retain_graph, materialize_grads=True
            )
        )

    def curvature_step_sizes(self) -> list[dict[str, Tensor]] | None:
        """Learned inner rates that sit in :meth:`meta_parameters` after the policy's (TRPO's
        curvature products need them); ``None`` when the rates are fixed."""
        return self.learned_lrs

    def step(
        self,
        policy: nn.Module,
        batch: MetaBatch,
        settings: AdaptationSettings,
        meta_optimizer: Any,
    ) -> dict[str, float]:
        """One meta-update of ``policy`` (and of this learner's own meta-parameters) in place."""
        return meta_optimizer.step(policy, batch, settings, self)

    # --- logging and checkpoints ---------------------------------------------------------------
    # --- the method's own schedule and warm start ----------------------------------------------
    first_order_iterations: int = 0
    """MAML++'s derivative-order annealing: first order for this many iterations."""
    multi_step_loss_iterations: int = 0
    """MAML++'s multi-step loss: annealed per-step weights for this many iterations."""

    def set_schedule(self, first_order_iterations: int, multi_step_loss_iterations: int) -> None:
        """MAML++'s schedules (Antoniou et al. 2019, section 4): ``adaptation``'s
        ``first_order_iterations`` and ``multi_step_loss_iterations``."""
        self.first_order_iterations = first_order_iterations
        self.multi_step_loss_iterations = multi_step_loss_iterations

    def schedule(
        self, settings: AdaptationSettings, iteration: int
    ) -> tuple[AdaptationSettings, dict[str, float]]:
        """The settings of meta-iteration ``iteration``'s meta-step, and what to log of them:
        first order during MAML++'s annealing, and the multi-step loss's weights."""
        extra: dict[str, float] = {}
        if iteration < self.first_order_iterations:
            settings = dataclasses.replace(settings, first_order=True)
        if self.multi_step_loss_iterations:
            weights = multi_step_loss_weights(
                settings.steps, iteration, self.multi_step_loss_iterations
            )
            settings = dataclasses.replace(settings, step_weights=weights)
            extra["last_step_weight"] = weights[-1] if weights else 1.0
        return settings, extra

    def inner_lr_fixed(self) -> str | None:
        """Why an evaluation may not replace ``adaptation.lr`` with a probe's (``None``: it
        may): meta-trained rates are the step."""
        if self.learned_lrs is not None:
            return (
                "its learned inner rates (adaptation.learn_lr: true) are its step; evaluate "
                "it without --inner-lr"
            )
        return None

    def warm_start(self, state: dict[str, Any], source: str) -> None:
        """Take what the learner ``state`` of the run in ``source`` holds that this fresh one
        goes on with (``init_from``): its learned inner rates, when both learn them.

        Raises:
            ConfigError: the source's rates are for other steps, tensors or shapes.
        """
        if "learned_lrs" not in state or self.learned_lrs is None:
            return
        try:
            self.load_state_dict(state)
        except ValueError as err:
            raise ConfigError(
                f"cannot carry {source}'s learned inner rates: {err}; warm-start from a run "
                "with the same adaptation.steps and learn_lr_per_parameter, or set "
                "adaptation.learn_lr: false",
                key="adaptation.learn_lr",
            ) from None

    def metrics(self) -> dict[str, float]:
        """Values for ``progress.csv`` beyond the meta-optimizer's: the learned rates, as
        ``inner_lr<step>/<parameter>`` (a tensor's mean rate with Meta-SGD's per-parameter
        ones; none for plain MAML)."""
        if self.learned_lrs is None:
            return {}
        return {
            f"inner_lr{k}/{n}": float(r.detach().mean())
            for k, step in enumerate(self.learned_lrs)
            for n, r in step.items()
        }

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume exactly: the learned rates, if any."""
        if self.learned_lrs is None:
            return {}
        return {
            "learned_lrs": [{n: r.detach().clone() for n, r in s.items()} for s in self.learned_lrs]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("learned_lrs")
        if (saved is None) != (self.learned_lrs is None):
            raise ValueError(
                "the checkpoint's learned inner rates do not match adaptation.learn_lr "
                f"(saved: {saved is not None}, configured: {self.learned_lrs is not None})"
            )
        if saved is None or self.learned_lrs is None:
            return
        if [list(s) for s in saved] != [list(s) for s in self.learned_lrs]:
            raise ValueError("the checkpoint's learned inner rates are for other steps or tensors")
        shapes = [[tuple(r.shape) for r in s.values()] for s in self.learned_lrs]
        if [[tuple(r.shape) for r in s.values()] for s in saved] != shapes:
            raise ValueError(
                "the checkpoint's learned inner rates have other shapes than "
                "adaptation.learn_lr_per_parameter gives (per tensor or per parameter entry)"
            )
        with torch.no_grad():  # in place: the meta-optimizers hold these tensors
            for mine, theirs in zip(self.learned_lrs, saved, strict=True):
                for n, r in mine.items():
                    r.copy_(theirs[n])


REPTILE_OPTIMIZERS = ("sgd", "adam")
"""How :class:`Reptile` applies its direction (the config's ``reptile.optimizer``)."""


@dataclass(frozen=True)
class ReptileConfig(MethodConfig):
    """Reptile's outer step (Nichol et al. 2018), used when ``meta_learner: reptile``."""

    SECTION: ClassVar[str] = "reptile"

    epsilon: float = 1.0
    """Outer step size: theta += epsilon * mean_over_tasks(phi_K - theta) (Nichol et al.'s
    initial value: 1); Adam's learning rate with ``optimizer: adam`` (then about 0.001-0.01)."""
    optimizer: str = "sgd"
    """sgd (the plain interpolation) | adam (Adam on the direction theta - phi_K)."""

    def _check(self) -> None:
        check_positive(self.epsilon, "epsilon")
        check_one_of(self.optimizer, REPTILE_OPTIMIZERS, "optimizer")


@dataclass(frozen=True)
class IMAMLConfig(MethodConfig):
    """iMAML's inner problem and implicit meta-gradient (Rajeswaran et al. 2019), used when
    ``meta_learner: imaml``."""

    SECTION: ClassVar[str] = "imaml"

    lam: float = 10.0
    """Proximal weight lambda of the inner problem L(phi) + lambda / 2 * ||phi - theta||^2.
    1 / adaptation.lr makes each inner step phi = theta - lr * grad L(phi_before)."""
    cg_iters: int = 5
    """Conjugate-gradient iterations for (I + H / lambda)^-1 g (the paper: 5)."""

    def _check(self) -> None:
        check_positive(self.lam, "lam")
        check_positive(self.cg_iters, "cg_iters")


@dataclass(frozen=True)
class CAVIAConfig(MethodConfig):
    """CAVIA's inner step (Zintgraf et al. 2019), used when ``meta_learner: cavia``: each task
    adapts the policy's context parameters alone (``policy.context_dim`` of them)."""

    SECTION: ClassVar[str] = "cavia"

    lr: float = 10.0
    """Step size of the context's inner steps (CAVIA's HalfCheetah value: 10); later
    evaluation steps take half of it, as the paper's. ``adaptation.lr`` stays the step of the
    baselines evaluated beside it, which have no context."""

    def _check(self) -> None:
        check_positive(self.lr, "lr")


class Reptile(MAML):
    """Reptile for policies (Nichol, Achiam and Schulman 2018, arXiv 1803.02999, algorithm 2).

    Adapts as MAML does (``K`` policy-gradient steps per task, each on episodes
    sampled with the parameters before it), then moves theta toward the adapted
    parameters: ``theta += epsilon * mean_over_tasks(phi_K - theta)``. No derivative
    flows through the inner steps, and the meta-optimizer is not used. With
    ``optimizer="adam"`` the direction ``theta - mean(phi_K)`` is treated as a gradient
    and handed to Adam with learning rate ``epsilon`` (the paper's section 5 remark that
    the update can be plugged into any optimizer). The post-adaptation episodes only
    measure ``phi_K``; the update does not read them.

    Args:
        policy: the policy whose parameters theta are (Adam binds to them).
        epsilon: outer step size (Adam's learning rate for ``adam``).
        optimizer: one of :data:`REPTILE_OPTIMIZERS`.
    """

    name: ClassVar[str] = "reptile"
    label: ClassVar[str] = "Reptile"

    def __init__(self, policy: nn.Module, epsilon: float = 1.0, optimizer: str = "sgd") -> None:
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")
        if optimizer not in REPTILE_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {REPTILE_OPTIMIZERS}, got {optimizer!r}")
        super().__init__()
        self.policy, self.epsilon, self.optimizer = policy, float(epsilon), optimizer
        params = list(params_of(policy).values())
        self._adam = torch.optim.Adam(params, lr=self.epsilon) if optimizer == "adam" else None

    @classmethod
    def from_config(cls, config: Config, policy: nn.Module) -> Reptile:
        return cls(policy, config.reptile.epsilon, config.reptile.optimizer)

    @classmethod
    def check_config(cls, config: Config) -> None:
        from metarl.objectives import EXPLORING_OBJECTIVES

        _refuse_maml_only(config, "reptile")
        if config.tail_fraction != 1:
            raise ConfigError(
                "Reptile averages every task's adapted parameters and has no meta-loss to take "
                "the tail of; set tail_fraction: 1 or use meta_learner: maml",
                key="tail_fraction",
            )
        if config.objective in EXPLORING_OBJECTIVES:
            raise ConfigError(
                f"{config.objective!r} adds a term to a meta-loss, and Reptile has none; use "
                "objective: maml (or dice, lvc) with meta_learner: reptile",
                key="objective",
            )

    def step(
        self,
        policy: nn.Module,
        batch: MetaBatch,
        settings: AdaptationSettings,
        meta_optimizer: Any = None,
    ) -> dict[str, float]:
        """``theta += epsilon * mean(phi_K - theta)`` (or an Adam step on ``theta - mean(phi_K)``).

        Metrics: ``reptile_distance`` (norm of ``mean(phi_K) - theta``), ``step_norm``
        (norm of the change of theta).

        Raises:
            FloatingPointError: NaN/inf in the parameters, the batch or the direction,
                before the parameters change.
        """
        del meta_optimizer
        if policy is not self.policy:
            raise ValueError("this Reptile learner was made for a different policy")
        theta = params_of(policy)
        params = list(theta.values())
        check_step_inputs(params, batch)
        with torch.no_grad():
            phi = adapt_steps(
                policy,
                theta,
                batch.pre,
                batch.pre_advantages,
                settings.lr,
                settings.steps,
                True,
                settings.objective,
            )[-1]
            direction = [phi[name].mean(0) - p for name, p in theta.items()]
            check_finite("Reptile's direction mean(phi_K) - theta", direction)
            before = [p.detach().clone() for p in params]
            if self._adam is None:
                for p, d in zip(params, direction, strict=True):
                    p.add_(self.epsilon * d)
            else:
                for p, d in zip(params, direction, strict=True):
                    p.grad = -d
                self._adam.step()
                self._adam.zero_grad(set_to_none=True)
            moved = [p - b for p, b in zip(params, before, strict=True)]
        return {
            "reptile_distance": float(torch.cat([d.reshape(-1) for d in direction]).norm()),
            "step_norm": float(torch.cat([m.reshape(-1) for m in moved]).norm()),
        }

    def state_dict(self) -> dict[str, Any]:
        """Adam's moments (``optimizer: adam``); plain Reptile keeps no state."""
        return {} if self._adam is None else {"adam": self._adam.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._adam is not None:
            self._adam.load_state_dict(state["adam"])


class IMAML(MAML):
    """Implicit MAML (Rajeswaran, Finn, Kakade and Levine 2019, arXiv 1909.04630) for policies.

    Each task's inner problem is ``min_phi L(phi) + lam / 2 * ||phi - theta||^2`` (eq. 4),
    solved approximately by the inner policy-gradient steps, each on episodes sampled
    with the parameters before it: ``phi <- phi - lr * (grad L(phi) + lam * (phi - theta))``.
    At a solution ``d phi / d theta = (I + H / lam)^-1`` with ``H`` the Hessian of the
    inner surrogate at ``phi`` (lemma 1), so the meta-gradient of a post-adaptation loss
    with gradient ``g`` at ``phi`` is ``(I + H / lam)^-1 g``, solved by conjugate gradient
    on Hessian-vector products (algorithm 2); no derivative flows through the inner steps.
    ``H`` is taken on the last inner step's episodes with the config's inner surrogate.

    It serves TRPO, PPO and the first-order switch like MAML: the meta-loss is the same,
    its gradient reaches theta through ``(I + H / lam)^-1`` (terms of the loss that read
    theta directly, E-MAML's and PPO's KL penalty, keep their own gradient). TRPO's
    curvature products see ``d phi / d theta = I`` (the Fisher at the adapted policy);
    its line search re-solves the inner problem and checks the exact KL. With
    ``first_order`` the solve is skipped: the gradient is ``g``.

    Args:
        lam: the proximal weight lambda (``1 / lr`` pairs it with the inner step size).
        cg_iters: conjugate-gradient iterations per meta-gradient.
    """

    name: ClassVar[str] = "imaml"
    label: ClassVar[str] = "iMAML"

    def __init__(self, lam: float = 10.0, cg_iters: int = 5) -> None:
        if not lam > 0:
            raise ValueError(f"lam must be positive, got {lam!r}")
        if not (isinstance(cg_iters, int) and cg_iters > 0):
            raise ValueError(f"cg_iters must be a positive integer, got {cg_iters!r}")
        super().__init__()
        self.proximal, self.cg_iters = float(lam), cg_iters

    @property
    def lam(self) -> float:
        return self.proximal

    @classmethod
    def from_config(cls, config: Config, policy: nn.Module) -> IMAML:
        del policy
        return cls(config.imaml.lam, config.imaml.cg_iters)

    @classmethod
    def check_config(cls, config: Config) -> None:
        _refuse_maml_only(config, "imaml")

    def adapted_stats(
        self,
        policy: nn.Module,
        theta: Params,
        batch: MetaBatch,
        settings: AdaptationSettings,
        first_order: bool | None = None,
    ) -> tuple[list[Params], Tensor, Tensor]:
        """The proximal inner steps (values only) and the adapted policy's ``(mean, std)``;
        the trace is ``[theta_K, phi]`` with ``phi = theta_K + stop_grad(phi* - theta_K)``,
        so that autograd sees ``d phi / d theta = I`` and :meth:`meta_gradient` puts in the
        implicit Jacobian."""
        del first_order
        with torch.no_grad():
            solved = adapt_steps(
                policy,
                theta,
                batch.pre,
                batch.pre_advantages,
                settings.lr,
                settings.steps,
                True,
                settings.objective,
                proximal=self.proximal,
            )[-1]
        start = expand_params(theta, batch.num_tasks)
        phi = {n: p + (solved[n] - p).detach() for n, p in start.items()}
        mean, std = policy_stats(policy, phi, batch.post.observations)
        return [start, phi], mean, std

    def meta_gradient(
        self,
        policy: nn.Module,
        loss: Tensor,
        params: Sequence[Tensor],
        trace: Sequence[Params],
        batch: MetaBatch,
        settings: AdaptationSettings,
        retain_graph: bool = False,
    ) -> list[Tensor]:
        """``loss``'s gradient with the part through ``phi`` replaced by ``(I + H / lam)^-1 g``."""
        params, phi = list(params), trace[-1]
        grads = torch.autograd.grad(
            loss,
            [*params, *phi.values()],
            retain_graph=retain_graph,
            materialize_grads=True,
        )
        total, through_phi = list(grads[: len(params)]), list(grads[len(params) :])
        if settings.first_order:
            return total
        implicit = implicit_meta_gradient(
            policy,
            phi,
            batch.pre_list[-1],
            batch.pre_advantages_list[-1],
            through_phi,
            self.proximal,
            self.cg_iters,
            settings.objective,
        )
        # total = direct terms + sum_k g_k (d phi / d theta = I above): swap the g_k's part.
        return [
            t - g.sum(0) + x.sum(0) for t, g, x in zip(total, through_phi, implicit, strict=True)
        ]


def implicit_meta_gradient(
    policy: nn.Module,
    phi: Params,
    episodes: Episodes,
    advantages: Tensor,
    grads: Sequence[Tensor],
    lam: float,
    cg_iters: int,
    objective: str = "maml",
) -> list[Tensor]:
    """``(I + H_k / lam)^-1 g_k`` for every task ``k`` (Rajeswaran et al. 2019, algorithm 2).

    ``H_k`` is the Hessian of task ``k``'s inner surrogate (``objective``, on ``episodes``
    and ``advantages``, all stacked over tasks) at the stacked parameters ``phi``; ``grads``
    are the ``g_k``, stacked like ``phi``. The tasks' systems form one block-diagonal
    system, solved by one conjugate gradient of ``cg_iters`` Hessian-vector products.
    """
    leaves = {n: p.detach().requires_grad_() for n, p in phi.items()}
    with torch.enable_grad():
        losses = inner_loss(policy, leaves, episodes, advantages, objective)
        # Task k's loss depends on copy k only: the Hessian of the sum is block-diagonal.
        hvp = hessian_vector_product(losses.sum(), list(leaves.values()))
    grads = [g.detach() for g in grads]
    solution = conjugate_gradient(lambda v: v + hvp(v) / lam, flat(grads), cg_iters)
    check_finite("iMAML's implicit meta-gradient", solution)
    return unflat(solution, grads)


def _refuse_maml_only(config: Config, name: str) -> None:
    """MAML++'s learned rates and multi-step loss need a meta-gradient through every inner
    step, which ``name`` does not form."""
    if config.adaptation.learn_lr:
        raise ConfigError(
            f"learned inner rates need the gradient through the inner steps, which {name} does "
            "not form; set it false or use meta_learner: maml",
            key="adaptation.learn_lr",
        )
    if config.adaptation.multi_step_loss_iterations:
        raise ConfigError(
            f"the multi-step loss needs the gradient through every inner step, which {name} does "
            "not form; set it to 0 or use meta_learner: maml",
            key="adaptation.multi_step_loss_iterations",
        )


def multi_step_loss_weights(
    steps: int, iteration: int, iterations: int
) -> tuple[float, ...] | None:
    """MAML++'s per-step loss weights at ``iteration`` of ``iterations`` annealed ones, or
    ``None`` (the last step alone) from then on.

    Antoniou et al. 2019 (section 4; ``get_per_step_loss_importance_vector`` of
    HowToTrainYourMAMLPytorch): all ``1 / steps`` at first; each iteration the earlier
    steps' weights drop by ``1 / steps / iterations`` down to ``0.03 / steps``, and the
    last step's rises by as much per earlier step, up to ``1 - (steps - 1) * 0.03 / steps``.
    """
    if iteration >= iterations:
        return None
    decay = 1.0 / steps / iterations
    floor = 0.03 / steps
    earlier = max(1.0 / steps - iteration * decay, floor)
    last = min(1.0 / steps + iteration * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return (*[earlier] * (steps - 1), last)


MetaLearner: TypeAlias = MAML
"""The interface of a meta-learner: every one is a :class:`MAML` subclass that overrides the
parts it changes (MAML documents each method and is the default of every one)."""


class CAVIA(MAML):
    """CAVIA (Zintgraf, Shiarlis, Kurin, Hofmann and Whiteson 2019, arXiv 1810.03642): the
    inner steps adapt the policy's context parameters alone (``policy.context_dim`` zeros
    appended to the observation), with their own step size ``lr``; the meta-gradient reaches
    the network through them, to second order unless first-order.

    The context's starting value is meta-trained with the network (CAVIA keeps it at zero;
    beside the first layer's bias the two give the same functions and the same steps). A
    policy without a context (the baselines an evaluation adapts beside it) takes MAML's step
    of ``adaptation.lr``.

    Args:
        policy: the policy it adapts; whether it has a context decides the step.
        lr: the context's step size (CAVIA's HalfCheetah value: 10).
    """

    name: ClassVar[str] = "cavia"
    label: ClassVar[str] = "CAVIA"

    def __init__(self, policy: nn.Module | None = None, lr: float = 10.0) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.context_lr = float(lr)
        self.has_context = policy is not None and "context" in params_of(policy)

    @classmethod
    def from_config(cls, config: Config, policy: nn.Module) -> CAVIA:
        return cls(policy, config.cavia.lr)

    @classmethod
    def check_config(cls, config: Config) -> None:
        if not config.policy.context_dim:
            raise ConfigError(
                "CAVIA adapts the policy's context parameters, and it has none; set it to their "
                "number (CAVIA's HalfCheetah: 50)",
                key="policy.context_dim",
            )
        if config.adaptation.learn_lr:
            raise ConfigError(
                "CAVIA steps its context by cavia.lr; learned per-tensor rates are MAML++'s: "
                "set it false or use meta_learner: maml",
                key="adaptation.learn_lr",
            )

    def step_size(self, settings: AdaptationSettings, step: int) -> StepSize:
        """The context's step (``lr`` for the trained steps, then half), or MAML's for a
        policy without a context."""
        if not self.has_context:
            return settings.evaluation_lr(step)
        return {"context": self.context_lr if step < settings.steps else self.context_lr / 2}

    def inner_lr_fixed(self) -> str | None:
        return (
            "it replaces adaptation.lr, which a CAVIA run's context does not step by (cavia.lr "
            "does; the baselines beside it take adaptation.lr); evaluate a copy of the run with "
            "cavia.lr edited in its config.yaml instead"
        )

    def _trained_rates(self, settings: AdaptationSettings) -> list[StepSize]:
        """The context's rate for each trained step (the other tensors keep their values)."""
        return [self.step_size(settings, k) for k in range(settings.steps)]


META_LEARNERS: dict[str, type[MetaLearner]] = {
    cls.name: cls for cls in (MAML, Reptile, IMAML, CAVIA)
}
"""The meta-learners by name; the config's ``meta_learner`` is one of these."""


def make_meta_learner(config: Config, policy: nn.Module) -> MetaLearner:
    """The meta-learner ``config.meta_learner`` names, set up for ``policy``."""
    learner = META_LEARNERS[config.meta_learner].from_config(config, policy)
    a = config.adaptation
    learner.set_schedule(a.first_order_iterations, a.multi_step_loss_iterations)
    return learner


def load_meta_learner(config: Config, policy: nn.Module, state: dict[str, Any]) -> MetaLearner:
    """The meta-learner of a checkpoint's ``state`` (its learned rates, say), for ``policy``."""
    learner = make_meta_learner(config, policy)
    learner.load_state_dict(state.get("meta_learner", {}))
    return learner


for _learner in META_LEARNERS.values():
    register_choice("meta_learner", _learner.name, _learner.check_config)
