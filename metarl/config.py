"""Typed experiment configs, loaded from YAML with clear errors (the config contract).

Each config is a frozen dataclass with a docstring per field, in the style of
CleanRL's ``Args``. Every way in (``load_config``, ``Config.from_dict`` and the
constructors themselves) checks keys, types and values before any work starts
and raises :class:`ConfigError` naming the full dotted key, for example::

    adaptaton: unknown key; did you mean 'adaptation'?
    adaptation.lr: must be positive, got -0.1

Overrides are ``"a.b=value"`` strings whose value is read as a YAML scalar or
flow collection (``policy.hidden_sizes=[64,64]``). Setting ``meta_optimizer.name``
to a different optimizer starts that optimizer from its defaults: the old
optimizer's keys from the file are dropped, and other ``meta_optimizer.*``
overrides given on the same command line then apply (in any order) and are
checked against the new optimizer.

A config file may start from another: ``base: navigation2d.yaml`` (a path
relative to the file) reads that file first and then sets this file's keys over
it, as overrides would (a nested mapping changes only the keys it names, and a
different ``meta_optimizer.name`` starts that optimizer afresh). Bases may
chain; a cycle is an error. The method configs under
``experiments/configs/variants/`` are written this way.

YAML is read with PyYAML's safe loader, changed in two ways: ``1e-5`` is a
float (YAML 1.2; PyYAML's YAML 1.1 reads it as a string), and a key given twice
in one mapping is an error instead of silently keeping the last.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from metarl.errors import InputError
from metarl.policies import ACTIVATIONS, INITS

__all__ = [
    "META_OPTIMIZERS",
    "AdaptationConfig",
    "Config",
    "ConfigError",
    "IMAMLConfig",
    "PPOConfig",
    "PolicyConfig",
    "ReptileConfig",
    "RewardScaledStepConfig",
    "SamplerConfig",
    "TRPOConfig",
    "load_config",
    "parse_override",
    "save_config",
    "with_settings",
]

# The valid names live with the things they name (metarl.objectives.OBJECTIVES,
# metarl.sampler.SAMPLER_KINDS, metarl.meta_optimizers.trpo.FVP_KINDS and
# KL_DIRECTIONS, metarl.meta_learners.META_LEARNERS); the configs
# check against those lists, imported where they are used so no import cycle forms.

# Gymnasium's id grammar (gymnasium/envs/registration.py ENV_ID_RE), with the
# namespace and the version made mandatory: every metarl id is namespace/Name-vN.
_ENV_ID_RE = re.compile(r"^[\w:.-]+/[\w:.-]+?-v\d+$")


class ConfigError(InputError):
    """A config key is unknown, of the wrong type, or holds an impossible value.

    Attributes:
        key: the full dotted key at fault (``""`` for the whole config).
        reason: what is wrong with it.
        source: the file it came from, when known.
    """

    def __init__(
        self, reason: str, *, key: str = "", source: str | os.PathLike[str] | None = None
    ) -> None:
        self.key, self.reason, self.source = key, reason, source
        where = f"{source}: " if source is not None else ""
        super().__init__(f"{where}{key}: {reason}" if key else f"{where}{reason}")

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key moved below ``prefix``."""
        return ConfigError(self.reason, key=_join(prefix, self.key), source=self.source)


def _err(key: str, reason: str, source: str | os.PathLike[str] | None = None) -> ConfigError:
    return ConfigError(reason, key=key, source=source)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


# --- field checks ----------------------------------------------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints become floats where floats are due)."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise _err(key, f"expected a bool (true/false), got {_type_name(value)} {value!r}")
        return value
    if hint is int:
        # bool is an int subclass; `steps: true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _err(key, f"expected an int, got {_type_name(value)} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _err(key, f"expected a number, got {_type_name(value)} {value!r}")
        if not math.isfinite(value):
            raise _err(key, f"must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _err(key, f"expected a string, got {_type_name(value)} {value!r}")
        return value
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise _err(key, f"must be {typing.get_args(hint)[0]!r}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _err(key, f"expected a mapping, got {_type_name(value)} {value!r}")
        for name in value:
            if not isinstance(name, str):
                raise _err(key, f"keys must be strings, got {_type_name(name)} {name!r}")
        return {name: _plain(v, f"{key}.{name}") for name, v in value.items()}
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _err(key, f"expected a list, got {_type_name(value)} {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if type(None) in options:  # X | None: None, or a value of X
            rest = [o for o in options if o is not type(None)]
            if value is None:
                return None
            if len(rest) != 1:
                raise TypeError(f"config field {key}: only X | None is supported, got {hint!r}")
            return _coerce(value, rest[0], key)
        if all(dataclasses.is_dataclass(o) for o in options):
            return _coerce_variant(value, options, key)
        # float | list[float]: a list goes to the list branch, anything else to the scalar one.
        wanted = list if isinstance(value, list | tuple) else float
        for option in options:
            if option is wanted or typing.get_origin(option) is wanted:
                return _coerce(value, option, key)
        raise _err(key, f"expected {hint}, got {_type_name(value)} {value!r}")
    if dataclasses.is_dataclass(hint):
        return _from_mapping(hint, value, key)
    raise TypeError(f"config field {key} has an unsupported type {hint!r}")  # a bug here


def _plain(value: Any, key: str) -> Any:
    """A YAML scalar or list of scalars, as given (the receiver checks its meaning)."""
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise _err(
        key, f"expected a finite number, bool, string or list, got {_type_name(value)} {value!r}"
    )


def _coerce_variant(value: Any, options: tuple[type, ...], key: str) -> Any:
    """A mapping with a ``name`` key turned into the dataclass registered under that name."""
    if isinstance(value, options):
        return value
    if not isinstance(value, Mapping):
        raise _err(key, f"expected a mapping, got {_type_name(value)} {value!r}")
    registry = {o.NAME: o for o in options}
    default = next(iter(registry))
    name = value.get("name", default)
    if not isinstance(name, str) or name not in registry:
        raise _err(
            _join(key, "name"),
            f"unknown {key.replace('_', ' ') or 'variant'} {name!r}; expected one of "
            f"{sorted(registry)}{_suggest(name, registry)}",
        )
    return _from_mapping(registry[name], value, key)


def _suggest(word: Any, choices: Sequence[str] | Mapping[str, Any]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _from_mapping(cls: type, data: Any, key: str = "") -> Any:
    """Build the config dataclass ``cls`` from ``data``; errors name keys below ``key``."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        what = f"{key!r}" if key else "the config"
        raise _err(
            key, f"expected a mapping for {what} ({cls.__name__}), got {_type_name(data)} {data!r}"
        )
    names = [f.name for f in fields(cls)]
    for name in data:
        if name not in names:
            raise _err(
                _join(key, str(name)),
                f"unknown key{_suggest(name, names)} (valid keys: {', '.join(names)})",
            )
    for f in fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            raise _err(_join(key, f.name), "required key is missing")
    try:
        return cls(**data)
    except ConfigError as err:
        raise err.under(key) from None


class _Checked:
    """Mixin: type-check and normalise every field after ``__init__``, then run ``_check``."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = _coerce(getattr(self, f.name), hints[f.name], f.name)
            # Frozen dataclasses: normalising (int -> float, dict -> config) must bypass it.
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Value checks beyond the type; raise ConfigError with the field's name."""

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-ready dict (nested configs become dicts, lists are copied)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _positive(value: float | int, key: str) -> None:
    if not value > 0:
        raise _err(key, f"must be positive, got {value!r}")


def _non_negative(value: float | int, key: str) -> None:
    if not value >= 0:
        raise _err(key, f"must be non-negative, got {value!r}")


def _one_of(value: str, choices: Sequence[str], key: str) -> None:
    if value not in choices:
        raise _err(key, f"must be one of {list(choices)}, got {value!r}{_suggest(value, choices)}")


# --- configs ---------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig(_Checked):
    """The Gaussian MLP policy (Finn et al. 2017, appendix A.2: two layers of 100 ReLU)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [100, 100])
    """Widths of the hidden layers."""
    activation: str = "relu"
    """Hidden activation: one of metarl.policies.ACTIVATIONS (relu, tanh, elu)."""
    init_std: float = 1.0
    """Initial standard deviation of the action the env receives (rllab's default: 1)."""
    init: str = "torch"
    """Linear-layer initialisation: one of metarl.policies.INITS (xavier_uniform, torch)."""
    action_scale: float = 1.0
    """Env action = network action times this (pytorch-maml-rl: 0.1); see GaussianMLPPolicy."""
    obs_normalization: bool = False
    """Standardise the observation by a running mean and std of every observation meta-training
    has sampled, inside the policy (SB3's VecNormalize); see GaussianMLPPolicy. The paper and
    the peers feed raw observations."""
    context_dim: int = 0
    """CAVIA's context parameters (Zintgraf et al. 2019): this many zeros appended to the
    observation, adapted alone by ``meta_learner: cavia``; 0: none (the paper's policy)."""

    def _check(self) -> None:
        for i, width in enumerate(self.hidden_sizes):
            _positive(width, f"hidden_sizes[{i}]")
        _one_of(self.activation, sorted(ACTIVATIONS), "activation")
        _positive(self.init_std, "init_std")
        _one_of(self.init, sorted(INITS), "init")
        _positive(self.action_scale, "action_scale")
        _non_negative(self.context_dim, "context_dim")


@dataclass(frozen=True)
class RewardScaledStepConfig(_Checked):
    """Each task's inner step scaled by how far its episodes' mean reward per step falls short:
    ``lr * clip((zero_reward - r) / unit, 0, max_scale)``, ``r`` the task's mean reward per step
    over the episodes the step adapts on. Off while ``zero_reward`` is null (the paper's step).

    A standardised step has one size whatever the task's return, so a task the policy nearly
    solves is moved as far as one it fails; this sizes the step by the reward itself. The values
    are the task distribution's (HalfCheetahVel: -0.1, about the control cost of meeting the
    target, and 0.4 per step of lr)."""

    zero_reward: float | None = None
    """Mean reward per step at (and above) which a task takes no step; null: the plain step."""
    unit: float = 1.0
    """Shortfall of the mean reward per step that takes one step of ``lr``."""
    max_scale: float = 1.5
    """The largest multiple of ``lr`` a task takes."""

    def _check(self) -> None:
        _positive(self.unit, "unit")
        _positive(self.max_scale, "max_scale")


@dataclass(frozen=True)
class AdaptationConfig(_Checked):
    """The inner loop: ``steps`` policy-gradient steps ``phi = theta - lr * grad L(theta)``."""

    lr: float | list[float] = 0.1
    """Inner step size: one for every step, or a list with one per step (the paper: 0.1)."""
    steps: int = 1
    """Inner gradient steps during meta-training."""
    first_order: bool = False
    """Drop second derivatives through the inner step (first-order MAML)."""
    first_order_iterations: int = 0
    """MAML++'s derivative-order annealing: first order for the first N iterations, then as
    ``first_order`` says (Antoniou et al. 2019, section 4)."""
    learn_lr: bool = False
    """MAML++'s learned inner rates: one rate per parameter tensor and step, starting at ``lr``
    and meta-trained with the policy (Antoniou et al. 2019, section 4, LSLR); meta_learner maml."""
    learn_lr_per_parameter: bool = False
    """Meta-SGD's learned rates (Li et al. 2017, arXiv 1707.09835): one rate per parameter
    entry and step instead of one per tensor, so the inner step is ``theta - alpha * grad``
    with ``alpha`` the shape of ``theta`` (a meta-learned direction and size). Needs
    ``learn_lr``."""
    multi_step_loss_iterations: int = 0
    """MAML++'s multi-step loss: for the first N iterations the meta-loss sums the surrogate
    after every inner step, weights annealed toward the last step; 0 turns it off. Needs
    steps >= 2 (Antoniou et al. 2019, section 4, MSL)."""
    normalize_advantages: bool | None = None
    """Standardise the inner step's advantages per task (rllab's center_adv); ``null`` follows
    the top-level ``normalize_advantages``. ``false`` keeps their scale, so the step grows with
    how much the task's returns differ (a task already nearly solved takes a small step)."""
    reward_scaled_step: RewardScaledStepConfig = field(default_factory=RewardScaledStepConfig)
    """Each task's step sized by its episodes' mean reward (off by default; meta_learner maml)."""

    @property
    def lrs(self) -> list[float]:
        """The step size of each inner step, ``steps`` entries."""
        return list(self.lr) if isinstance(self.lr, list) else [self.lr] * self.steps

    def _check(self) -> None:
        _positive(self.steps, "steps")
        _non_negative(self.first_order_iterations, "first_order_iterations")
        _non_negative(self.multi_step_loss_iterations, "multi_step_loss_iterations")
        if self.learn_lr_per_parameter and not self.learn_lr:
            raise _err(
                "learn_lr_per_parameter",
                "shapes the learned inner rates, and learn_lr is false; set learn_lr: true "
                "(Meta-SGD) or learn_lr_per_parameter: false",
            )
        if self.multi_step_loss_iterations and self.steps < 2:
            raise _err(
                "multi_step_loss_iterations",
                f"weighs the loss after each of several inner steps, and steps is {self.steps}; "
                "set steps >= 2 or multi_step_loss_iterations: 0",
            )
        if isinstance(self.lr, list):
            if len(self.lr) != self.steps:
                raise _err(
                    "lr", f"has {len(self.lr)} entries but steps is {self.steps}; give one per step"
                )
            for i, lr in enumerate(self.lr):
                _positive(lr, f"lr[{i}]")
        else:
            _positive(self.lr, "lr")


@dataclass(frozen=True)
class TRPOConfig(_Checked):
    """TRPO meta-optimizer (Schulman et al. 2015), as used by MAML-RL."""

    NAME: ClassVar[str] = "trpo"

    name: Literal["trpo"] = "trpo"
    """Selects this optimizer under ``meta_optimizer:``."""
    max_kl: float = 0.01
    """Trust-region size: mean KL between old and new adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the natural-gradient direction."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector product."""
    ls_max_steps: int = 15
    """Backtracking line-search steps before the update is rejected."""
    ls_backtrack_ratio: float = 0.8
    """Step shrink factor per line-search step, in (0, 1)."""
    fvp: str = "gauss_newton"
    """Fisher-vector product form: exact | gauss_newton | adapted_fisher."""
    cg_subsample: float = 1.0
    """Share of the tasks whose episodes estimate the curvature (a new draw each step), in (0, 1]."""
    kl_direction: str = "old_new"
    """The trust region's KL: old_new is KL(old || new) (rllab's, the paper's code), new_old
    KL(new || old) (pytorch-maml-rl's). Equal curvature at the old policy; the line search differs."""

    def _check(self) -> None:
        _positive(self.max_kl, "max_kl")
        _positive(self.cg_iters, "cg_iters")
        _non_negative(self.cg_damping, "cg_damping")
        _positive(self.ls_max_steps, "ls_max_steps")
        if not 0 < self.ls_backtrack_ratio < 1:
            raise _err("ls_backtrack_ratio", f"must be in (0, 1), got {self.ls_backtrack_ratio!r}")
        from metarl.meta_optimizers.trpo import FVP_KINDS, KL_DIRECTIONS

        _one_of(self.fvp, FVP_KINDS, "fvp")
        if not 0 < self.cg_subsample <= 1:
            raise _err("cg_subsample", f"must be in (0, 1], got {self.cg_subsample!r}")
        _one_of(self.kl_direction, KL_DIRECTIONS, "kl_direction")


@dataclass(frozen=True)
class PPOConfig(_Checked):
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
    on the pre-adaptation observations (ProMP: 5e-4)."""
    anchor_kl_coeff: float = 0.0
    """Penalty on the KL from the pre-adaptation policy at the run's first meta-step (after
    ``init_from``) to the current one, on the pre-adaptation observations: where
    ``inner_kl_coeff`` bounds each step's move, this bounds how far the moves add up over a
    run. 0 (ProMP's) disables."""
    max_kl: float = 0.0
    """Largest accepted mean KL between the post-adaptation policies before and after a
    meta-step (the ``kl`` column); a larger step is halved along its own direction until it
    fits, and dropped after 10 halvings. 0 (ProMP's) bounds nothing: the clip bounds the
    incentive, not the step."""

    def _check(self) -> None:
        _positive(self.lr, "lr")
        _positive(self.epochs, "epochs")
        _positive(self.clip, "clip")
        _non_negative(self.inner_kl_coeff, "inner_kl_coeff")
        _non_negative(self.anchor_kl_coeff, "anchor_kl_coeff")
        _non_negative(self.max_kl, "max_kl")


META_OPTIMIZERS: dict[str, type[TRPOConfig] | type[PPOConfig]] = {
    "trpo": TRPOConfig,
    "ppo": PPOConfig,
}


@dataclass(frozen=True)
class ReptileConfig(_Checked):
    """Reptile's outer step (Nichol et al. 2018), used when ``meta_learner: reptile``."""

    epsilon: float = 1.0
    """Outer step size: theta += epsilon * mean_over_tasks(phi_K - theta) (Nichol et al.'s
    initial value: 1); Adam's learning rate with ``optimizer: adam`` (then about 0.001-0.01)."""
    optimizer: str = "sgd"
    """sgd (the plain interpolation) | adam (Adam on the direction theta - phi_K)."""

    def _check(self) -> None:
        from metarl.meta_learners import REPTILE_OPTIMIZERS

        _positive(self.epsilon, "epsilon")
        _one_of(self.optimizer, REPTILE_OPTIMIZERS, "optimizer")


@dataclass(frozen=True)
class IMAMLConfig(_Checked):
    """iMAML's inner problem and implicit meta-gradient (Rajeswaran et al. 2019), used when
    ``meta_learner: imaml``."""

    lam: float = 10.0
    """Proximal weight lambda of the inner problem L(phi) + lambda / 2 * ||phi - theta||^2.
    1 / adaptation.lr makes each inner step phi = theta - lr * grad L(phi_before)."""
    cg_iters: int = 5
    """Conjugate-gradient iterations for (I + H / lambda)^-1 g (the paper: 5)."""

    def _check(self) -> None:
        _positive(self.lam, "lam")
        _positive(self.cg_iters, "cg_iters")


@dataclass(frozen=True)
class CAVIAConfig(_Checked):
    """CAVIA's inner step (Zintgraf et al. 2019), used when ``meta_learner: cavia``: each task
    adapts the policy's context parameters alone (``policy.context_dim`` of them)."""

    lr: float = 10.0
    """Step size of the context's inner steps (CAVIA's HalfCheetah value: 10); later
    evaluation steps take half of it, as the paper's. ``adaptation.lr`` stays the step of the
    baselines evaluated beside it, which have no context."""

    def _check(self) -> None:
        _positive(self.lr, "lr")


@dataclass(frozen=True)
class SamplerConfig(_Checked):
    """How episodes are collected."""

    kind: str = "batched"
    """batched (mujoco.batch) | sync | async (gymnasium vector envs) | ray (Ray actors)."""
    num_threads: int = 0
    """Worker threads for the physics; 0 uses every core (batched)."""
    workers: int = 2
    """Ray actors, each sampling a contiguous block of the tasks (ray)."""
    threads_per_worker: int = 1
    """Physics threads, and CPUs asked of Ray, per actor (ray)."""
    address: str | None = None
    """null starts a local Ray; auto joins a running cluster; ray://host:port through Ray Client."""
    timeout_s: float = 30.0
    """Seconds a replacement actor may take to start before a SamplerError (ray)."""
    start_timeout_s: float = 300.0
    """Seconds the first actors may take to start (each imports torch and MuJoCo) (ray)."""
    max_restarts: int = 3
    """Dead actors replaced per sample call; 0 raises at the first death (ray)."""

    def _check(self) -> None:
        from metarl.sampler import SAMPLER_KINDS

        _one_of(self.kind, SAMPLER_KINDS, "kind")
        _non_negative(self.num_threads, "num_threads")
        _positive(self.workers, "workers")
        _positive(self.threads_per_worker, "threads_per_worker")
        _positive(self.timeout_s, "timeout_s")
        _positive(self.start_timeout_s, "start_timeout_s")
        _non_negative(self.max_restarts, "max_restarts")


@dataclass(frozen=True)
class Config(_Checked):
    """One meta-training run (the config contract). Defaults follow Finn et al. 2017."""

    env: str
    """Gymnasium id of the task distribution, ``namespace/Name-vN``."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor keywords of the env (its options, e.g. ``ctrl_cost_weight``), for every engine."""
    seed: int = 0
    """Seed of every random generator of the run."""
    iterations: int = 500
    """Meta-iterations (the paper: up to 500)."""
    tasks_per_batch: int = 40
    """Tasks in one meta-batch (the paper: 40; 20 for 2-D navigation)."""
    episodes_per_task: int = 20
    """Episodes per task, before and after adaptation (the paper: 20; 40 for ant-dir)."""
    horizon: int = 200
    """Maximum steps per episode (the paper: 200; 100 for 2-D navigation)."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    gae_lambda: float = 1.0
    """GAE lambda, in [0, 1]; 1 gives returns minus the baseline."""
    normalize_advantages: bool = True
    """Standardise advantages per task (rllab's center_adv): the meta-objective's, and the inner
    step's unless ``adaptation.normalize_advantages`` says otherwise."""
    baseline_reg: float = 1e-5
    """First ridge coefficient of the linear feature baseline."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Policy architecture."""
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    """Inner-loop settings."""
    objective: str = "maml"
    """Meta-gradient estimator: maml | dice | lvc | emaml."""
    tail_fraction: float = 1.0
    """The share of each meta-batch's tasks, those with the lowest post-adaptation return, that
    the meta-objective averages over, in (0, 1]. 1: every task (the paper's mean); below 1 the
    tail of the task distribution (DR-MAML's tail-task risk), so the meta-step serves the tasks
    that adapt worst, e.g. the harder direction of HalfCheetahDir."""
    meta_learner: str = "maml"
    """Method of the MAML family: maml | reptile | imaml | cavia
    (metarl.meta_learners.META_LEARNERS)."""
    meta_optimizer: TRPOConfig | PPOConfig = field(default_factory=TRPOConfig)
    """Outer-loop optimizer, chosen by its ``name`` (default trpo); Reptile makes its own step."""
    reptile: ReptileConfig = field(default_factory=ReptileConfig)
    """Reptile's outer step (``meta_learner: reptile`` only)."""
    imaml: IMAMLConfig = field(default_factory=IMAMLConfig)
    """iMAML's proximal weight and conjugate gradient (``meta_learner: imaml`` only)."""
    cavia: CAVIAConfig = field(default_factory=CAVIAConfig)
    """CAVIA's context step (``meta_learner: cavia`` only)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Episode collection."""
    checkpoint_every: int = 1
    """Write ``checkpoints/latest.pt`` every this many iterations."""
    init_from: str | None = None
    """A warm start: the run directory (as ``metarl train`` sees it from where it runs) whose
    latest checkpoint's policy parameters, its learned std included, start this run. Its policy
    must have this config's env dimensions, ``hidden_sizes``, ``activation``, ``action_scale``
    and ``obs_normalization`` (its observation statistics come with it). Learned inner rates
    come with it too when both runs learn them (``adaptation.learn_lr``, the same steps and
    shape); from a run without them they start at ``adaptation.lr``. The meta-optimizer
    (unless ``init_from_optimizer``), iterations and env steps start afresh. null: the
    policy starts from ``policy.init``."""
    init_from_optimizer: bool = False
    """With ``init_from``, start PPO's Adam moments for the policy's parameters from the source
    run's (both runs PPO), so the warm start continues the source's meta-steps. Fresh Adam's
    first steps move every coordinate by ``lr`` at once whatever its gradient: continuing the
    converged HalfCheetahDir runs that way, the first meta-step moved the adapted policy by a
    mean KL of 900 to 4e10 (``false``, the behaviour before this key, which the committed
    continuations before the KL guard ran with). ``anchor_kl_coeff``'s anchor is not carried:
    it is where this run's first meta-step finds the pre-step policy."""

    @property
    def normalize_inner_advantages(self) -> bool:
        """Whether the inner step standardises its advantages (``adaptation.normalize_advantages``,
        or the top-level ``normalize_advantages`` where that is null)."""
        inner = self.adaptation.normalize_advantages
        return self.normalize_advantages if inner is None else inner

    def _check(self) -> None:
        if not _ENV_ID_RE.match(self.env):
            raise _err(
                "env", f"must be a gymnasium id of the form namespace/Name-vN, got {self.env!r}"
            )
        _non_negative(self.seed, "seed")
        for key in ("iterations", "tasks_per_batch", "episodes_per_task", "horizon"):
            _positive(getattr(self, key), key)
        if not 0 < self.gamma <= 1:
            raise _err("gamma", f"must be in (0, 1], got {self.gamma!r}")
        if not 0 <= self.gae_lambda <= 1:
            raise _err("gae_lambda", f"must be in [0, 1], got {self.gae_lambda!r}")
        _positive(self.baseline_reg, "baseline_reg")
        if self.init_from_optimizer and self.init_from is None:
            raise _err(
                "init_from_optimizer",
                "carries a warm start's optimizer state, and init_from is null; name the run "
                "to start from in init_from, or set init_from_optimizer: false",
            )
        if self.init_from_optimizer and self.meta_optimizer.name != "ppo":
            raise _err(
                "init_from_optimizer",
                f"carries PPO's Adam moments, and meta_optimizer is {self.meta_optimizer.name} "
                "(TRPO keeps no state to carry); set it false or use meta_optimizer.name: ppo",
            )
        from metarl.objectives import OBJECTIVES

        _one_of(self.objective, OBJECTIVES, "objective")
        if not 0 < self.tail_fraction <= 1:
            raise _err("tail_fraction", f"must be in (0, 1], got {self.tail_fraction!r}")
        _positive(self.checkpoint_every, "checkpoint_every")
        if self.init_from is not None and not self.init_from.strip():
            raise _err("init_from", "must name a run directory, or be null")
        from metarl.meta_learners import META_LEARNERS

        _one_of(self.meta_learner, list(META_LEARNERS), "meta_learner")
        META_LEARNERS[self.meta_learner].check_config(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build and check a config from a plain mapping (as read from YAML)."""
        return _from_mapping(cls, data)


# --- YAML in and out -------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe loader reading ``1e-5`` as a float and refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's float syntax (exponent without a dot); PyYAML's YAML 1.1 regex
# requires a dot, so `cg_damping: 1e-5` would otherwise be the string "1e-5".
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as err:
        raise _err("", f"is not valid YAML: {err}", source) from None


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into ``(["a", "b"], value)``, the value read as YAML."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(p.strip() for p in parts):
        raise _err(
            key, f"override {override!r} must look like dotted.key=value (e.g. adaptation.lr=0.05)"
        )
    value = _read_yaml(text, f"override {override!r}")
    return [p.strip() for p in parts], value


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with the overrides set (see the module docstring for name switches)."""
    return _apply_parsed(data, [parse_override(o) for o in overrides])


def _leaves(data: Mapping[str, Any], prefix: Sequence[str] = ()) -> list[tuple[list[str], Any]]:
    """``(path, value)`` of every non-mapping value (and empty mapping) under ``data``."""
    leaves: list[tuple[list[str], Any]] = []
    for key, value in data.items():
        path = [*prefix, str(key)]
        if isinstance(value, Mapping) and value:
            leaves += _leaves(value, path)
        else:
            leaves.append((path, value))
    return leaves


def _apply_parsed(data: dict[str, Any], parsed: Sequence[tuple[list[str], Any]]) -> dict[str, Any]:
    data = _deep_copy(data)
    old_opt = data.get("meta_optimizer")
    if old_opt is None:
        old_name = TRPOConfig.NAME
    else:
        old_name = old_opt.get("name", TRPOConfig.NAME) if isinstance(old_opt, Mapping) else None
    for path, value in parsed:
        _set_path(data, path, value)
    new_opt = data.get("meta_optimizer")
    switched = any(path == ["meta_optimizer", "name"] for path, _ in parsed)
    if switched and isinstance(new_opt, Mapping) and new_opt.get("name") != old_name:
        # The file's keys belonged to the old optimizer: start the new one afresh
        # and keep only what the command line said about it.
        fresh: dict[str, Any] = {}
        for path, value in parsed:
            if path[0] == "meta_optimizer" and len(path) > 1:
                _set_path(fresh, path[1:], value, prefix="meta_optimizer")
            elif path == ["meta_optimizer"]:
                fresh = _deep_copy(value) if isinstance(value, dict) else value
        data["meta_optimizer"] = fresh
    return data


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _set_path(data: dict[str, Any], path: list[str], value: Any, prefix: str = "") -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = _join(prefix, ".".join(path[: i + 1]))
            raise _err(_join(prefix, ".".join(path)), f"cannot set it: {where} is not a mapping")
        node = child
    node[path[-1]] = value


def with_settings(config_type: type, config: Any, settings: Mapping[str, Any]) -> Any:
    """``config`` with ``settings`` changed, or a ``config_type`` built from them (checked there)."""
    if config is None:
        return config_type(**settings)
    return dataclasses.replace(config, **settings) if settings else config


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``"dotted.key=value"`` overrides, and check it all.

    Raises:
        ConfigError: a missing or unreadable file, invalid YAML, a top level that
            is not a mapping, a bad override, or any bad key or value.
    """
    path = Path(path)
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not one string")
    data = _read_config_file(path, ())
    try:
        return Config.from_dict(_apply_overrides(data, overrides))
    except ConfigError as err:
        raise _err(err.key, err.reason, path) from None


def _read_config_file(path: Path, children: Sequence[Path]) -> dict[str, Any]:
    """The mapping of the config file ``path``, its ``base`` (if any) resolved under it."""
    if not path.is_file():
        raise _err("", "config file not found" if not path.exists() else "is not a file", path)
    data = _read_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        raise _err("", "is empty; expected a mapping of config keys", path)
    if not isinstance(data, dict):
        raise _err("", f"top level must be a mapping of config keys, got {_type_name(data)}", path)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise _err("base", f"must be the path of a config file, got {base!r}", path)
    base_path = path.parent / base
    chain = [*children, path]
    if any(base_path.resolve() == p.resolve() for p in chain):
        cycle = " -> ".join(str(p) for p in [*chain, base_path])
        raise _err("base", f"config files name each other as base: {cycle}", path)
    if not base_path.is_file():
        raise _err("base", f"{base_path} is not a config file (a path relative to {path})", path)
    base_data = _read_config_file(base_path, chain)  # its own errors name its own file
    try:
        return _apply_parsed(base_data, _leaves(data))
    except ConfigError as err:
        raise _err(err.key, err.reason, path) from None


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Write ``config`` as YAML; ``load_config(path) == config``."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")
