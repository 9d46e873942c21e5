"""Typed experiment configs, loaded from YAML with clear errors (the config contract).

Each config is a frozen dataclass with a docstring per field, in the style of
CleanRL's ``Args``. Every way in (``load_config``, ``Config.from_dict`` and the
constructors themselves) checks keys, types and values before any work starts
and raises :class:`ConfigError` naming the full dotted key, for example::

    adaptaton: unknown key; did you mean 'adaptation'?
    adaptation.lr: must be positive, got -0.1

Overrides are ``"a.b=value"`` strings whose value is read as a YAML scalar or
flow collection (``policy.hidden_sizes=[64,64]``). Setting ``meta_optimizer.name``
to a different optimizer (or ``sampler.kind`` to a different sampler) starts that
alternative from its defaults: the old one's keys from the file are dropped, and
other ``meta_optimizer.*`` (``sampler.*``) overrides given on the same command line
then apply (in any order) and are checked against the new one.

A run directory's ``config.yaml`` and a checkpoint's config were written by some
version of metarl: :func:`read_run_config` (and :func:`upgrade_config_data`) read
them in today's schema, as they meant, or name the removed key a run used.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from metarl.errors import InputError
from metarl.policies import ACTIVATIONS, INITS

__all__ = [
    "AdaptationConfig",
    "Config",
    "ConfigError",
    "MetaOptimizerConfig",
    "MethodConfig",
    "PolicyConfig",
    "SamplerConfig",
    "Section",
    "check_non_negative",
    "check_one_of",
    "check_positive",
    "coerce_variant",
    "load_config",
    "parse_override",
    "read_run_config",
    "register_choice",
    "save_config",
    "upgrade_config_data",
    "variants",
    "with_settings",
]

# This module assembles the schema and reads and writes YAML; it imports none of the
# components it configures. Each component owns its section's dataclass and registers it
# (a Variant subclass with a NAME, or a MethodConfig with a SECTION), and registers the names
# a string key may take (register_choice): the sampler kinds, the meta-optimizers and the
# meta-learners in their own modules, as Gymnasium ids are registered by their packages.
# Importing ``metarl`` imports every component, so the registries are full before any
# config is built.

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
        # float | list[float]: a list goes to the list branch, anything else to the scalar one.
        wanted = list if isinstance(value, list | tuple) else float
        for option in options:
            if option is wanted or typing.get_origin(option) is wanted:
                return _coerce(value, option, key)
        raise _err(key, f"expected {hint}, got {_type_name(value)} {value!r}")
    if isinstance(hint, type) and issubclass(hint, Variant) and hint.SECTION:
        return coerce_variant(value, hint, key)
    if hint is MethodConfig:
        return _from_mapping(_registered(_METHOD_SECTIONS, key, "method section"), value, key)
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


def coerce_variant(value: Any, base: type[Variant], key: str) -> Any:
    """A mapping whose ``base.KEY`` (``name``, ``kind``) picks the registered dataclass."""
    if isinstance(value, base):
        return value
    if not isinstance(value, Mapping):
        raise _err(key, f"expected a mapping, got {_type_name(value)} {value!r}")
    registry = variants(base)
    name = value.get(base.KEY, base.DEFAULT)
    if not isinstance(name, str) or name not in registry:
        raise _err(
            _join(key, base.KEY),
            f"unknown {key.replace('_', ' ') or 'variant'} {name!r}; expected one of "
            f"{sorted(registry)}{_suggest(name, registry)}",
        )
    return _from_mapping(registry[name], value, key)


def _registered(registry: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in registry:  # a bug: the component that owns it was not imported
        raise TypeError(f"no {what} {name!r} is registered (is metarl imported?)")
    return registry[name]


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


class Section:
    """Base of every config section (a frozen dataclass): each field type-checked and
    normalised after ``__init__``, then the section's ``_check``; ``to_dict`` for YAML.
    Components define their sections on it, or on :class:`Variant` / :class:`MethodConfig`."""

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


def check_positive(value: float | int, key: str) -> None:
    if not value > 0:
        raise _err(key, f"must be positive, got {value!r}")


def check_non_negative(value: float | int, key: str) -> None:
    if not value >= 0:
        raise _err(key, f"must be non-negative, got {value!r}")


def check_one_of(value: str, choices: Sequence[str], key: str) -> None:
    if value not in choices:
        raise _err(key, f"must be one of {list(choices)}, got {value!r}{_suggest(value, choices)}")


# --- the registries ----------------------------------------------------------------

_VARIANTS: dict[str, dict[str, type]] = {}
_METHOD_SECTIONS: dict[str, type] = {}
_CHOICES: dict[str, dict[str, Callable[[Any], None] | None]] = {}


class Variant(Section):
    """A section with alternatives, the one in use chosen by the key ``KEY`` (as
    ``meta_optimizer.name`` or ``sampler.kind``). A subclass with a ``NAME`` is registered as
    an alternative of the section its base names in ``SECTION``."""

    SECTION: ClassVar[str] = ""
    KEY: ClassVar[str] = "name"
    DEFAULT: ClassVar[str] = ""
    NAME: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "NAME" in cls.__dict__:
            _VARIANTS.setdefault(cls.SECTION, {})[cls.NAME] = cls

    @classmethod
    def default(cls) -> Variant:
        """The section's default alternative, with its defaults."""
        return _registered(variants(cls), cls.DEFAULT, f"{cls.SECTION} {cls.KEY}")()


def variants(base: type[Variant]) -> dict[str, type]:
    """The registered alternatives of a :class:`Variant` section, by name."""
    return dict(_VARIANTS.get(base.SECTION, {}))


class MetaOptimizerConfig(Variant):
    """``meta_optimizer:``, chosen by ``name`` (trpo, ppo; each in its own module)."""

    SECTION, KEY, DEFAULT = "meta_optimizer", "name", "trpo"


class SamplerConfig(Variant):
    """``sampler:``, chosen by ``kind`` (batched, sync, async: metarl.sampler; ray:
    metarl.ray_sampler)."""

    SECTION, KEY, DEFAULT = "sampler", "kind", "batched"


class MethodConfig(Section):
    """A meta-learner's own settings, a top-level section named ``SECTION`` (``reptile:``,
    ``imaml:``, ``cavia:``), defined beside the learner and registered on definition."""

    SECTION: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.SECTION:
            _METHOD_SECTIONS[cls.SECTION] = cls

    @staticmethod
    def default(section: str) -> Callable[[], MethodConfig]:
        """A default factory for the method section ``section``."""
        return lambda: _registered(_METHOD_SECTIONS, section, "method section")()


def register_choice(key: str, name: str, check: Callable[[Any], None] | None = None) -> None:
    """Let the top-level string key ``key`` (``objective``, ``meta_learner``) take ``name``;
    ``check(config)``, if given, raises ConfigError naming a key the choice cannot honour."""
    _CHOICES.setdefault(key, {})[name] = check


def _check_choice(config: Any, key: str) -> None:
    choices = _CHOICES.get(key, {})
    value = getattr(config, key)
    check_one_of(value, list(choices), key)
    check = choices[value]
    if check is not None:
        check(config)


# --- configs ---------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig(Section):
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
            check_positive(width, f"hidden_sizes[{i}]")
        check_one_of(self.activation, sorted(ACTIVATIONS), "activation")
        check_positive(self.init_std, "init_std")
        check_one_of(self.init, sorted(INITS), "init")
        check_positive(self.action_scale, "action_scale")
        check_non_negative(self.context_dim, "context_dim")


@dataclass(frozen=True)
class AdaptationConfig(Section):
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

    @property
    def lrs(self) -> list[float]:
        """The step size of each inner step, ``steps`` entries."""
        return list(self.lr) if isinstance(self.lr, list) else [self.lr] * self.steps

    def _check(self) -> None:
        check_positive(self.steps, "steps")
        check_non_negative(self.first_order_iterations, "first_order_iterations")
        check_non_negative(self.multi_step_loss_iterations, "multi_step_loss_iterations")
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
                check_positive(lr, f"lr[{i}]")
        else:
            check_positive(self.lr, "lr")


@dataclass(frozen=True)
class Config(Section):
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
    """Meta-gradient estimator: maml (Finn et al. 2017) | dice (Foerster et al. 2018) | lvc
    (ProMP's low-variance curvature, Rothfuss et al. 2019) | emaml (Stadie et al. 2018)."""
    tail_fraction: float = 1.0
    """The share of each meta-batch's tasks, those with the lowest post-adaptation return, that
    the meta-objective averages over, in (0, 1]. 1: every task (the paper's mean); below 1 the
    tail of the task distribution (DR-MAML's tail-task risk, Wang et al., NeurIPS 2023), so the
    meta-step serves the tasks that adapt worst."""
    meta_learner: str = "maml"
    """Method of the MAML family: maml | reptile | imaml | cavia
    (metarl.meta_learners.META_LEARNERS)."""
    meta_optimizer: MetaOptimizerConfig = field(default_factory=MetaOptimizerConfig.default)
    """Outer-loop optimizer, chosen by its ``name`` (default trpo); Reptile makes its own step."""
    reptile: MethodConfig = field(default_factory=MethodConfig.default("reptile"))
    """Reptile's outer step (``meta_learner: reptile`` only)."""
    imaml: MethodConfig = field(default_factory=MethodConfig.default("imaml"))
    """iMAML's proximal weight and conjugate gradient (``meta_learner: imaml`` only)."""
    cavia: MethodConfig = field(default_factory=MethodConfig.default("cavia"))
    """CAVIA's context step (``meta_learner: cavia`` only)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig.default)
    """Episode collection, chosen by its ``kind`` (default batched)."""
    checkpoint_every: int = 1
    """Write ``checkpoints/latest.pt`` every this many iterations."""
    init_from: str | None = None
    """A warm start: the run directory (as ``metarl train`` sees it from where it runs) whose
    latest checkpoint's policy parameters, its learned std included, start this run. Its policy
    must have this config's env dimensions, ``hidden_sizes``, ``activation``, ``action_scale``
    and ``obs_normalization`` (its observation statistics come with it). Learned inner rates
    come with it too when both runs learn them (``adaptation.learn_lr``, the same steps and
    shape); from a run without them they start at ``adaptation.lr``. The meta-optimizer,
    iterations and env steps start afresh (SB3's ``load`` then ``learn`` on a new task).
    null: the policy starts from ``policy.init``."""

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
        check_non_negative(self.seed, "seed")
        for key in ("iterations", "tasks_per_batch", "episodes_per_task", "horizon"):
            check_positive(getattr(self, key), key)
        if not 0 < self.gamma <= 1:
            raise _err("gamma", f"must be in (0, 1], got {self.gamma!r}")
        if not 0 <= self.gae_lambda <= 1:
            raise _err("gae_lambda", f"must be in [0, 1], got {self.gae_lambda!r}")
        check_positive(self.baseline_reg, "baseline_reg")
        _check_choice(self, "objective")
        if not 0 < self.tail_fraction <= 1:
            raise _err("tail_fraction", f"must be in (0, 1], got {self.tail_fraction!r}")
        check_positive(self.checkpoint_every, "checkpoint_every")
        if self.init_from is not None and not self.init_from.strip():
            raise _err("init_from", "must name a run directory, or be null")
        _check_choice(self, "meta_learner")
        for section, cls in _METHOD_SECTIONS.items():
            given, default = getattr(self, section), cls()
            if section == self.meta_learner or given == default:
                continue
            unused = [
                f.name for f in fields(cls) if getattr(given, f.name) != getattr(default, f.name)
            ]
            if unused:
                raise _err(
                    f"{section}.{unused[0]}",
                    f"is {section}'s setting and does nothing with meta_learner "
                    f"{self.meta_learner!r}; remove it, or set meta_learner: {section}",
                )

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
    old = {base.SECTION: _variant_name(data, base) for base in _VARIANT_BASES}
    for path, value in parsed:
        _set_path(data, path, value)
    for base in _VARIANT_BASES:
        section, new = base.SECTION, _variant_name(data, base)
        switched = any(path == [section, base.KEY] for path, _ in parsed)
        if switched and new is not None and new != old[section]:
            # The file's keys belonged to the old alternative (another optimizer, another
            # sampler kind): start the new one afresh with only what the overrides say of it.
            fresh: dict[str, Any] = {}
            for path, value in parsed:
                if path[0] == section and len(path) > 1:
                    _set_path(fresh, path[1:], value, prefix=section)
                elif path == [section]:
                    fresh = _deep_copy(value) if isinstance(value, dict) else value
            data[section] = fresh
    return data


def _variant_name(data: Mapping[str, Any], base: type[Variant]) -> str | None:
    """The alternative ``data`` names for the section of ``base`` (its default if unset)."""
    section = data.get(base.SECTION)
    if section is None:
        return base.DEFAULT
    return section.get(base.KEY, base.DEFAULT) if isinstance(section, Mapping) else None


_VARIANT_BASES = (MetaOptimizerConfig, SamplerConfig)


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


# --- configs written by an earlier metarl --------------------------------------------

LAST_COMMIT_WITH_REMOVED_KEYS = "7d3c6e4"
"""The last commit whose metarl had the research keys :data:`_REMOVED` lists."""

_REMOVED: dict[tuple[str, ...], tuple[Any, str]] = {
    # dotted key: (the value that meant "off", what it was)
    ("adaptation", "reward_scaled_step", "zero_reward"): (None, "a reward-scaled inner step"),
    ("meta_optimizer", "anchor_kl_coeff"): (0.0, "PPO's penalty toward the run's first policy"),
    ("meta_optimizer", "max_kl"): (0.0, "PPO's step-halving KL guard"),
    ("meta_optimizer", "kl_direction"): ("old_new", "TRPO's reversed line-search KL"),
    ("init_from_optimizer",): (False, "carrying a warm start's Adam moments"),
}


def upgrade_config_data(data: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """A config mapping written by an earlier metarl (a run's ``config.yaml``, a checkpoint's
    config) in today's schema, meaning the same: a removed research key that was off is
    dropped, and the sampler's section keeps only its kind's keys (the others did nothing).

    Raises:
        ConfigError: the run used a key that was removed (it cannot mean the same today).
    """
    data = _deep_copy(dict(data))
    for path, (off, what) in _REMOVED.items():
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        if path == ("meta_optimizer", "max_kl") and node.get("name", "trpo") != "ppo":
            continue  # TRPO's trust region keeps its name
        value = node.pop(path[-1])
        if value != off:
            raise _err(
                ".".join(path),
                f"the run used {value!r}: {what}, a research device that metarl no longer has "
                "(experiments/reports/ tells its story). To resume or evaluate this run, check "
                f"out commit {LAST_COMMIT_WITH_REMOVED_KEYS}, the last that has it",
                source,
            )
        if path[-1] == "zero_reward":  # the whole reward_scaled_step section goes
            data["adaptation"].pop("reward_scaled_step")
    sampler = data.get("sampler")
    if isinstance(sampler, dict):
        kind = sampler.get(SamplerConfig.KEY, SamplerConfig.DEFAULT)
        cls = variants(SamplerConfig).get(kind)
        if cls is not None:
            names = {f.name for f in fields(cls)}
            data["sampler"] = {k: v for k, v in sampler.items() if k in names}
    return data


def read_run_config(path: str | os.PathLike[str]) -> Config:
    """The config of a run directory's ``config.yaml``, written by this or an earlier metarl
    (see :func:`upgrade_config_data`); errors name the file."""
    path = Path(path)
    data = _read_config_file(path, ())
    try:
        return Config.from_dict(upgrade_config_data(data, str(path)))
    except ConfigError as err:
        raise _err(err.key, err.reason, path) from None


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Write ``config`` as YAML; ``load_config(path) == config``."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")
