"""The meta-training loop of MAML for RL (Finn et al. 2017, algorithm 3), top to bottom.

One iteration: sample tasks, collect pre-adaptation episodes with theta, adapt
theta to each task with one policy-gradient step, collect post-adaptation
episodes with the adapted parameters, take a meta-step (TRPO or PPO), log,
checkpoint. The method of the MAML family (MAML, Reptile, iMAML; see
:mod:`metarl.meta_learners`) says how each inner step adapts and how the
meta-step is formed; the loop is the same for all. Everything random in an iteration is seeded from ``(seed,
iteration)``, so a resumed run repeats the numbers of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from metarl.adaptation import AdaptationSettings, compute_advantages
from metarl.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    RunLock,
    append_progress,
    checkpoint_config,
    get_rng_states,
    load_checkpoint,
    load_policy,
    load_warm_start,
    make_policy,
    progress_rows,
    save_checkpoint,
    set_rng_states,
    truncate_progress,
)
from metarl.config import Config, ConfigError, save_config
from metarl.episodes import Episodes
from metarl.errors import InputError
from metarl.meta_learners import make_meta_learner
from metarl.meta_optimizers import make_meta_optimizer
from metarl.objectives import MetaBatch
from metarl.sampler import Sampler
from metarl.sampling import make_sampler
from metarl.value_baseline import LinearFeatureBaseline

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "Trainer",
    "TrainingDiverged",
    "load_checkpoint",
    "load_policy",
    "make_policy",
    "train",
]


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN or infinite; the last good checkpoint is kept."""


def iteration_seeds(
    seed: int, iteration: int, steps: int = 1
) -> tuple[np.random.Generator, list[int], int]:
    """The task generator, the sampling seed before each inner step, and the post-adaptation
    seed of one iteration. (More steps extend the seed list; the first three words are the
    same for any number of steps, so a one-step run draws what it always drew.)"""
    words = np.random.SeedSequence([seed, iteration]).generate_state(2 + steps)
    tasks_seed, first, post_seed, *rest = (int(w) for w in words)
    return np.random.default_rng(tasks_seed), [first, *rest], post_seed


def mean_return(episodes: Episodes) -> float:
    """Mean undiscounted episode return over every task and episode."""
    return float(episodes.episode_returns.mean())


def subgroup_returns(
    name: str, episodes: Episodes, groups: list[str], subgroups: tuple[str, ...]
) -> dict[str, float]:
    """``{name}/{subgroup}``: the mean return of the stacked tasks in each subgroup.

    ``groups`` is the subgroup of each task; a subgroup without tasks in this batch
    is NaN (a blank curve point, not a zero). Nothing for a one-group distribution.
    """
    if len(subgroups) < 2:
        return {}
    returns = episodes.episode_returns.mean(dim=-1)  # [task]
    columns = {}
    for subgroup in subgroups:
        picked = [i for i, g in enumerate(groups) if g == subgroup]
        value = float(returns[picked].mean()) if picked else float("nan")
        columns[f"{name}/{subgroup_column(subgroup)}"] = value
    return columns


def subgroup_column(subgroup: str) -> str:
    """A subgroup's name as a column and TensorBoard tag: ``velocity < 1`` -> ``velocity_lt_1``."""
    return subgroup.replace(" >= ", "_ge_").replace(" < ", "_lt_").replace(" ", "_")


class Trainer:
    """Meta-trains a policy as ``config`` says and writes the run directory.

    Args:
        config: the resolved config.
        run_dir: where ``config.yaml``, ``progress.csv``, ``checkpoints/latest.pt`` and
            the TensorBoard events go.
        resume: continue the run in ``run_dir`` from its ``latest.pt``.
        progress: show a progress bar.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | os.PathLike[str],
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.checkpoint_path = self.run_dir / "checkpoints" / "latest.pt"
        self.progress_path = self.run_dir / "progress.csv"
        envs.register_envs()
        probe = _make_probe_env(config.env, config.env_kwargs)
        self.task_distribution = probe.unwrapped
        # The returns are logged per subgroup where the distribution names its subgroups
        # (every envs.TaskDistribution does; DESIGN's env contract does not require it).
        named = getattr(self.task_distribution, "subgroups", None)
        self.subgroups: tuple[str, ...] = tuple(named()) if named is not None else ()
        obs_dim = int(np.prod(probe.observation_space.shape))
        act_dim = int(np.prod(probe.action_space.shape))
        _check_memory(config, obs_dim, act_dim)
        torch.manual_seed(config.seed)
        self.policy = make_policy(config, obs_dim, act_dim)
        self.baseline = LinearFeatureBaseline(config.baseline_reg)
        self.meta_optimizer = make_meta_optimizer(config.meta_optimizer)
        self.meta_learner = make_meta_learner(config, self.policy)
        self.adaptation = AdaptationSettings.from_config(config)
        self.start_iteration, self.env_steps, self.elapsed_s = 0, 0, 0.0
        self.warm_start: dict[str, Any] | None = None  # init_from's run, iteration, env steps
        if resume and not self.run_dir.is_dir():
            raise CheckpointError(
                f"run directory {self.run_dir} does not exist; pass the --run-dir of a training "
                "run, or leave out --resume to start one there"
            )
        if resume and not self._never_started():
            self._lock = RunLock(self.run_dir)
            try:
                self._restore()
            except BaseException:
                self._lock.release()
                raise
        else:
            if config.init_from is not None:
                self._warm_start(config.init_from)
            self._create_run_dir()
            self._lock = RunLock(self.run_dir)

    def _never_started(self) -> bool:
        """A run directory whose run died before its first checkpoint: it can start over."""
        if not (self.run_dir / "config.yaml").is_file() or self.checkpoint_path.exists():
            return False
        return progress_rows(self.progress_path) == 0

    @property
    def done(self) -> bool:
        """Whether the run already has ``config.iterations`` iterations (nothing to train)."""
        return self.start_iteration >= self.config.iterations

    def close(self) -> None:
        """Release the run directory (done by :meth:`train` when it returns or fails)."""
        self._lock.release()

    # --- the loop ------------------------------------------------------------------------------
    def train(self, on_iteration: Callable[[dict[str, float]], None] | None = None) -> Path:
        """Run the remaining iterations; returns the run directory.

        A resumed run that already has ``config.iterations`` iterations is left as it is:
        nothing is sampled or written (not even an empty TensorBoard file).
        """
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        c = self.config
        if self.done:
            self.close()
            return self.run_dir
        writer = SummaryWriter(str(self.run_dir), purge_step=self.start_iteration)
        bar = tqdm(
            total=c.iterations,
            initial=self.start_iteration,
            desc=f"meta-training {c.env}",
            unit="it",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            with self.make_sampler() as sampler:
                for iteration in range(self.start_iteration, c.iterations):
                    row = self.iteration(sampler, iteration)
                    self._log(row, writer)
                    if (iteration + 1) % c.checkpoint_every == 0 or iteration + 1 == c.iterations:
                        self.save_checkpoint(iteration + 1)
                    bar.set_postfix(
                        pre=f"{row['return_pre']:.1f}", post=f"{row['return_post']:.1f}"
                    )
                    bar.update(1)
                    if on_iteration is not None:
                        on_iteration(row)
        finally:
            bar.close()
            writer.close()
            self.close()
        return self.run_dir

    def iteration(self, sampler: Sampler, iteration: int) -> dict[str, float]:
        """One meta-iteration; returns its ``progress.csv`` row (timings included)."""
        c, start = self.config, time.perf_counter()
        steps = self.adaptation.steps
        task_rng, pre_seeds, post_seed = iteration_seeds(c.seed, iteration, steps)

        # 1. Tasks of this meta-batch.
        tasks = self.task_distribution.sample_tasks(c.tasks_per_batch, task_rng)
        groups = [self.task_distribution.task_subgroup(t) for t in tasks] if self.subgroups else []

        # 2-3. Episodes with theta, then one inner step on them; with several steps, each
        # next step on fresh episodes of the parameters before it (values only: the
        # meta-step rebuilds the graph through every step).
        sampling_s = adaptation_s = 0.0
        theta = params = dict(self.policy.named_parameters())
        pres, pre_advantages = [], []
        for k in range(steps):
            t0 = time.perf_counter()
            pres.append(sampler.sample(self.policy, params, tasks, seed=pre_seeds[k]))
            sampling_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            advantages, params = self.meta_learner.adapt_for_sampling(
                self.policy,
                params,
                theta,
                pres[-1],
                self.baseline,
                self.adaptation,
                gamma=c.gamma,
                gae_lambda=c.gae_lambda,
                normalize=c.normalize_inner_advantages,
                step=k,
            )
            pre_advantages.append(advantages)
            adaptation_s += time.perf_counter() - t0

        # 4. Post-adaptation episodes with the adapted parameters.
        t0 = time.perf_counter()
        post = sampler.sample(self.policy, params, tasks, seed=post_seed)
        sampling_s += time.perf_counter() - t0

        # 5. Meta-step, as the meta-learner forms it.
        t0 = time.perf_counter()
        post_advantages = compute_advantages(
            post, self.baseline, c.gamma, c.gae_lambda, c.normalize_advantages
        )
        several = steps > 1
        batch = MetaBatch(
            tuple(pres) if several else pres[0],
            post,
            tuple(pre_advantages) if several else pre_advantages[0],
            post_advantages,
        )
        settings, metrics_extra = self.meta_learner.schedule(self.adaptation, iteration)
        try:
            metrics = self.meta_learner.step(self.policy, batch, settings, self.meta_optimizer)
        except FloatingPointError as err:
            raise TrainingDiverged(self._diverged_message(iteration, str(err))) from err
        metrics = {**metrics, **metrics_extra, **self.meta_learner.metrics()}
        bad = [n for n, p in self.policy.named_parameters() if not torch.isfinite(p).all()]
        bad += [n for n, v in self.meta_learner.metrics().items() if not np.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                self._diverged_message(iteration, f"non-finite parameters {bad}")
            )
        meta_optimization_s = time.perf_counter() - t0

        # 6. The observation statistics take in this iteration's episodes, for the next one
        # (frozen within an iteration: the meta-step saw the function the episodes were sampled
        # with).
        if self.policy.obs_normalization:
            for episodes in (*pres, post):
                self.policy.update_obs_stats(episodes.observations, episodes.mask)

        self.env_steps += sum(e.num_steps for e in pres) + post.num_steps
        self.elapsed_s += time.perf_counter() - start
        return {
            "iteration": iteration,
            "return_pre": mean_return(pres[0]),
            "return_post": mean_return(post),
            # The returns after the intermediate steps (multi-step adaptation only).
            **{f"return_step{k}": mean_return(e) for k, e in enumerate(pres[1:], start=1)},
            # Per subgroup (forward/backward, slow/fast): a mean can hide a failed half.
            **subgroup_returns("return_pre", pres[0], groups, self.subgroups),
            **subgroup_returns("return_post", post, groups, self.subgroups),
            "env_steps": self.env_steps,
            "time_s": round(self.elapsed_s, 3),
            **{k: float(v) for k, v in metrics.items()},
            "sampling_s": sampling_s,
            "adaptation_s": adaptation_s,
            "meta_optimization_s": meta_optimization_s,
        }

    # --- logging and checkpoints --------------------------------------------------------------
    def _log(self, row: dict[str, float], writer: Any) -> None:
        append_progress(self.progress_path, row)
        for key, value in row.items():
            if key != "iteration":
                writer.add_scalar(key, value, row["iteration"])
        writer.flush()

    def save_checkpoint(self, iterations_done: int) -> Path:
        """Write ``checkpoints/latest.pt`` atomically (a temp file, then a rename)."""
        state = {
            "iteration": iterations_done,
            "env_steps": self.env_steps,
            "elapsed_s": self.elapsed_s,
            "config": self.config.to_dict(),
            "policy": self.policy.state_dict(),
            "policy_spec": {"obs_dim": self.policy.obs_dim, "act_dim": self.policy.act_dim},
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "meta_learner": self.meta_learner.state_dict(),
            "rng": get_rng_states(),
        }
        if self.warm_start is not None:
            state["warm_start"] = self.warm_start
        return save_checkpoint(state, self.checkpoint_path)

    def _create_run_dir(self) -> None:
        if self.run_dir.exists() and self._never_started():
            warnings.warn(
                f"{self.run_dir} holds a run that never finished an iteration: starting it over",
                RuntimeWarning,
                stacklevel=3,
            )
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise FileExistsError(
                f"run directory {self.run_dir} already exists and is not empty: pass --resume to "
                "continue it, or choose another --run-dir"
            )
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / "config.yaml")

    def _warm_start(self, source: str) -> None:
        """Start from the policy of the run in ``source`` (``init_from``), checked to fit; the
        meta-learner takes what it goes on with (its learned rates)."""
        start = load_warm_start(source, self.config, self.policy.obs_dim, self.policy.act_dim)
        self.policy.load_state_dict(start.policy)
        self.meta_learner.warm_start(start.meta_learner, source)
        self.warm_start = start.info

    def _restore(self) -> None:
        state = load_checkpoint(self.run_dir)
        saved = checkpoint_config(state, self.checkpoint_path)
        differing = [
            f.name
            for f in dataclasses.fields(Config)
            if f.name != "iterations" and getattr(saved, f.name) != getattr(self.config, f.name)
        ]
        if differing:
            raise ConfigError(
                f"differs from the run being resumed ({', '.join(differing)}); only iterations may change",
                key=differing[0],
            )
        self.policy.load_state_dict(state["policy"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.meta_learner.load_state_dict(state.get("meta_learner", {}))
        set_rng_states(state["rng"])
        self.start_iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.elapsed_s = float(state["elapsed_s"])
        self.warm_start = state.get("warm_start")
        truncate_progress(self.progress_path, self.start_iteration)
        if self.config.iterations != saved.iterations and not self.done:
            save_config(self.config, self.run_dir / "config.yaml")

    def _diverged_message(self, iteration: int, what: str) -> str:
        last = (
            f"the last good checkpoint is {self.checkpoint_path}"
            if self.checkpoint_path.exists()
            else "no checkpoint was written yet"
        )
        return (
            f"training diverged at iteration {iteration}: {what}. {last}. Lower "
            "adaptation.lr, meta_optimizer.max_kl (TRPO) or meta_optimizer.lr (PPO) and resume "
            "or restart."
        )

    def make_sampler(self) -> Sampler:
        """The sampler the config describes (a context manager; the caller closes it)."""
        c = self.config
        return make_sampler(
            c.env, c.tasks_per_batch, c.episodes_per_task, c.horizon, c.sampler, c.env_kwargs
        )


def memory_needed(config: Config, obs_dim: int, act_dim: int) -> int:
    """A lower bound on the bytes one iteration holds: both samples' episodes (float32
    observations, actions, rewards, masks, log-probabilities) and the meta-step's
    hidden activations over them, forward and backward."""
    rows = config.tasks_per_batch * config.episodes_per_task * config.horizon
    episodes = 2 * rows * 4 * (obs_dim + act_dim + 3)
    activations = 2 * rows * 4 * sum(config.policy.hidden_sizes) * 2
    return episodes + activations


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_memory(config: Config, obs_dim: int, act_dim: int) -> None:
    """Refuse, before any work, a config whose meta-batch cannot fit in this machine's memory."""
    needed, available = memory_needed(config, obs_dim, act_dim), _available_memory()
    if available is not None and needed > available:
        rows = config.tasks_per_batch * config.episodes_per_task * config.horizon
        raise ConfigError(
            f"a meta-batch of tasks_per_batch x episodes_per_task x horizon = {rows:,} steps needs "
            f"at least {needed / 2**30:.1f} GiB, and this machine has {available / 2**30:.1f} GiB "
            "available; lower tasks_per_batch, episodes_per_task or horizon",
            key="tasks_per_batch",
        )


def train(
    config: Config,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Meta-train as ``config`` says; returns the run directory.

    ``run_dir`` defaults to ``runs/<env name>-seed<S>-<time>``; an existing,
    non-empty one needs ``resume=True`` (it is never overwritten).
    """
    import time

    if run_dir is None:
        if resume:
            raise InputError("resume=True needs the run_dir of the run to continue")
        name = config.env.split("/")[-1].lower()
        run_dir = Path("runs") / f"{name}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Trainer(config, run_dir, resume=resume, progress=progress).train()


def _make_probe_env(env_id: str, env_kwargs: dict[str, Any] | None = None):
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise ConfigError(f"is not a registered environment ({err})", key="env") from None
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"not accepted by {env_id}: {err}", key="env_kwargs") from None
