"""Meta-optimizers: TRPO (MAML-RL, Finn et al. 2017) and PPO (ProMP, Rothfuss et al. 2019).

Both share one interface, which is all the trainer uses::

    opt = make_meta_optimizer(config.meta_optimizer)
    adaptation = AdaptationSettings(lr=..., steps=..., first_order=..., objective=config.objective)
    metrics = opt.step(policy, make_meta_batch(pre, post, baseline, gamma, gae_lambda), adaptation)
    state = opt.state_dict(); opt.load_state_dict(state)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, Protocol

from torch import nn

from metarl.adaptation import AdaptationSettings
from metarl.meta_optimizers.optim import (
    LineSearchResult,
    backtracking_line_search,
    conjugate_gradient,
    hessian_vector_product,
)
from metarl.meta_optimizers.ppo import PPO
from metarl.meta_optimizers.trpo import FVP_KINDS, TRPO
from metarl.objectives import MetaBatch

__all__ = [
    "FVP_KINDS",
    "META_OPTIMIZERS",
    "PPO",
    "TRPO",
    "LineSearchResult",
    "MetaOptimizer",
    "backtracking_line_search",
    "conjugate_gradient",
    "hessian_vector_product",
    "make_meta_optimizer",
]


class MetaOptimizer(Protocol):
    """What the trainer calls on a meta-optimizer."""

    def step(
        self, policy: nn.Module, batch: MetaBatch, adaptation: AdaptationSettings
    ) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


META_OPTIMIZERS: dict[str, type[TRPO] | type[PPO]] = {"trpo": TRPO, "ppo": PPO}


def make_meta_optimizer(config: Mapping[str, Any] | Any) -> TRPO | PPO:
    """The meta-optimizer a config describes: a mapping or dataclass with ``name`` and its settings.

    ``metarl.config.TRPOConfig`` / ``PPOConfig`` work as they are, as does
    ``{"name": "trpo", "max_kl": 0.01}``.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        settings = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        settings = dict(config)
    else:
        raise TypeError(f"expected a mapping or a dataclass, got {type(config).__name__}")
    name = settings.pop("name", None)
    if name not in META_OPTIMIZERS:
        raise ValueError(
            f"meta_optimizer.name must be one of {', '.join(META_OPTIMIZERS)}, got {name!r}"
        )
    cls = META_OPTIMIZERS[name]
    known = set(inspect.signature(cls).parameters)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"unknown meta_optimizer key(s) {unknown} for {name}; known: {sorted(known)}"
        )
    return cls(**settings)
