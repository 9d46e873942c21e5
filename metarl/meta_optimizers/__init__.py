"""Meta-optimizers: TRPO (MAML-RL, Finn et al. 2017) and PPO (ProMP, Rothfuss et al. 2019).

Both share one interface, which is all the trainer uses::

    opt = make_meta_optimizer(config.meta_optimizer)
    adaptation = AdaptationSettings.from_config(config)
    metrics = opt.step(policy, MetaBatch(pre, post, pre_advantages, post_advantages), adaptation)
    state = opt.state_dict(); opt.load_state_dict(state)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from torch import nn

from metarl.adaptation import AdaptationSettings
from metarl.config import MetaOptimizerConfig, coerce_variant
from metarl.meta_optimizers.ppo import PPO, PPOConfig
from metarl.meta_optimizers.trpo import FVP_KINDS, TRPO, TRPOConfig
from metarl.objectives import MetaBatch
from metarl.optim import (
    LineSearchResult,
    backtracking_line_search,
    conjugate_gradient,
    hessian_vector_product,
)

__all__ = [
    "FVP_KINDS",
    "META_OPTIMIZERS",
    "PPO",
    "TRPO",
    "LineSearchResult",
    "MetaOptimizer",
    "PPOConfig",
    "TRPOConfig",
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


def make_meta_optimizer(config: MetaOptimizerConfig | Mapping[str, Any]) -> TRPO | PPO:
    """The meta-optimizer a config describes: a ``TRPOConfig`` / ``PPOConfig``, or a mapping
    with ``name`` and its settings (``{"name": "trpo", "max_kl": 0.01}``), checked by the config.
    """
    if isinstance(config, Mapping):
        config = coerce_variant(dict(config), MetaOptimizerConfig, "meta_optimizer")
    if not isinstance(config, MetaOptimizerConfig):
        raise TypeError(f"expected a TRPOConfig, PPOConfig or mapping, got {type(config).__name__}")
    return META_OPTIMIZERS[config.name](config)
