"""stable-baselines3 interop: metarl's policy as an SB3 PPO and back, and a task family's
batched engine as an SB3 ``VecEnv``.

:func:`to_sb3` and :func:`from_sb3` convert a :class:`GaussianMLPPolicy` to an
SB3 ``PPO`` with an ``MlpPolicy`` of the same architecture and back; the two
give the same action distribution (same mean, same state-independent
``log_std``), so the pretrained policy can be loaded as a metarl policy and
adapted like any other. SB3's value network has no counterpart in metarl: it is
freshly initialised by :func:`to_sb3` and dropped by :func:`from_sb3`.
:class:`BatchedTaskVecEnv` trains SB3 on a family's batched engine, a new task per episode.
The comparison policies trained with SB3 are :mod:`metarl.comparison`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from envs.wrappers import TaskObservationWrapper, task_fields, task_values
from metarl.errors import InputError
from metarl.policies import ACTIVATIONS, GaussianMLPPolicy, Params

__all__ = ["BatchedTaskVecEnv", "flat_dim", "from_sb3", "to_sb3"]


# --- conversion ------------------------------------------------------------------


def _architecture(policy: GaussianMLPPolicy) -> tuple[list[nn.Linear], str]:
    """The mean network's linear layers (output layer last) and its activation's name."""
    linears = [m for m in policy.mean if isinstance(m, nn.Linear)]
    kinds = {type(m) for m in policy.mean if not isinstance(m, nn.Linear)}
    names = [name for name, cls in ACTIVATIONS.items() if cls in kinds]
    if len(kinds) > 1 or (kinds and len(names) != 1):
        raise ValueError(f"cannot convert a policy with activations {sorted(map(str, kinds))}")
    # A policy without hidden layers has no activation; any name builds the same SB3 net.
    return linears, names[0] if names else "relu"


def flat_dim(space: gym.Space, what: str) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{what} must be a gymnasium Box, got {space!r}")
    return int(np.prod(space.shape))


def to_sb3(
    policy: GaussianMLPPolicy,
    env: gym.Env | Any | str,
    params: Params | None = None,
    **ppo_kwargs: Any,
) -> PPO:
    """A PPO whose ``MlpPolicy`` has the action distribution of ``policy`` (or of ``params``).

    The actor is ``net_arch=dict(pi=hidden, vf=hidden)`` with the policy's
    activation and a state-independent ``log_std``; its weights are copied from
    ``params`` (for example an adapted dict from ``metarl.adaptation.adapt``;
    detached) or, when ``params`` is None, from the policy itself.
    ``ortho_init=False`` is set so the model built for the copy is never
    re-initialised, and nothing in it normalises observations: a policy's
    ``obs_normalization`` is folded into the first layer (the same function for every
    observation within ``OBS_CLIP`` standard deviations of the mean, where the policy clips).

    Args:
        policy: the metarl policy; only its architecture is read when ``params`` is given.
        env: anything ``PPO`` accepts (an env, a VecEnv or a registered id); its
            observation and action spaces must match the policy.
        params: parameter dict with the keys of ``params_of(policy)``.
        **ppo_kwargs: passed to ``PPO`` (``device`` defaults to ``"cpu"``);
            ``policy_kwargs`` may add keys but not change the architecture.
    """
    if not isinstance(policy, GaussianMLPPolicy):
        raise InputError(f"policy must be a metarl GaussianMLPPolicy, got {type(policy).__name__}")
    linears, activation = _architecture(policy)
    hidden = [layer.out_features for layer in linears[:-1]]
    own = dict(policy.named_parameters())
    if params is None:
        params = own
    elif not isinstance(params, Mapping):
        raise InputError(f"params must be a dict of tensors, got {type(params).__name__}")
    elif set(params) != set(own):
        missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
        raise InputError(f"params do not match the policy: missing {missing}, unexpected {extra}")
    for name, value in params.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[name].shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(
                f"params[{name!r}] is {shape}; expected a tensor of shape {tuple(own[name].shape)} "
                "(one task's parameters: index a stacked dict by task first)"
            )
        if not torch.isfinite(value).all():
            raise InputError(f"params[{name!r}] holds NaN or inf")

    policy_kwargs = dict(ppo_kwargs.pop("policy_kwargs", None) or {})
    fixed = {
        "net_arch": {"pi": hidden, "vf": hidden},
        "activation_fn": ACTIVATIONS[activation],
        # log_std is overwritten below; the init value only matters for the saved kwargs.
        "log_std_init": float(params["log_std"].detach().mean()),
        "ortho_init": False,
    }
    clash = [
        k for k in ("net_arch", "activation_fn", "squash_output", "use_sde") if k in policy_kwargs
    ]
    if clash or ppo_kwargs.get("use_sde"):
        raise ValueError(f"to_sb3 sets the architecture itself; remove {clash or ['use_sde']}")
    ppo_kwargs.setdefault("device", "cpu")
    model = PPO("MlpPolicy", env, policy_kwargs={**policy_kwargs, **fixed}, **ppo_kwargs)

    obs_dim = flat_dim(model.observation_space, "the env's observation space")
    act_dim = flat_dim(model.action_space, "the env's action space")
    if (obs_dim, act_dim) != (policy.obs_dim, policy.act_dim):
        raise ValueError(
            f"the env has observation size {obs_dim} and action size {act_dim}; "
            f"the policy expects {policy.obs_dim} and {policy.act_dim}"
        )
    sb3_linears = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    sb3_linears.append(model.policy.action_net)
    names = {id(module): name for name, module in policy.named_modules()}
    # SB3 acts in env units: the policy's action_scale is folded into the output layer.
    scale = policy.action_scale
    with torch.no_grad():
        for ours, theirs in zip(linears, sb3_linears, strict=True):
            prefix = names[id(ours)]
            factor = scale if ours is linears[-1] else 1.0
            weight = factor * params[f"{prefix}.weight"].detach()
            bias = factor * params[f"{prefix}.bias"].detach()
            if ours is linears[0] and policy.context_dim:
                # CAVIA's context is a constant input: W [x; c] + b = W_x x + (b + W_c c)
                context = params["context"].detach().to(weight.dtype)
                bias = bias + weight[:, policy.obs_dim :] @ context
                weight = weight[:, : policy.obs_dim]
            if ours is linears[0] and policy.obs_normalization:
                # W (x - m) / s + b = (W / s) x + (b - W m / s)
                mean, std = policy.obs_stats(weight.dtype)
                weight = weight / std
                bias = bias - weight @ mean
            theirs.weight.copy_(weight)
            theirs.bias.copy_(bias)
        model.policy.log_std.copy_(params["log_std"].detach() + math.log(scale))
    return model


def from_sb3(model: PPO, action_scale: float = 1.0) -> GaussianMLPPolicy:
    """The metarl policy with the actor of an SB3 ``PPO`` ``MlpPolicy`` (value net dropped).

    ``action_scale`` gives the policy that parameterisation (see
    :class:`~metarl.policies.GaussianMLPPolicy`) with the same action distribution,
    so that a pretrained baseline is adapted in the meta-trained policy's units.

    Raises:
        ValueError: the model is not a plain Gaussian MLP actor (gSDE, tanh
            squashing, a non-flatten feature extractor, an unsupported activation
            or non-Box spaces).
    """
    if not isinstance(model, PPO):
        raise InputError(f"model must be a stable-baselines3 PPO, got {type(model).__name__}")
    if not (isinstance(action_scale, int | float) and action_scale > 0):
        raise InputError(f"action_scale must be a positive number, got {action_scale!r}")
    sb3_policy = model.policy
    if not all(torch.isfinite(p).all() for p in sb3_policy.parameters()):
        raise InputError("the SB3 model's parameters hold NaN or inf")
    if not isinstance(sb3_policy.action_dist, DiagGaussianDistribution) or sb3_policy.use_sde:
        raise ValueError(
            f"only a diagonal Gaussian actor converts, got {type(sb3_policy.action_dist).__name__}"
            + (" with gSDE" if sb3_policy.use_sde else "")
        )
    if sb3_policy.squash_output:
        raise ValueError("a tanh-squashed actor has no GaussianMLPPolicy counterpart")
    if not isinstance(sb3_policy.pi_features_extractor, FlattenExtractor):
        raise ValueError(
            f"only FlattenExtractor features convert, got {type(sb3_policy.pi_features_extractor).__name__}"
        )
    names = [n for n, cls in ACTIVATIONS.items() if cls is sb3_policy.activation_fn]
    if not names:
        raise ValueError(
            f"activation {sb3_policy.activation_fn.__name__} is not one of {sorted(ACTIVATIONS)}"
        )
    sb3_linears = [m for m in sb3_policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    policy = GaussianMLPPolicy(
        flat_dim(model.observation_space, "the model's observation space"),
        flat_dim(model.action_space, "the model's action space"),
        hidden_sizes=[layer.out_features for layer in sb3_linears],
        activation=names[0],
        init_std=math.exp(float(sb3_policy.log_std.detach().mean())),
        action_scale=action_scale,
    )
    ours, _ = _architecture(policy)
    with torch.no_grad():
        for mine, theirs in zip(ours, [*sb3_linears, sb3_policy.action_net], strict=True):
            factor = 1.0 / action_scale if mine is ours[-1] else 1.0
            mine.weight.copy_(factor * theirs.weight.detach().cpu())
            mine.bias.copy_(factor * theirs.bias.detach().cpu())
        policy.log_std.copy_(sb3_policy.log_std.detach().cpu() - math.log(action_scale))
    return policy


# --- training the baselines ------------------------------------------------------


class BatchedTaskVecEnv(VecEnv):
    """A metarl family's batched engine as a stable-baselines3 ``VecEnv``, a new task per episode.

    The sub-envs are stepped together by the family's batched engine (``mujoco.batch``
    for MuJoCo; Gymnasium's ``SAME_STEP`` autoreset, which is SB3's convention). Each
    sub-env draws a new task from the distribution for every episode, as
    :class:`TaskResampleWrapper` does; with ``observe_task`` the task's values are
    appended to the observation, as :class:`TaskObservationWrapper` does (the
    oracle's input). Finished episodes report ``info["episode"]`` (return ``r``,
    length ``l``) as SB3's ``Monitor`` would.

    Args:
        env_id: a metarl id with a batched engine.
        num_envs: sub-envs.
        seed: seeds the physics (sub-env ``i`` with ``seed + i``) and the task draws.
        observe_task: append the task to the observation.
        horizon: episode length (default: the registry's).
        env_kwargs: the env's options.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        observe_task: bool,
        horizon: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.vec = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            autoreset_mode="same_step",
            **({"max_episode_steps": horizon} if horizon is not None else {}),
            **dict(env_kwargs or {}),
        )
        single = gym.make(env_id, **dict(env_kwargs or {}))
        self.fields = task_fields(single)
        self.distribution = single.unwrapped
        space = self.vec.single_observation_space
        if observe_task:
            space = TaskObservationWrapper(single).observation_space
        super().__init__(num_envs, space, self.vec.single_action_space)
        single.close()
        self.observe_task, self.seed_value = observe_task, seed
        self.rng = np.random.default_rng([seed, 0x7A5C])
        self.tasks = self.distribution.sample_tasks(num_envs, self.rng)
        self.vec.set_attr("task", self.tasks)
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._actions: np.ndarray | None = None

    def _with_task(self, obs: np.ndarray, task: Mapping[str, Any]) -> np.ndarray:
        if not self.observe_task:
            return obs.astype(self.observation_space.dtype)
        values = task_values(self.fields, task)
        return np.concatenate([obs, values]).astype(self.observation_space.dtype)

    def _observations(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self._with_task(o, t) for o, t in zip(obs, self.tasks, strict=True)])

    def reset(self) -> np.ndarray:
        seeds = [s if s is not None else self.seed_value + i for i, s in enumerate(self._seeds)]
        obs, _ = self.vec.reset(seed=seeds)
        self._reset_seeds()
        self.returns[:], self.lengths[:] = 0.0, 0
        return self._observations(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        obs, reward, terminated, truncated, info = self.vec.step(self._actions)
        self.returns += reward
        self.lengths += 1
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(done)
        for i in ended:
            infos[i] = {
                "terminal_observation": self._with_task(info["final_obs"][i], self.tasks[i]),
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": float(self.returns[i]), "l": int(self.lengths[i])},
            }
        if len(ended):
            drawn = self.distribution.sample_tasks(len(ended), self.rng)
            for i, task in zip(ended, drawn, strict=True):
                self.tasks[i] = task
            self.vec.set_attr("task", self.tasks)
            self.returns[ended], self.lengths[ended] = 0.0, 0
        return self._observations(obs), reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.vec.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._get_indices(indices))
        raise AttributeError(f"{type(self).__name__} has no attribute {attr_name!r} per sub-env")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"{type(self).__name__} has no settable attribute {attr_name!r}")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list:
        raise AttributeError(f"{type(self).__name__} has no per-sub-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
