"""stable-baselines3 interop and the non-meta baselines that MAML is compared against.

Two baselines of Finn et al. 2017 (section 5.3), trained with SB3's PPO:

- *pretrained*: one policy trained on the whole task distribution, a new task
  drawn at every episode and never observed (:class:`TaskResampleWrapper`);
  MAML's comparison fine-tunes it with the same inner step.
- *oracle*: one policy that observes the task (:class:`TaskObservationWrapper`),
  an upper bound on what adaptation can reach.

:func:`to_sb3` and :func:`from_sb3` convert a :class:`GaussianMLPPolicy` to an
SB3 ``PPO`` with an ``MlpPolicy`` of the same architecture and back; the two
give the same action distribution (same mean, same state-independent
``log_std``), so the pretrained policy can be loaded as a metarl policy and
adapted like any other. SB3's value network has no counterpart in metarl: it is
freshly initialised by :func:`to_sb3` and dropped by :func:`from_sb3`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn

import envs as _envs  # noqa: F401  (registers the metarl/* ids for gym.make)
from metarl.errors import InputError
from metarl.policies import ACTIVATIONS, GaussianMLPPolicy, Params

__all__ = [
    "BatchedTaskVecEnv",
    "TaskObservationWrapper",
    "TaskResampleWrapper",
    "from_sb3",
    "load_pretrained",
    "oracle_returns",
    "to_sb3",
    "train_oracle",
    "train_pretrained",
]


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


def _flat_dim(space: gym.Space, what: str) -> int:
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
    re-initialised, and nothing in it normalises observations.

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

    obs_dim = _flat_dim(model.observation_space, "the env's observation space")
    act_dim = _flat_dim(model.action_space, "the env's action space")
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
            theirs.weight.copy_(factor * params[f"{prefix}.weight"].detach())
            theirs.bias.copy_(factor * params[f"{prefix}.bias"].detach())
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
        _flat_dim(model.observation_space, "the model's observation space"),
        _flat_dim(model.action_space, "the model's action space"),
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


# --- task wrappers ---------------------------------------------------------------


def _task_fields(env: gym.Env) -> tuple[Any, ...]:
    fields = getattr(env.unwrapped, "task_fields", None)
    if not fields or not hasattr(env.unwrapped, "sample_tasks"):
        raise ValueError(
            f"{env.unwrapped!r} is not a task distribution (no task_fields / sample_tasks)"
        )
    return tuple(fields)


def _task_values(fields: Sequence[Any], task: Mapping[str, Any]) -> np.ndarray:
    """The task's numbers in ``task_fields`` order, points flattened (``goal`` gives 2)."""
    return np.concatenate([np.ravel(np.asarray(task[f.name], dtype=np.float64)) for f in fields])


def _task_bounds(field: Any) -> tuple[np.ndarray, np.ndarray]:
    if field.kind == "sign":
        low, high = -1.0, 1.0
    elif field.kind == "disk":
        low, high = -field.high, field.high
    else:
        low, high = field.low, field.high
    size = 1 if field.kind in ("uniform", "sign") else field.dim
    return np.full(size, low), np.full(size, high)


class TaskResampleWrapper(gym.Wrapper):
    """Draws a new task from the env's own distribution at every ``reset``; the task stays hidden.

    The task is set before the inner env resets, so the whole episode is
    rewarded for it; ``info["task"]`` on reset names it (the observation does not).

    Args:
        env: an env whose ``unwrapped`` is a metarl task distribution.
        rng: the generator tasks are drawn from (an int seeds a new one). Tasks
            come only from it, so ``reset(seed=...)`` seeds the physics but not
            the task sequence.
    """

    def __init__(self, env: gym.Env, rng: np.random.Generator | int | None = None) -> None:
        super().__init__(env)
        _task_fields(env)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        task = self.env.unwrapped.sample_tasks(1, rng=self.rng)[0]
        self.env.unwrapped.task = task
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "task": task}


class TaskObservationWrapper(gym.ObservationWrapper):
    """Appends the current task's values to the observation (the oracle's input).

    Values follow ``task_fields`` order, points flattened: Navigation2D gives
    ``[x, y, goal_x, goal_y]``. The observation space gains the task's bounds
    (``[-1, 1]`` for a direction, the box or disk bounds for a goal) and keeps
    its dtype. The task is read at every observation, so a task changed before
    ``reset`` (by :class:`TaskResampleWrapper` underneath, or by hand) is seen
    from the first observation on.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._fields = _task_fields(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"TaskObservationWrapper needs a flat Box observation, got {space!r}")
        bounds = [_task_bounds(f) for f in self._fields]
        low = np.concatenate([space.low, *(lo for lo, _ in bounds)]).astype(space.dtype)
        high = np.concatenate([space.high, *(hi for _, hi in bounds)]).astype(space.dtype)
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        task = _task_values(self._fields, self.env.unwrapped.task)
        return np.concatenate([observation, task]).astype(self.observation_space.dtype)


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
        self.fields = _task_fields(single)
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
        values = _task_values(self.fields, task)
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


# --- training the baselines ------------------------------------------------------


class _TqdmCallback(BaseCallback):
    """SB3's progress bar without ``rich`` (SB3's own needs ``tqdm.rich``)."""

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        total = self.locals["total_timesteps"] - self.model.num_timesteps
        self._bar = tqdm(total=total, unit="step", desc="PPO")

    def _on_step(self) -> bool:
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self._bar.close()


def _progress(progress_bar: bool) -> tuple[bool, BaseCallback | None]:
    """``(progress_bar, callback)`` for ``learn``: SB3's bar when rich imports, else tqdm."""
    if not progress_bar:
        return False, None
    try:
        import rich  # noqa: F401
        import tqdm.rich  # noqa: F401
    except ImportError:
        return False, _TqdmCallback()
    return True, None


def _vec_env(env_id: str, n_envs: int, seed: int, observe_task: bool) -> VecEnv:
    """The training envs: the family's batched engine where it has one, else a ``DummyVecEnv``."""
    if gym.spec(env_id).vector_entry_point is not None:
        return BatchedTaskVecEnv(env_id, n_envs, seed, observe_task)

    def make(rank: int):
        def thunk() -> gym.Env:
            env: gym.Env = gym.make(env_id)
            # Each sub-env its own task stream, reproducible from (seed, rank).
            env = TaskResampleWrapper(env, np.random.default_rng([seed, rank]))
            if observe_task:
                env = TaskObservationWrapper(env)
            return Monitor(env)

        return thunk

    return DummyVecEnv([make(rank) for rank in range(n_envs)])


def _train(
    env_id: str,
    total_timesteps: int,
    hidden_sizes: Sequence[int],
    activation: str,
    init_std: float,
    seed: int,
    out_path: str | os.PathLike[str],
    progress_bar: bool,
    n_envs: int,
    ppo_kwargs: Mapping[str, Any] | None,
    observe_task: bool,
) -> Path:
    if total_timesteps <= 0 or n_envs <= 0:
        raise InputError(
            f"total_timesteps and n_envs must be positive, got {total_timesteps}, {n_envs}"
        )
    vec = _vec_env(env_id, n_envs, seed, observe_task)
    # The actor starts from metarl's own initialisation, as a meta-trained policy does.
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(
        _flat_dim(vec.observation_space, "the observation space"),
        _flat_dim(vec.action_space, "the action space"),
        hidden_sizes=hidden_sizes,
        activation=activation,
        init_std=init_std,
    )
    # SB3's default rollout of 2048 steps, split over the sub-envs.
    kwargs = {"n_steps": max(2048 // n_envs, 1), "seed": seed, "verbose": 0, **(ppo_kwargs or {})}
    model = to_sb3(policy, vec, **kwargs)
    use_bar, callback = _progress(progress_bar)
    model.learn(total_timesteps=total_timesteps, progress_bar=use_bar, callback=callback)
    vec.close()

    path = Path(out_path)
    if path.suffix == "":
        path = path.with_name(path.name + ".zip")  # what SB3's save writes anyway
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def train_pretrained(
    env_id: str,
    total_timesteps: int,
    hidden_sizes: Sequence[int],
    activation: str,
    init_std: float,
    seed: int,
    out_path: str | os.PathLike[str],
    progress_bar: bool = True,
    *,
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Train one PPO policy on the whole task distribution (tasks hidden) and save it.

    Every episode of every sub-env draws a new task (:class:`TaskResampleWrapper`).
    The actor has metarl's architecture and initialisation, so
    :func:`load_pretrained` gives a :class:`GaussianMLPPolicy` to adapt.

    Args:
        env_id: a metarl task-distribution id.
        total_timesteps: environment steps of PPO (SB3 rounds up to whole rollouts).
        hidden_sizes, activation, init_std: the policy architecture, as in ``PolicyConfig``.
        seed: seeds the initialisation, PPO, the physics and the task draws.
        out_path: where the SB3 zip goes (``.zip`` appended when there is no suffix).
        progress_bar: show SB3's progress bar (a plain tqdm bar when ``rich`` is missing).
        n_envs: sub-envs in SB3's ``DummyVecEnv``.
        ppo_kwargs: ``PPO`` keyword arguments over the defaults (SB3's, with
            ``n_steps = 2048 // n_envs``).

    Returns:
        The path written.
    """
    return _train(
        env_id,
        total_timesteps,
        hidden_sizes,
        activation,
        init_std,
        seed,
        out_path,
        progress_bar,
        n_envs,
        ppo_kwargs,
        observe_task=False,
    )


def train_oracle(
    env_id: str,
    total_timesteps: int,
    hidden_sizes: Sequence[int],
    activation: str,
    init_std: float,
    seed: int,
    out_path: str | os.PathLike[str],
    progress_bar: bool = True,
    *,
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Train the oracle: PPO that observes the task (:class:`TaskObservationWrapper`), tasks resampled every episode.

    Arguments and return value as :func:`train_pretrained`; evaluate the result
    with :func:`oracle_returns`.
    """
    return _train(
        env_id,
        total_timesteps,
        hidden_sizes,
        activation,
        init_std,
        seed,
        out_path,
        progress_bar,
        n_envs,
        ppo_kwargs,
        observe_task=True,
    )


def _load(path: str | os.PathLike[str]) -> PPO:
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").exists():
        path = path.with_name(path.name + ".zip")
    if not path.is_file():
        raise FileNotFoundError(f"no saved SB3 model at {path}")
    return PPO.load(path, device="cpu")


def load_pretrained(path: str | os.PathLike[str], action_scale: float = 1.0) -> GaussianMLPPolicy:
    """The metarl policy saved by :func:`train_pretrained` (any SB3 ``MlpPolicy`` PPO zip).

    ``action_scale``: the parameterisation to load it in (see :func:`from_sb3`).
    """
    return from_sb3(_load(path), action_scale)


def oracle_returns(
    path: str | os.PathLike[str],
    env_id: str,
    tasks: Sequence[Mapping[str, Any]],
    episodes: int,
    seed: int,
    *,
    deterministic: bool = False,
) -> list[float]:
    """Mean undiscounted return per task of the oracle saved by :func:`train_oracle`.

    Actions are *sampled* by default (``deterministic=False``), as the episodes
    behind MAML's pre- and post-adaptation returns are; ``deterministic=True``
    uses the mean action. Either way SB3 clips them to the action space, as in
    training. Episode ``k`` of every task starts from ``reset(seed=seed + k)``
    and the action noise from ``torch.manual_seed(seed)`` per task, so tasks are
    compared on the same random numbers; the global torch RNG is left untouched.
    An episode runs to termination or the env's registered horizon.
    """
    if episodes <= 0:
        raise InputError(f"episodes must be positive, got {episodes}")
    model = _load(path)
    env_list = [TaskObservationWrapper(gym.make(env_id)) for _ in range(episodes)]
    if env_list[0].observation_space.shape != model.observation_space.shape:
        raise InputError(
            f"{path}: the model observes {model.observation_space.shape}, but {env_id} with its "
            f"task appended gives {env_list[0].observation_space.shape}; is it an oracle for this env?"
        )
    results = []
    try:
        for task in tasks:
            totals = np.zeros(episodes)
            obs = []
            for k, env in enumerate(env_list):
                env.unwrapped.task = task
                obs.append(env.reset(seed=seed + k)[0])
            alive = np.ones(episodes, dtype=bool)
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                while alive.any():
                    actions, _ = model.predict(np.stack(obs), deterministic=deterministic)
                    for k in np.flatnonzero(alive):
                        obs[k], reward, terminated, truncated, _ = env_list[k].step(actions[k])
                        totals[k] += float(reward)
                        alive[k] = not (terminated or truncated)
            results.append(float(totals.mean()))
    finally:
        for env in env_list:
            env.close()
    return results
