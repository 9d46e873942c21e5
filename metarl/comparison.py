"""The non-meta comparison policies that MAML is compared against, trained with
stable-baselines3 (:mod:`metarl.sb3` converts them).

Two baselines of Finn et al. 2017 (section 5.3), trained by :func:`train_baseline`:

- *pretrained*: one policy trained on the whole task distribution, a new task
  drawn at every episode and never observed (:class:`~envs.wrappers.TaskResampleWrapper`);
  MAML's comparison fine-tunes it with the same inner step.
- *oracle*: one PPO or SAC policy that observes the task
  (:class:`~envs.wrappers.TaskObservationWrapper`), an upper bound on what adaptation can reach.

Each writes its learning curve beside its zip (:func:`curve_path`, SB3's monitor CSV), so
that a baseline can be shown to have been trained until its curve flattened
(:func:`curve_summary`). :func:`oracle_returns` scores the oracle on given tasks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from envs.wrappers import TaskObservationWrapper, TaskResampleWrapper
from metarl.errors import InputError
from metarl.plotting import read_curve
from metarl.policies import GaussianMLPPolicy
from metarl.sb3 import BatchedTaskVecEnv, flat_dim, from_sb3, to_sb3

__all__ = [
    "ALGORITHMS",
    "curve_path",
    "curve_summary",
    "load_pretrained",
    "oracle_returns",
    "saved_steps",
    "train_baseline",
    "train_oracle",
    "train_pretrained",
]


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


ALGORITHMS = ("ppo", "sac")
"""SB3 algorithms a baseline trains with; the pretrained baseline must be PPO (it is adapted)."""

# SB3's SAC defaults with rl-baselines3-zoo's warm-up for MuJoCo locomotion
# (rl-baselines3-zoo hyperparams/sac.yml: learning_starts 10000, 256x256 ReLU).
SAC_DEFAULTS: dict[str, Any] = {"learning_starts": 10_000}


def _vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    observe_task: bool,
    horizon: int | None,
    env_kwargs: Mapping[str, Any] | None,
) -> VecEnv:
    """The training envs: the family's batched engine where it has one, else a ``DummyVecEnv``."""
    if gym.spec(env_id).vector_entry_point is not None:
        return BatchedTaskVecEnv(env_id, n_envs, seed, observe_task, horizon, env_kwargs)
    options = {**({"max_episode_steps": horizon} if horizon else {}), **dict(env_kwargs or {})}

    def make(rank: int):
        def thunk() -> gym.Env:
            env: gym.Env = gym.make(env_id, **options)
            # Each sub-env its own task stream, reproducible from (seed, rank).
            env = TaskResampleWrapper(env, np.random.default_rng([seed, rank]))
            if observe_task:
                env = TaskObservationWrapper(env)
            return env

        return thunk

    return DummyVecEnv([make(rank) for rank in range(n_envs)])


def curve_path(path: str | os.PathLike[str]) -> Path:
    """The learning curve written beside a baseline's zip: ``oracle.zip`` -> ``oracle.monitor.csv``."""
    path = Path(path)
    return path.with_name(path.stem + ".monitor.csv")


def curve_summary(path: str | os.PathLike[str], share: float = 0.1) -> dict[str, Any]:
    """Whether a baseline's learning curve has flattened.

    The episodes are cut into blocks of ``share`` of them, in order. ``last`` is the
    mean return of the last block, ``before`` the best mean of the blocks before it (so
    a dip on the way, such as a resumed SAC's while its replay buffer refills, is not
    taken for a rise when the curve climbs back), ``rise`` the best block's mean minus
    the first's (what training gained), ``noise`` two standard errors of ``last -
    before``. The curve is ``flat`` when the last block gains on ``before`` by at most
    5% of the rise, or by no more than the noise.
    """
    _, returns = read_curve(path)
    n = max(int(len(returns) * share), 1)
    if len(returns) < 2 * n or n < 2:
        raise InputError(f"{path}: {len(returns)} episodes are too few to tell a trend")
    blocks = [returns[i : i + n] for i in range(0, len(returns) - n + 1, n)]
    means = [float(b.mean()) for b in blocks]
    best = int(np.argmax(means[:-1]))
    last, before = blocks[-1], blocks[best]
    change = means[-1] - means[best]
    rise = max(means) - means[0]
    noise = 2.0 * math.sqrt(last.var(ddof=1) / len(last) + before.var(ddof=1) / len(before))
    return {
        "episodes": len(returns),
        "last": means[-1],
        "before": means[best],
        "change": change,
        "rise": rise,
        "noise": noise,
        "flat": bool(change <= max(0.05 * rise, noise)),
    }


def train_baseline(
    env_id: str,
    total_timesteps: int,
    hidden_sizes: Sequence[int],
    activation: str,
    init_std: float,
    seed: int,
    out_path: str | os.PathLike[str],
    progress_bar: bool = True,
    *,
    observe_task: bool,
    algorithm: str = "ppo",
    horizon: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    n_envs: int = 8,
    algo_kwargs: Mapping[str, Any] | None = None,
    resume: bool = False,
    save_every: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train one SB3 policy on the whole task distribution and save it: the *pretrained*
    baseline (tasks hidden) or, with ``observe_task``, the *oracle*.

    Every episode of every sub-env draws a new task (:class:`~envs.wrappers.TaskResampleWrapper`);
    the oracle sees it appended to the observation (:class:`~envs.wrappers.TaskObservationWrapper`).
    With PPO the actor has metarl's architecture and initialisation, so :func:`load_pretrained`
    gives a :class:`GaussianMLPPolicy` to adapt. The oracle may use SAC instead (SB3's
    ``MlpPolicy``, 256x256 ReLU; :data:`SAC_DEFAULTS`), which reaches stronger locomotion
    policies in fewer steps; evaluate an oracle with :func:`oracle_returns`. The learning
    curve (return and length of every finished episode) goes to :func:`curve_path`.

    Args:
        env_id: a metarl task-distribution id.
        total_timesteps: environment steps (SB3 rounds PPO up to whole rollouts).
        hidden_sizes, activation, init_std: the PPO policy's architecture, as in ``PolicyConfig``.
        seed: seeds the initialisation, the algorithm, the physics and the task draws.
        out_path: where the SB3 zip goes (``.zip`` appended when there is no suffix).
        progress_bar: show SB3's progress bar (a plain tqdm bar when ``rich`` is missing).
        observe_task: train the oracle (the task observed) rather than the pretrained policy.
        algorithm: one of :data:`ALGORITHMS`; ``sac`` only with ``observe_task``.
        horizon: episode length (default: the registry's); pass the run's ``config.horizon``.
        env_kwargs: the env's options; pass the run's ``config.env_kwargs``.
        n_envs: sub-envs stepped together.
        algo_kwargs: keyword arguments of ``PPO`` / ``SAC`` over the defaults (PPO: SB3's,
            with ``n_steps = 2048 // n_envs``; SAC: :data:`SAC_DEFAULTS`). When resuming they
            override the saved ones.
        resume: continue the baseline saved at ``out_path`` (its algorithm and the same env)
            until ``total_timesteps`` in all (nothing is trained when it has them already:
            :func:`saved_steps`); its learning curve is continued. A SAC model's replay
            buffer is not saved: it refills it with its ``learning_starts`` random steps first.
        save_every: also save the zip and the curve so far every this many environment steps
            (0: only at the end), so that an interrupted training can be resumed.
        log: called with one line at each save (the steps trained, the curve's last episodes),
            for logs of runs without a progress bar.

    Returns:
        The path written.
    """
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import VecMonitor

    if total_timesteps <= 0 or n_envs <= 0:
        raise InputError(
            f"total_timesteps and n_envs must be positive, got {total_timesteps}, {n_envs}"
        )
    if save_every < 0:
        raise InputError(f"save_every must be 0 (save at the end) or positive, got {save_every}")
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if algorithm == "sac" and not observe_task:
        raise InputError(
            "the pretrained baseline is adapted by metarl's policy-gradient step, so it must be "
            "a PPO Gaussian policy; use algorithm 'ppo' (SAC is for the oracle)"
        )
    path = Path(out_path)
    if path.suffix == "":
        path = path.with_name(path.name + ".zip")  # what SB3's save writes anyway
    trained = _trained_steps(path, algorithm) if resume else 0
    if trained >= total_timesteps:
        return path  # resumed at or past the total asked: nothing to train
    path.parent.mkdir(parents=True, exist_ok=True)
    # The new episodes go to a temporary curve; each save writes the zip and the whole curve
    # so far (an earlier run's episodes first, when resuming) beside it, so an interrupted
    # training leaves the last save's zip and curve, which resume continues.
    partial = curve_path(path.with_name(f".{path.stem}.partial.zip"))
    # Read once: each save rewrites the file beside the zip.
    earlier = (
        curve_path(path).read_text().splitlines() if resume and curve_path(path).is_file() else []
    )
    # A resumed run draws fresh physics, tasks and noise rather than repeating the first run's.
    stream = (
        seed if not resume else int(np.random.SeedSequence([seed, trained]).generate_state(1)[0])
    )
    vec = _vec_env(env_id, n_envs, stream, observe_task, horizon, env_kwargs)
    vec = VecMonitor(vec, str(partial).removesuffix(".monitor.csv"))
    try:
        if resume:
            model = _reload(path, vec, stream, algo_kwargs)
        elif algorithm == "sac":
            kwargs = {**SAC_DEFAULTS, "seed": seed, "verbose": 0, **(algo_kwargs or {})}
            model = _construct(SAC, "MlpPolicy", vec, device="cpu", **kwargs)
        else:
            # The actor starts from metarl's own initialisation, as a meta-trained policy does.
            torch.manual_seed(seed)
            policy = GaussianMLPPolicy(
                flat_dim(vec.observation_space, "the observation space"),
                flat_dim(vec.action_space, "the action space"),
                hidden_sizes=hidden_sizes,
                activation=activation,
                init_std=init_std,
            )
            # SB3's default rollout of 2048 steps, split over the sub-envs.
            kwargs = {"n_steps": max(2048 // n_envs, 1), "seed": seed, "verbose": 0}
            model = _construct(to_sb3, policy, vec, **{**kwargs, **(algo_kwargs or {})})

        # SB3 logs nothing at verbose 0 yet makes an empty tempdir/SB3-<time> folder per learn()
        # unless the model has a logger of its own: one without outputs writes nothing anywhere.
        model.set_logger(Logger(folder=None, output_formats=[]))
        saved_at = -1
        warmup = getattr(model, "learning_starts", None)  # SAC's; _reload shifted it
        if warmup is not None and resume:
            warmup -= trained

        def save() -> None:
            nonlocal saved_at
            if model.num_timesteps != saved_at:  # the last checkpoint may fall at the end
                _save_atomically(model, path, warmup)
                _merge_curves(earlier, partial, curve_path(path))
                saved_at = model.num_timesteps
                if log is not None:
                    log(_save_line(path, saved_at, total_timesteps))

        use_bar, bar = _progress(progress_bar)
        callbacks = [c for c in (bar, _Checkpoint(save_every, save) if save_every else None) if c]
        model.learn(
            total_timesteps=total_timesteps - trained,
            progress_bar=use_bar,
            callback=callbacks or None,
            reset_num_timesteps=not resume,
        )
        save()
    finally:
        vec.close()
        partial.unlink(missing_ok=True)
    return path


def saved_steps(path: str | os.PathLike[str]) -> int:
    """The environment steps the baseline saved at ``path`` has trained."""
    return _algorithm_of(path)[2]


def _trained_steps(path: Path, algorithm: str) -> int:
    """The environment steps the baseline saved at ``path`` has trained, checked resumable."""
    if not path.is_file():
        raise InputError(
            f"{path} does not exist, so there is nothing to resume; train it first without resume"
        )
    saved, _, trained = _algorithm_of(path)
    name = saved.__name__.lower()
    if name != algorithm:
        raise InputError(f"{path} holds a {name} model; resume it with algorithm {name!r}")
    return trained


def _reload(
    path: Path, vec: VecEnv, seed: int, algo_kwargs: Mapping[str, Any] | None
) -> BaseAlgorithm:
    """The saved baseline at ``path`` on the envs ``vec``, ready to train on.

    ``algo_kwargs`` override the saved hyperparameters (``gradient_steps``, say). A SAC
    model's replay buffer is not kept (an Ant oracle's takes 1.7 GB): it refills the
    buffer with ``learning_starts`` steps of random actions before its updates resume,
    as its first run began.
    """
    from stable_baselines3 import SAC

    algorithm, _, _ = _algorithm_of(path)
    try:
        model = algorithm.load(path, env=vec, device="cpu", **dict(algo_kwargs or {}))
    except ValueError as error:  # SB3's check of the observation and action spaces
        raise InputError(
            f"{path} does not fit the config's env ({error}); resume with the config it was "
            "trained with"
        ) from None
    model.set_random_seed(seed)
    if isinstance(model, SAC):  # saved as the warm-up's length (see _save_atomically)
        model.learning_starts = model.num_timesteps + int(model.learning_starts)
    return model


def _save_atomically(model: BaseAlgorithm, path: Path, warmup: int | None) -> None:
    """Save ``model`` to ``path``, written under a temporary name first so that an
    interruption leaves the last save. A SAC model is saved with ``learning_starts`` set
    to its ``warmup`` (a resumed one trains with it shifted past the resumed steps), so
    that every resume refills its buffer with that many steps."""
    staged = path.with_name(f".{path.stem}.saving.zip")
    shifted = getattr(model, "learning_starts", None)
    if warmup is not None:
        model.learning_starts = warmup
    try:
        model.save(staged)
    finally:
        if warmup is not None:
            model.learning_starts = shifted
    os.replace(staged, path)


def _save_line(path: Path, steps: int, total: int, last: int = 100) -> str:
    """One line on a save: the steps trained of ``total`` and the curve's ``last`` episodes."""
    _, returns = read_curve(curve_path(path))
    tail = returns[-last:]
    episodes = (
        f"mean return of the last {len(tail)} episodes {tail.mean():.1f}"
        if len(tail)
        else "no episode finished yet"
    )
    return f"saved {path} at {steps} of {total} steps: {episodes}"


def _merge_curves(earlier: list[str], partial: Path, out: Path) -> None:
    """Write ``out``: the ``earlier`` curve's lines, then the episodes of ``partial``, their
    times continuing the earlier ones (both SB3 monitor CSVs: a JSON line, then ``r,l,t``)."""
    head, rows = earlier[:2], list(earlier[2:])
    offset = float(rows[-1].split(",")[2]) if rows else 0.0
    lines = partial.read_text().splitlines() if partial.is_file() else []
    head = head or lines[:2]
    for line in lines[2:]:
        r, length, t = line.split(",")
        rows.append(f"{r},{length},{float(t) + offset:.6f}")
    staged = out.with_name(f".{out.name}.saving")
    staged.write_text("\n".join(head + rows) + "\n")
    os.replace(staged, out)


class _Checkpoint(BaseCallback):
    """Calls ``save`` each time another ``every`` environment steps have been trained."""

    def __init__(self, every: int, save: Any) -> None:
        super().__init__()
        self.every, self.save = every, save

    def _on_training_start(self) -> None:
        self._next = self.model.num_timesteps + self.every

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next:
            self.save()
            self._next += self.every
        return True


def _construct(make: Any, *args: Any, **kwargs: Any) -> BaseAlgorithm:
    """``make(*args, **kwargs)``, a keyword SB3 does not take reported as the user's error."""
    try:
        return make(*args, **kwargs)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        raise InputError(f"algo_kwargs: {error}; see the SB3 algorithm's documentation") from None


def train_pretrained(*args: Any, **kwargs: Any) -> Path:
    """The *pretrained* baseline: :func:`train_baseline` with the task hidden (same arguments)."""
    return train_baseline(*args, observe_task=False, **kwargs)


def train_oracle(*args: Any, **kwargs: Any) -> Path:
    """The *oracle*: :func:`train_baseline` with the task observed (same arguments)."""
    return train_baseline(*args, observe_task=True, **kwargs)


def _algorithm_of(path: str | os.PathLike[str]) -> tuple[type[BaseAlgorithm], Path, int]:
    """The SB3 class (PPO or SAC, told by its policy) of the zip saved at ``path``, the zip's
    path (``.zip`` appended when ``path`` lacks it) and the environment steps it has trained,
    read from the zip's data without building the model (a SAC's replay buffer alone is
    gigabytes for Ant)."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.save_util import load_from_zip_file
    from stable_baselines3.sac.policies import SACPolicy

    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").exists():
        path = path.with_name(path.name + ".zip")
    if not path.is_file():
        raise FileNotFoundError(f"no saved SB3 model at {path}")
    try:
        data, _, _ = load_from_zip_file(path, load_data=True, device="cpu", print_system_info=False)
    except ValueError as error:  # SB3's "wasn't a zip-file"
        raise InputError(f"{path} is not a saved stable-baselines3 model ({error})") from None
    policy_class = data.get("policy_class") if data else None
    is_sac = isinstance(policy_class, type) and issubclass(policy_class, SACPolicy)
    return (SAC if is_sac else PPO), path, int(data.get("num_timesteps", 0) if data else 0)


def _load(path: str | os.PathLike[str]) -> BaseAlgorithm:
    """The SB3 model in a zip saved by :func:`train_baseline`: PPO or SAC, told by its policy."""
    algorithm, path, _ = _algorithm_of(path)
    return algorithm.load(path, device="cpu")


def load_pretrained(path: str | os.PathLike[str], action_scale: float = 1.0) -> GaussianMLPPolicy:
    """The metarl policy saved by :func:`train_pretrained` (any SB3 ``MlpPolicy`` PPO zip).

    ``action_scale``: the parameterisation to load it in (see :func:`from_sb3`).
    """
    model = _load(path)
    if not isinstance(model, PPO):
        raise InputError(
            f"{path} holds a {type(model).__name__} model; the pretrained baseline must be a "
            "PPO Gaussian policy (train it with `metarl baseline pretrain`)"
        )
    return from_sb3(model, action_scale)


def oracle_returns(
    path: str | os.PathLike[str],
    env_id: str,
    tasks: Sequence[Mapping[str, Any]],
    episodes: int,
    seed: int,
    *,
    horizon: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    deterministic: bool = False,
) -> list[float]:
    """Mean undiscounted return per task of the oracle saved by :func:`train_oracle`.

    Actions are *sampled* by default (``deterministic=False``), as the episodes
    behind MAML's pre- and post-adaptation returns are; ``deterministic=True``
    uses the mean action. Either way SB3 clips them to the action space, as in
    training. Episode ``k`` of every task starts from ``reset(seed=seed + k)``
    and the action noise from ``torch.manual_seed(seed)`` per task, so tasks are
    compared on the same random numbers; the global torch RNG is left untouched.
    An episode runs to termination or ``horizon`` (default: the env's registered one),
    on the env made with ``env_kwargs``: pass the run's ``config.horizon`` and
    ``config.env_kwargs`` so the oracle is scored on the tasks metarl is.
    """
    if episodes <= 0:
        raise InputError(f"episodes must be positive, got {episodes}")
    model = _load(path)
    options = {**({"max_episode_steps": horizon} if horizon else {}), **dict(env_kwargs or {})}
    env_list = [TaskObservationWrapper(gym.make(env_id, **options)) for _ in range(episodes)]
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
