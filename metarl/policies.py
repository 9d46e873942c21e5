"""The Gaussian MLP policy of MAML-RL (Finn et al. 2017, appendix A.2).

The policy is a plain ``nn.Module``; every functional use (the inner step, the
sampler's per-task parameters) goes through :func:`torch.func.functional_call`
on a parameter dict, never through hand-written layer calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "OBS_CLIP",
    "OBS_EPS",
    "GaussianMLPPolicy",
    "Params",
    "distribution",
    "gaussian_log_prob_of_noise",
    "params_of",
    "stack_params",
    "stacked_tasks",
]

Params = dict[str, Tensor]

OBS_CLIP = 10.0
"""Standardised observations are clipped to +-this (VecNormalize's ``clip_obs``)."""
OBS_EPS = 1e-8
"""Added to the running variance before its square root (VecNormalize's ``epsilon``)."""

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob_of_noise(z: Tensor, std: Tensor) -> Tensor:
    """Log-density of ``N(mean, std)`` at ``mean + std * z``, summed over the last axis: a
    sampler that drew the noise ``z`` has its log-probability without dividing back."""
    return (-0.5 * z.square() - std.log() - _LOG_SQRT_2PI).sum(dim=-1)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def _xavier_uniform(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


def _torch_default(layer: nn.Linear) -> None:
    del layer  # nn.Linear initialised itself when it was built


INITS: dict[str, Callable[[nn.Linear], None]] = {
    "xavier_uniform": _xavier_uniform,
    "torch": _torch_default,
}
"""Weight initialisations of the mean network's linear layers, by name.

``xavier_uniform``: Glorot-uniform weights, zero biases, as rllab's MLP
(``rllab/core/network.py``) and pytorch-maml-rl (``policies/policy.py``
``weight_init``). ``torch``: ``nn.Linear``'s own default (Kaiming-uniform with
``a = sqrt(5)``), which gives smaller weights.
"""


class GaussianMLPPolicy(nn.Module):
    """A diagonal Gaussian whose mean is an MLP of the observation.

    Args:
        obs_dim: size of the observation vector.
        act_dim: size of the action vector.
        hidden_sizes: widths of the hidden layers (the paper: two layers of 100).
        activation: ``relu``, ``tanh`` or ``elu``.
        init_std: initial standard deviation of the action the env receives
            (state independent, learnable through ``log_std``).
        init: initialisation of the linear layers, a key of :data:`INITS`.
        action_scale: the network acts in units of ``1 / action_scale``: the
            distribution's mean and std are the network's outputs times
            ``action_scale``. pytorch-maml-rl's policy acts in a space scaled by
            10 (its ``NormalizedActionWrapper(scale=10)``), which is
            ``action_scale=0.1``. The distribution in env units is what every
            caller sees; the scale changes only how a gradient step in the
            parameters moves it (the output layer's step shrinks by
            ``action_scale^2`` relative to the hidden layers').
        obs_normalization: standardise each observation value before the
            network, by a running mean and std over the observations given to
            :meth:`update_obs_stats` (meta-training gives every iteration's
            episodes), clipped to ``+-OBS_CLIP``: SB3's ``VecNormalize``
            inside the policy. The statistics are buffers, not parameters: the
            inner step never changes them and checkpoints keep them. Until the
            first update they are mean 0 and std 1 (the clip applies).
        context_dim: CAVIA's context parameters (Zintgraf et al. 2019): a parameter
            ``context`` of this many zeros appended to every (standardised) observation
            before the first layer; 0 gives none. CAVIA's inner step adapts it alone.

    ``log_std`` holds ``log(std / action_scale)``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "relu",
        init_std: float = 1.0,
        init: str = "torch",
        action_scale: float = 1.0,
        obs_normalization: bool = False,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {sorted(INITS)}, got {init!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        if not (action_scale > 0 and math.isfinite(action_scale)):
            raise ValueError(f"action_scale must be positive and finite, got {action_scale}")
        if context_dim < 0:
            raise ValueError(f"context_dim must be non-negative, got {context_dim}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.context_dim = int(context_dim)
        self.action_scale = float(action_scale)
        layers: list[nn.Module] = []
        last = obs_dim + self.context_dim
        for width in hidden_sizes:
            layers += [nn.Linear(last, width), ACTIVATIONS[activation]()]
            last = width
        layers.append(nn.Linear(last, act_dim))
        for layer in layers:
            if isinstance(layer, nn.Linear):
                INITS[init](layer)
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std / action_scale)))
        if self.context_dim:
            self.context = nn.Parameter(torch.zeros(self.context_dim))
        self.obs_normalization = bool(obs_normalization)
        if self.obs_normalization:
            # float64 statistics, as VecNormalize's RunningMeanStd: they sum millions of steps.
            self.register_buffer("obs_mean", torch.zeros(obs_dim, dtype=torch.float64))
            self.register_buffer("obs_var", torch.ones(obs_dim, dtype=torch.float64))
            self.register_buffer("obs_count", torch.tensor(0.0, dtype=torch.float64))

    def normalized(self, obs: Tensor) -> Tensor:
        """``obs`` as the network sees it: standardised and clipped where
        ``obs_normalization`` is on, else unchanged."""
        if not self.obs_normalization:
            return obs
        mean, std = self.obs_stats(obs.dtype)
        return ((obs - mean) / std).clamp(-OBS_CLIP, OBS_CLIP)

    def network_input(self, obs: Tensor, context: Tensor | None = None) -> Tensor:
        """The first layer's input: the :meth:`normalized` observation, then ``context``
        (the policy's own by default) at every step, where the policy has one."""
        x = self.normalized(obs)
        if not self.context_dim:
            return x
        context = self.context if context is None else context
        return torch.cat([x, context.to(x.dtype).expand(*x.shape[:-1], self.context_dim)], -1)

    def obs_stats(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The running mean and std the observation is standardised by (``obs_normalization``)."""
        return self.obs_mean.to(dtype), torch.sqrt(self.obs_var + OBS_EPS).to(dtype)

    @torch.no_grad()
    def update_obs_stats(self, observations: Tensor, mask: Tensor) -> None:
        """Merge the observations where ``mask`` is one (``[..., obs_dim]`` and ``[...]``) into
        the running mean and variance (Chan et al.'s parallel update, as VecNormalize's)."""
        if not self.obs_normalization:
            raise ValueError("update_obs_stats needs a policy made with obs_normalization=True")
        x = observations.reshape(-1, self.obs_dim)[mask.reshape(-1) > 0].to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
        total = self.obs_count + n
        delta = mean - self.obs_mean
        m2 = self.obs_var * self.obs_count + var * n + delta**2 * self.obs_count * n / total
        self.obs_mean += delta * n / total
        self.obs_var.copy_(m2 / total)
        self.obs_count.copy_(total)

    def forward(self, obs: Tensor, *, stats: bool = False) -> Independent | tuple[Tensor, Tensor]:
        """The action distribution at ``obs``; ``stats=True`` gives ``(mean, std)`` instead.

        The tuple form exists for ``torch.func.vmap``, which cannot return a
        distribution object.
        """
        mean, std = self._scaled(self.mean(self.network_input(obs)), self.log_std)
        if stats:
            return mean, std
        return Independent(Normal(mean, std), 1)

    def _scaled(self, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
        """The env action's mean and std from the network's output and ``log_std``."""
        std = log_std.exp().expand_as(mean)
        if self.action_scale != 1.0:
            mean, std = mean * self.action_scale, std * self.action_scale
        return mean, std


def task_stats(policy: nn.Module, params: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
    """``policy(obs, stats=True)`` under one task's ``params``: the action's mean and std.

    For a :class:`GaussianMLPPolicy` the same arithmetic as its ``forward``, done with
    ``torch.nn.functional.linear`` on ``params`` directly (without ``functional_call``'s
    per-call cost, which the sampler pays for every task at every step); any other module
    goes through ``functional_call``.
    """
    if not isinstance(policy, GaussianMLPPolicy):
        return torch.func.functional_call(policy, params, (obs,), {"stats": True})
    x = policy.network_input(obs, params.get("context"))
    for n, layer in enumerate(policy.mean):
        if isinstance(layer, nn.Linear):
            x = nn.functional.linear(x, params[f"mean.{n}.weight"], params[f"mean.{n}.bias"])
        else:
            x = layer(x)
    return policy._scaled(x, params["log_std"])


def params_of(policy: nn.Module) -> Params:
    """The policy's own parameters as a dict (live tensors, gradients flow to them)."""
    return dict(policy.named_parameters())


def distribution(policy: nn.Module, params: Params, obs: Tensor) -> Independent:
    """The policy's action distribution at ``obs`` under ``params``."""
    return torch.func.functional_call(policy, params, (obs,))


def stack_params(params: Sequence[Params]) -> Params:
    """Stack per-task parameter dicts along a new leading task dimension."""
    return {name: torch.stack([p[name] for p in params]) for name in params[0]}


def stacked_tasks(policy: nn.Module, params: Params) -> int | None:
    """How many tasks ``params`` are stacked over, or ``None`` when they are shared.

    Shared parameters are shaped like the policy's own; stacked ones have one
    leading task axis of the same size on every tensor. This is the one place
    that decides it.

    Raises:
        ValueError: names that are not the policy's, or shapes that are neither,
            naming the parameter.
    """
    own = dict(policy.named_parameters())
    if set(params) != set(own):
        missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
        raise ValueError(f"params do not match the policy: missing {missing}, unexpected {extra}")
    counts = set()
    for name, value in params.items():
        shape, expected = tuple(value.shape), tuple(own[name].shape)
        if shape == expected:
            counts.add(None)
        elif len(shape) == len(expected) + 1 and shape[1:] == expected:
            counts.add(shape[0])
        else:
            raise ValueError(
                f"parameter {name!r} has shape {shape}; the policy's is {expected} "
                f"(shared) or (tasks, *{expected}) (stacked)"
            )
    if len(counts) != 1:
        raise ValueError(
            f"params mix shared and stacked tensors (task axes {sorted(map(str, counts))})"
        )
    return counts.pop()
