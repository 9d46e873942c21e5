"""The Gaussian MLP policy of MAML-RL (Finn et al. 2017, appendix A.2).

The policy is a plain ``nn.Module``; every functional use (the inner step, the
sampler's per-task parameters) goes through :func:`torch.func.functional_call`
on a parameter dict, never through hand-written layer calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

__all__ = [
    "ACTIVATIONS",
    "GaussianMLPPolicy",
    "Params",
    "distribution",
    "params_of",
    "stack_params",
]

Params = dict[str, Tensor]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


class GaussianMLPPolicy(nn.Module):
    """A diagonal Gaussian whose mean is an MLP of the observation.

    Args:
        obs_dim: size of the observation vector.
        act_dim: size of the action vector.
        hidden_sizes: widths of the hidden layers (the paper: two layers of 100).
        activation: ``relu``, ``tanh`` or ``elu``.
        init_std: initial standard deviation, state independent and learnable
            through its logarithm ``log_std``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "relu",
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        layers: list[nn.Module] = []
        last = obs_dim
        for width in hidden_sizes:
            layers += [nn.Linear(last, width), ACTIVATIONS[activation]()]
            last = width
        layers.append(nn.Linear(last, act_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def forward(self, obs: Tensor, *, stats: bool = False) -> Independent | tuple[Tensor, Tensor]:
        """The action distribution at ``obs``; ``stats=True`` gives ``(mean, std)`` instead.

        The tuple form exists for ``torch.func.vmap``, which cannot return a
        distribution object.
        """
        mean = self.mean(obs)
        std = self.log_std.exp().expand_as(mean)
        if stats:
            return mean, std
        return Independent(Normal(mean, std), 1)


def params_of(policy: nn.Module) -> Params:
    """The policy's own parameters as a dict (live tensors, gradients flow to them)."""
    return dict(policy.named_parameters())


def distribution(policy: nn.Module, params: Params, obs: Tensor) -> Independent:
    """The policy's action distribution at ``obs`` under ``params``."""
    return torch.func.functional_call(policy, params, (obs,))


def stack_params(params: Sequence[Params]) -> Params:
    """Stack per-task parameter dicts along a new leading task dimension."""
    return {name: torch.stack([p[name] for p in params]) for name in params[0]}
