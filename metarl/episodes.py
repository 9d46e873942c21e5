"""Padded batches of episodes, discounted returns and GAE.

Time is the second-to-last axis of rewards, masks and log-probabilities, so the
same functions serve one task (``[time, episode]``) and a stack of tasks
(``[task, time, episode]``). None of them edits its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

__all__ = ["Episodes", "concat_episodes", "discounted_returns", "gae", "stack_episodes"]


# eq=False: the generated __eq__ compares tensors with ==, which raises
# ("Boolean value of Tensor ... is ambiguous"); identity equality is honest.
@dataclass(frozen=True, eq=False)
class Episodes:
    """Episodes of one task, or of several stacked along a leading task axis.

    Shapes for one task (``T`` steps, ``E`` episodes); a stack adds a leading
    task axis to each.

    Attributes:
        observations: ``[T, E, obs_dim]`` float32, the observation each action saw.
        actions: ``[T, E, act_dim]`` float32.
        rewards: ``[T, E]`` float32, zero where ``mask`` is zero.
        mask: ``[T, E]`` float32, one for the steps an episode took (the
            terminating step included) and zero after it terminated.
        log_probs: ``[T, E]`` float32, log-probabilities of the actions under the
            policy that sampled them.
        The sampler writes zeros to every field where ``mask`` is zero.
        tasks: the task dict of each stacked task (one entry for a single task).
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    log_probs: Tensor
    tasks: tuple[dict, ...] = field(default=(), compare=False)

    @property
    def horizon(self) -> int:
        return self.rewards.shape[-2]

    @property
    def num_episodes(self) -> int:
        return self.rewards.shape[-1]

    @property
    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, ``[..., E]``."""
        return (self.rewards * self.mask).sum(dim=-2)

    @property
    def num_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.mask.sum().item())

    def to(self, dtype: torch.dtype) -> Episodes:
        """A copy with every floating tensor cast to ``dtype`` (float64 for gradient checks)."""
        return replace(self, **{f.name: getattr(self, f.name).to(dtype) for f in _tensor_fields()})

    def __getitem__(self, task: int) -> Episodes:
        """The episodes of one task of a stack."""
        tensors = {f.name: getattr(self, f.name)[task] for f in _tensor_fields()}
        return Episodes(**tensors, tasks=(self.tasks[task],) if self.tasks else ())


def _tensor_fields():
    return [f for f in fields(Episodes) if f.name != "tasks"]


def stack_episodes(episodes: Sequence[Episodes]) -> Episodes:
    """Stack single-task episodes (same horizon and episode count) along a task axis."""
    tensors = {
        f.name: torch.stack([getattr(e, f.name) for e in episodes]) for f in _tensor_fields()
    }
    return Episodes(**tensors, tasks=tuple(t for e in episodes for t in e.tasks))


def concat_episodes(parts: Sequence[Episodes]) -> Episodes:
    """Join stacks of tasks (same horizon and episode count) along the task axis, in order."""
    tensors = {f.name: torch.cat([getattr(e, f.name) for e in parts]) for f in _tensor_fields()}
    return Episodes(**tensors, tasks=tuple(t for e in parts for t in e.tasks))


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go ``R_t = r_t + gamma * R_{t+1}`` along the time axis (-2).

    Steps after termination (``mask == 0``) contribute nothing and get return 0.
    """
    rewards = rewards * mask
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0, :])
    for t in range(rewards.shape[-2] - 1, -1, -1):
        running = rewards[..., t, :] + gamma * running
        returns[..., t, :] = running
    return returns * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates (Schulman et al. 2016) along the time axis (-2).

    ``delta_t = r_t + gamma * V_{t+1} * mask_{t+1} - V_t``; the value after the
    last step and after a termination is zero. ``lam = 1`` gives
    ``discounted_returns - values``.
    """
    rewards, values = rewards * mask, values * mask
    next_values = torch.cat([values[..., 1:, :], torch.zeros_like(values[..., :1, :])], dim=-2)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[..., 0, :])
    for t in range(deltas.shape[-2] - 1, -1, -1):
        running = deltas[..., t, :] + gamma * lam * running
        advantages[..., t, :] = running
    return advantages * mask
