"""TRPO as the meta-optimizer of MAML-RL (Finn et al. 2017, section 5.3; Schulman et al. 2015).

One step maximises the post-adaptation surrogate ``-L(theta)`` (see
:func:`metarl.objectives.outer_surrogate`) under a trust region on the mean
``KL(pi_phi(theta_old) || pi_phi(theta))`` over the post-adaptation
observations (rllab's direction, the paper's code): a natural-gradient direction by conjugate gradient, then a backtracking line
search. Everything is batched over tasks.

The curvature matrix ``F`` is the Hessian of that KL at ``theta_old``. Three
products ``F v`` are offered (``fvp=``):

``exact``
    Double backward through the KL and the whole inner step, the way
    pytorch-maml-rl does it (``metalearners/maml_trpo.py``). The reference.
``gauss_newton``
    ``J^T M J v``, ``J`` the Jacobian of the adapted policy's outputs (mean and
    log-std at every post-adaptation step) with respect to theta through the
    inner step, ``M`` the Gaussian's Fisher in those outputs (``1/std^2`` for the
    mean, ``2`` for the log-std). At ``theta_old`` the KL's first derivative in
    the outputs vanishes, so this IS the exact Hessian there (Martens 2014,
    arXiv 1412.1193, section 9), with no third derivatives through the inner
    step. ``J v`` splits into ``J_post (J_adapt v)``: each inner step's Jacobian
    ``I - lr * H`` is symmetric, so ``J_adapt v`` is a reverse product through the
    retained inner-step graph, and ``J_post w`` is the double-vjp trick on the
    retained policy graph; ``J^T u`` is one backward through both.
``adapted_fisher``
    The Fisher at the adapted parameters, taking ``d phi / d theta = I``: no
    pass over the pre-adaptation data at all. Equals ``exact`` for first-order
    MAML, and is the first-order approximation otherwise.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from metarl.adaptation import AdaptationSettings
from metarl.config import (
    ConfigError,
    MetaOptimizerConfig,
    check_non_negative,
    check_one_of,
    check_positive,
    with_settings,
)
from metarl.meta_learners import MAML, MetaLearner
from metarl.objectives import MetaBatch, outer_surrogate
from metarl.optim import (
    backtracking_line_search,
    check_finite,
    check_step_inputs,
    conjugate_gradient,
    flat,
    hessian_vector_product,
    mean_kl,
    unflat,
)
from metarl.policies import Params, params_of

__all__ = [
    "CURVATURE_PRODUCTS",
    "FVP_KINDS",
    "TRPO",
    "TRPOConfig",
    "adapted_fisher_fvp",
    "exact_fvp",
    "gauss_newton_fvp",
    "kl_hessian_fvp",
    "output_fisher_fvp",
]


def exact_fvp(kl: Tensor, params: Sequence[Tensor], damping: float) -> Callable[[Tensor], Tensor]:
    """The KL's Hessian-vector product by double backward through everything ``kl`` depends on."""
    return hessian_vector_product(kl, params, damping)


def _fisher_weights(mask: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    # d^2 KL / d mean^2 = 1 / std^2 and d^2 KL / d log_std^2 = 2 per action
    # dimension, times each valid step's weight in the task mean and the task mean.
    mask = mask.to(std.dtype)
    weight = mask / mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0) / mask.shape[0]
    weight = weight.unsqueeze(-1)
    return weight / std.detach().square(), (2.0 * weight).expand_as(std)


def output_fisher_fvp(
    trace: Sequence[Params],
    mean: Tensor,
    std: Tensor,
    mask: Tensor,
    params: Sequence[Tensor],
    damping: float,
    through_adaptation: bool = True,
    step_sizes: Sequence[Mapping[str, Tensor]] | None = None,
) -> Callable[[Tensor], Tensor]:
    """``v -> J^T M J v + damping * v`` through the inner steps (see the module docstring).

    Args:
        trace: stacked parameters before and after each inner step, as returned
            by :func:`metarl.adaptation.adapt_steps` (graphs retained).
        mean, std: the policy at the post-adaptation observations under ``trace[-1]``.
        mask: the post-adaptation mask ``[K, T, E]``.
        params: the shared parameters theta that ``trace[0]`` expands, in flat-vector order,
            then the learned step sizes if there are any.
        damping: added times ``v``.
        through_adaptation: ``J`` through the inner steps (``gauss_newton``); False takes
            ``d phi / d theta = I``, giving ``mean_k F_k(phi_k) v``, the Fisher at the
            adapted parameters (``adapted_fisher``; only ``trace[-1]`` is used).
        step_sizes: MAML++'s learned rates, one mapping per step from parameter name to
            a scalar tensor, that sit in ``params`` after theta (step by step, each in
            theta's order); ``None`` when the step sizes are fixed.

    ``J_adapt v`` is taken as a vjp, which needs every inner step's Jacobian to
    be symmetric: it is for the three inner surrogates here, whose autograd
    second derivatives are Hessians (DiCE's that of its importance-weighted twin).
    With learned rates, step ``k``'s Jacobian ``J = I - D H`` (``D`` the rates) is
    not symmetric, and a rate's own column is ``d phi_{k+1} / d rate = -g_k``, the
    step's inner gradient: both forward products are taken exactly as the double
    vjp of the step (a backward of its vjp on dummy cotangents), with no division
    by a rate, which may be 0.
    """
    params = list(params)
    if step_sizes is not None:
        return _learned_rate_fisher_fvp(
            trace, mean, std, mask, params, damping, through_adaptation, step_sizes
        )
    num_tasks = mask.shape[0]
    phi = list(trace[-1].values())
    outputs = (mean, std.log())
    fisher = _fisher_weights(mask, std)
    # J_post^T u is linear in u: build it once on dummy cotangents, then every
    # J_post w is a backward of it with respect to the dummies (double-vjp trick).
    dummies = [torch.zeros_like(o, requires_grad=True) for o in outputs]
    jt_dummy = torch.autograd.grad(outputs, phi, dummies, create_graph=True)

    def product(v: Tensor) -> Tensor:
        w = [x.expand(num_tasks, *x.shape) for x in unflat(v, params)]
        if through_adaptation:
            # Each step's Jacobian I - lr * H is symmetric: J_i w = J_i^T w, a vjp.
            for before, after in itertools.pairwise(trace):
                w = torch.autograd.grad(
                    list(after.values()), list(before.values()), w, retain_graph=True
                )
        jv = torch.autograd.grad(jt_dummy, dummies, w, retain_graph=True)
        u = [f * j for f, j in zip(fisher, jv, strict=True)]
        if through_adaptation:
            jtu = torch.autograd.grad(outputs, params, u, retain_graph=True)
        else:
            jtu = [g.sum(0) for g in torch.autograd.grad(outputs, phi, u, retain_graph=True)]
        return flat(jtu) + damping * v

    return product


def _learned_rate_fisher_fvp(
    trace: Sequence[Params],
    mean: Tensor,
    std: Tensor,
    mask: Tensor,
    params: list[Tensor],
    damping: float,
    through_adaptation: bool,
    step_sizes: Sequence[Mapping[str, Tensor]],
) -> Callable[[Tensor], Tensor]:
    """:func:`output_fisher_fvp` with learned rates among the parameters (one per tensor, or
    one per entry: Meta-SGD's)."""
    names = list(trace[0])
    num_tasks, count = mask.shape[0], len(names)
    phi = list(trace[-1].values())
    outputs = (mean, std.log())
    fisher = _fisher_weights(mask, std)
    dummies = [torch.zeros_like(o, requires_grad=True) for o in outputs]
    jt_dummy = torch.autograd.grad(outputs, phi, dummies, create_graph=True)
    steps = []  # per inner step: its output, its rates, dummy cotangents u and the vjp on u
    for (before, after), rates in zip(itertools.pairwise(trace), step_sizes, strict=True):
        inputs, out = list(before.values()), list(after.values())
        rate = [rates[n] for n in names]
        cotangents = [torch.zeros_like(o, requires_grad=True) for o in out]
        # [J^T u; (d out / d rate)^T u], linear in u: the forward products J w and
        # (d out / d rate) r = -g * r are one backward of it with respect to u.
        vjp = torch.autograd.grad(
            out, inputs + rate, cotangents, create_graph=True, materialize_grads=True
        )
        steps.append((out, rate, cotangents, vjp))

    def product(v: Tensor) -> Tensor:
        chunks = unflat(v, params)
        w = [x.expand(num_tasks, *x.shape) for x in chunks[:count]]
        for k, (_, _, cotangents, vjp) in enumerate(steps):
            dv = chunks[count * (k + 1) : count * (k + 2)]
            if through_adaptation:  # J w + (d out / d rate) dv
                w = torch.autograd.grad(vjp, cotangents, [*w, *dv], retain_graph=True)
            else:  # J taken as I
                moved = torch.autograd.grad(vjp[count:], cotangents, dv, retain_graph=True)
                w = [x + m for x, m in zip(w, moved, strict=True)]
        jv = torch.autograd.grad(jt_dummy, dummies, w, retain_graph=True)
        u = [f * j for f, j in zip(fisher, jv, strict=True)]
        if through_adaptation:
            jtu = list(torch.autograd.grad(outputs, params, u, retain_graph=True))
        else:
            at_phi = torch.autograd.grad(outputs, phi, u, retain_graph=True)
            jtu = [g.sum(0) for g in at_phi]
            for out, rate, _, _ in steps:
                jtu += torch.autograd.grad(out, rate, at_phi, retain_graph=True)
        return flat(jtu) + damping * v

    return product


def kl_hessian_fvp(
    trace: Sequence[Params],
    mean: Tensor,
    std: Tensor,
    mask: Tensor,
    params: Sequence[Tensor],
    damping: float,
) -> Callable[[Tensor], Tensor]:
    """:func:`exact_fvp` of the mean KL at ``(mean, std)``, whose graph reaches ``params``
    through the inner steps (``trace`` is not needed)."""
    return exact_fvp(mean_kl(mean.detach(), std.detach(), mean, std, mask), params, damping)


gauss_newton_fvp = functools.partial(output_fisher_fvp, through_adaptation=True)
"""``(trace, mean, std, mask, params, damping) -> (v -> J^T M J v + damping * v)``."""
adapted_fisher_fvp = functools.partial(output_fisher_fvp, through_adaptation=False)
"""``(trace, mean, std, mask, params, damping) -> (v -> mean_k F_k(phi_k) v + damping * v)``."""

CURVATURE_PRODUCTS: dict[str, Callable[..., Callable[[Tensor], Tensor]]] = {
    "exact": kl_hessian_fvp,
    "gauss_newton": gauss_newton_fvp,
    "adapted_fisher": adapted_fisher_fvp,
}
"""The curvature products ``F v`` :class:`TRPO` offers by name (its ``fvp``), each called as
``(trace, mean, std, mask, params, damping) -> (v -> F v)`` (the module docstring says which is which)."""
FVP_KINDS = tuple(CURVATURE_PRODUCTS)
"""Their names (the config validates against this)."""


@dataclass(frozen=True)
class TRPOConfig(MetaOptimizerConfig):
    """TRPO meta-optimizer (Schulman et al. 2015), as used by MAML-RL (Finn et al. 2017)."""

    NAME: ClassVar[str] = "trpo"

    name: Literal["trpo"] = "trpo"
    """Selects this optimizer under ``meta_optimizer:``."""
    max_kl: float = 0.01
    """Trust-region size: mean KL between old and new adapted policies (MAML-RL: 0.01)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the natural-gradient direction (rllab: 10)."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector product (rllab: 1e-5)."""
    ls_max_steps: int = 15
    """Backtracking line-search steps before the update is rejected (rllab: 15)."""
    ls_backtrack_ratio: float = 0.8
    """Step shrink factor per line-search step, in (0, 1) (rllab: 0.8)."""
    fvp: str = "gauss_newton"
    """Fisher-vector product form: exact | gauss_newton | adapted_fisher (module docstring;
    gauss_newton equals exact at theta_old, Martens 2014, section 9)."""
    cg_subsample: float = 1.0
    """Share of the tasks whose episodes estimate the curvature (a new draw each step), in
    (0, 1] (TRPO's subsampled Fisher, Schulman et al. 2015, appendix C.1)."""

    def _check(self) -> None:
        check_positive(self.max_kl, "max_kl")
        check_positive(self.cg_iters, "cg_iters")
        check_non_negative(self.cg_damping, "cg_damping")
        check_positive(self.ls_max_steps, "ls_max_steps")
        if not 0 < self.ls_backtrack_ratio < 1:
            raise ConfigError(
                f"must be in (0, 1), got {self.ls_backtrack_ratio!r}", key="ls_backtrack_ratio"
            )
        check_one_of(self.fvp, FVP_KINDS, "fvp")
        if not 0 < self.cg_subsample <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.cg_subsample!r}", key="cg_subsample")


class TRPO:
    """TRPO meta-optimizer: natural gradient by CG, backtracking line search on the mean KL.

    Built from a :class:`~metarl.config.TRPOConfig` (``TRPO(config)``) or from its
    fields as keywords (``TRPO(max_kl=0.02)``); the config checks the values.

    Settings (the config's fields):
        max_kl: trust-region size, the largest accepted mean KL (MAML-RL: 0.01).
        cg_iters: conjugate-gradient iterations (products ``F v``) per step.
        cg_damping: ``F + cg_damping * I`` keeps the system positive definite.
        ls_max_steps: line-search trials before the step is rejected.
        ls_backtrack_ratio: step shrink factor between trials, in (0, 1).
        fvp: ``exact | gauss_newton | adapted_fisher`` (module docstring).
        cg_subsample: share of the meta-batch's tasks whose episodes estimate the
            curvature matrix (a new random draw each step); 1 uses them all. The
            products cost in proportion; the line search checks the KL on every task.
    """

    def __init__(self, config: TRPOConfig | None = None, **settings: Any) -> None:
        # The config checks every value, once.
        self.config = config = with_settings(TRPOConfig, config, settings)
        self.max_kl = config.max_kl
        self.cg_iters = config.cg_iters
        self.cg_damping = config.cg_damping
        self.ls_max_steps = config.ls_max_steps
        self.ls_backtrack_ratio = config.ls_backtrack_ratio
        self.fvp = config.fvp
        self.cg_subsample = config.cg_subsample
        self.num_steps = 0
        self.num_skipped = 0

    def step(
        self,
        policy: nn.Module,
        batch: MetaBatch,
        adaptation: AdaptationSettings,
        learner: MetaLearner | None = None,
    ) -> dict[str, float]:
        """One meta-update of ``policy`` in place; returns metrics.

        Reads as TRPO does: the meta-loss and its gradient through the inner step, the
        natural-gradient direction by conjugate gradient on the curvature product,
        then a backtracking line search on the exact mean KL. ``learner`` (default MAML)
        says how to re-adapt and how to form the meta-gradient
        (:mod:`metarl.meta_learners`); its own meta-parameters move with the policy's.

        Metrics: ``loss_before``, ``loss_after`` (surrogate, lower is better),
        ``kl`` (mean KL of the accepted step, 0 if rejected), ``ls_steps``,
        ``step_fraction`` (accepted multiple of the full step, 0 if rejected),
        ``skipped`` (1 when no step was tried: the curvature was not positive),
        ``grad_norm``.

        Raises:
            FloatingPointError: NaN/inf in the parameters, the batch, the loss,
                its gradient or the step, before the parameters change.
        """
        learner = MAML() if learner is None else learner
        theta = params_of(policy)
        params = learner.meta_parameters(policy)
        check_step_inputs(params, batch)
        self.num_steps += 1

        # 1. The meta-loss through the inner step, and its gradient (graph kept for F v).
        trace, mean, std = learner.adapted_stats(policy, theta, batch, adaptation)
        old_mean, old_std = mean.detach(), std.detach()
        loss = learner.meta_loss(
            policy, theta, batch, adaptation, trace, mean, std, outer_surrogate
        )
        check_finite("meta-loss", loss)
        loss_before = float(loss.detach())
        grad = flat(
            learner.meta_gradient(policy, loss, params, trace, batch, adaptation, retain_graph=True)
        )
        check_finite("meta-gradient", grad)
        metrics = {
            "loss_before": loss_before,
            "loss_after": loss_before,
            "kl": 0.0,
            "ls_steps": 0.0,
            "step_fraction": 0.0,
            "grad_norm": float(grad.norm()),
            "skipped": 0.0,
        }

        # 2. The natural-gradient direction x = F^-1 g, scaled to the trust region's edge.
        x = conjugate_gradient(
            self._fvp(policy, theta, params, batch, adaptation, learner, trace, mean, std),
            grad,
            self.cg_iters,
        )
        check_finite("conjugate-gradient step", x)
        del trace, mean, std, loss  # free the graphs before the line search
        curvature = float(x @ grad)  # x^T F x = x^T g for CG iterates from 0
        if not curvature > 0:
            # A zero gradient or a non-positive curvature estimate: no step, said out loud.
            self.num_skipped += 1
            warnings.warn(
                f"TRPO skipped its step: the curvature estimate g^T F^-1 g = {curvature:.3g} is not "
                "positive (a zero meta-gradient, or too few CG iterations / too little damping)",
                RuntimeWarning,
                stacklevel=2,
            )
            metrics["skipped"] = 1.0
            return metrics
        step = -x * (2.0 * self.max_kl / curvature) ** 0.5

        # 3. Backtracking line search: a lower loss within the KL bound, or no change.
        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                now = params_of(policy)
                trace, mean, std = learner.adapted_stats(policy, now, batch, adaptation, True)
                loss = learner.meta_loss(
                    policy, now, batch, adaptation, trace, mean, std, outer_surrogate
                )
                kl = mean_kl(old_mean, old_std, mean, std, batch.post.mask)
            return float(loss), float(kl)

        result = backtracking_line_search(
            params,
            step,
            evaluate,
            loss_before,
            self.max_kl,
            self.ls_max_steps,
            self.ls_backtrack_ratio,
        )
        metrics["ls_steps"] = float(result.steps)
        if result.fraction is not None:
            metrics.update(loss_after=result.loss, kl=result.kl, step_fraction=result.fraction)
        return metrics

    def _fvp(
        self,
        policy: nn.Module,
        theta: Params,
        params: Sequence[Tensor],
        batch: MetaBatch,
        adaptation: AdaptationSettings,
        learner: MetaLearner,
        trace: Sequence[Params],
        mean: Tensor,
        std: Tensor,
    ) -> Callable[[Tensor], Tensor]:
        """``v -> F v`` on every task, or on a random share of them (``cg_subsample``): a
        new draw every step, from the step counter, so a resumed run draws the same."""
        mask = batch.post.mask
        if self.cg_subsample < 1.0:
            num_tasks = batch.num_tasks
            count = max(1, round(self.cg_subsample * num_tasks))
            draw = torch.Generator().manual_seed(self.num_steps - 1)
            chosen = torch.randperm(num_tasks, generator=draw)[:count].sort().values
            sub = batch.select(chosen)
            trace, mean, std = learner.adapted_stats(policy, theta, sub, adaptation)
            mask = sub.post.mask
        product = CURVATURE_PRODUCTS[self.fvp]
        rates = learner.curvature_step_sizes()
        if rates is None:
            return product(trace, mean, std, mask, list(params), self.cg_damping)
        return product(trace, mean, std, mask, list(params), self.cg_damping, step_sizes=rates)

    def state_dict(self) -> dict[str, Any]:
        """TRPO keeps no optimizer state beyond its step counters."""
        return {"num_steps": self.num_steps, "num_skipped": self.num_skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        self.num_skipped = int(state.get("num_skipped", 0))
