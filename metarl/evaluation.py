"""How much K policy-gradient steps buy on held-out tasks (Finn et al. 2017, figure 5).

:func:`evaluate` draws tasks from a seed stream that training never uses, runs
0..K adaptation steps per task (the config's inner lr for the first step, half
of it after, as the paper), and reports the mean return at each step with a 95%
confidence interval across tasks, for the meta-trained policy and for the
baselines: the same network untrained (``random``), a stable-baselines3 PPO
policy pretrained on the whole distribution and adapted by the same steps
(``pretrained``), and a PPO or SAC policy that observes the task (``oracle``, not
adapted, acting with its mean action).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.adaptation import AdaptationSettings
from metarl.checkpoint import load_policy, make_policy
from metarl.config import Config
from metarl.errors import InputError
from metarl.meta_learners import META_LEARNERS, MetaLearner, load_meta_learner, make_meta_learner
from metarl.policies import GaussianMLPPolicy, Params
from metarl.sampler import Sampler
from metarl.sampling import make_sampler
from metarl.value_baseline import LinearFeatureBaseline

__all__ = [
    "EVALUATION_STREAM",
    "adaptation_curve",
    "confidence_interval",
    "evaluate",
    "held_out_tasks",
]

# Training seeds iterations with SeedSequence([seed, iteration]); evaluation draws from
# a spawned child stream, so held-out tasks never coincide with a training stream.
EVALUATION_STREAM = 0x45_56_41_4C  # "EVAL"


def held_out_tasks(task_distribution: Any, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(EVALUATION_STREAM,)))
    return task_distribution.sample_tasks(n, rng)


def _t_quantile_975(dof: int) -> float:
    """Student's t 97.5% quantile (Cornish-Fisher expansion; exact to 3 digits for dof >= 3)."""
    z = 1.959963984540054
    if dof <= 0:
        return math.inf
    if dof == 1:
        return 12.706204736
    if dof == 2:
        return 4.302652730
    return (
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    )


def confidence_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t-interval across tasks, with the per-task values.

    One task gives no interval: ``ci95`` is ``[None, None]`` (JSON ``null``; an
    interval across tasks needs at least two).
    """
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "ci95": [None, None], "per_task": [float(v) for v in x]}
    half = _t_quantile_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return {"mean": mean, "ci95": [mean - half, mean + half], "per_task": [float(v) for v in x]}


def adaptation_curve(
    policy: GaussianMLPPolicy,
    sampler: Sampler,
    tasks: Sequence[dict[str, Any]],
    steps: int,
    config: Config,
    seed: int,
    learner: MetaLearner | None = None,
) -> tuple[list[list[float]], list[Params]]:
    """Per-task mean returns after 0..``steps`` policy-gradient steps, ``[step][task]``, and
    the parameters of each step (shared theta first, then stacked per-task parameters).

    Step ``k`` samples fresh episodes with the parameters after ``k`` steps and
    adapts on them exactly as meta-training adapts (the meta-learner's
    :meth:`~metarl.meta_learners.MAML.adapt_for_sampling`), with the step size its
    :meth:`~metarl.meta_learners.MAML.step_size` gives (the trained steps' sizes, then
    half the last: 0.1, 0.05, 0.05 for the paper's config). ``learner`` defaults to the
    config's meta-learner, freshly made; pass the trained one where it has state
    (learned inner rates).
    """
    baseline = LinearFeatureBaseline(config.baseline_reg)
    settings = AdaptationSettings.from_config(config)
    if learner is None:
        learner = make_meta_learner(config, policy)
    theta: Params = {name: p.detach() for name, p in policy.named_parameters()}
    params = theta
    curve, history = [], [params]
    for k in range(steps + 1):
        episodes = sampler.sample(policy, params, tasks, seed=step_seed(seed, k))
        curve.append([float(r) for r in episodes.episode_returns.mean(dim=-1)])
        if k == steps:
            break
        _, params = learner.adapt_for_sampling(
            policy,
            params,
            theta,
            episodes,
            baseline,
            settings,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            normalize=config.normalize_inner_advantages,
            step=k,
        )
        history.append(params)
    return curve, history


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of evaluation step ``step``: a child of the evaluation stream.

    Derived through a ``SeedSequence`` (not ``seed + 1000 * step``, whose ranges of
    sub-env seeds overlap once a sample has more than 1000 sub-envs).
    """
    sequence = np.random.SeedSequence([seed, step], spawn_key=(EVALUATION_STREAM,))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def evaluate(
    run_dir: str | os.PathLike[str],
    num_tasks: int = 40,
    steps: int = 3,
    episodes: int = 20,
    seed: int = 1,
    baselines_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    inner_lr: float | None = None,
) -> dict[str, Any]:
    """Evaluate the run's policy and the baselines; write ``results.json``, a table and a plot.

    Returns the results dict (the JSON's content). ``baselines_dir`` holds
    ``pretrained.zip`` and/or ``oracle.zip`` from ``metarl baseline``; a baseline
    that is absent there is absent from the results. ``inner_lr`` replaces the run's inner
    step size for every policy evaluated (later steps take half of it, as always): a probe
    of the step size on tasks of another ``seed``, without retraining.
    """
    for name, value in (("tasks", num_tasks), ("episodes", episodes)):
        if value < 1:
            raise InputError(f"--{name} must be at least 1, got {value}")
    if steps < 0:
        raise InputError(f"--steps must be at least 0, got {steps}")
    config, policy, state = load_policy(run_dir)
    learner = load_meta_learner(config, policy, state)  # its learned inner rates, if any
    if inner_lr is not None:
        config = _with_inner_lr(config, inner_lr, learner)
        learner = load_meta_learner(config, policy, state)
    baseline_paths = _baseline_paths(baselines_dir)
    out = Path(out) if out is not None else Path(run_dir) / "evaluation" / "results.json"
    import gymnasium as gym

    task_distribution = gym.make(config.env).unwrapped
    tasks = held_out_tasks(task_distribution, num_tasks, seed)

    def curve_of(
        candidate: GaussianMLPPolicy, trained: MetaLearner | None = None
    ) -> dict[str, Any]:
        per_step, _ = adaptation_curve(candidate, sampler, tasks, steps, config, seed, trained)
        return {str(k): confidence_interval(values) for k, values in enumerate(per_step)}

    results: dict[str, Any] = {
        "env": config.env,
        # Which meta-training state was evaluated: a run that goes on is evaluated again.
        "iteration": int(state["iteration"]),
        "env_steps": int(state["env_steps"]),
        "tasks": tasks,
        "seed": seed,
        "episodes": episodes,
        "meta_learner": config.meta_learner,  # which method's policy "metarl" is
        # Meta-trained inner rates, or null: one rate per tensor (MAML++'s) or per entry
        # (Meta-SGD's).
        "learned_rates": _learned_rates(config),
        "inner_lr": config.adaptation.lr,
    }
    with make_sampler(
        config.env, num_tasks, episodes, config.horizon, config.sampler, config.env_kwargs
    ) as sampler:
        results["metarl"] = curve_of(policy, learner)
        torch.manual_seed(seed)
        random_policy = make_policy(config, policy.obs_dim, policy.act_dim)
        # A fresh network that sees the observation as the run's policy does (its running
        # statistics, where it standardises), not raw values clipped at +-OBS_CLIP.
        random_policy.load_state_dict(dict(policy.named_buffers()), strict=False)
        results["baselines"] = {"random": curve_of(random_policy)}
        if "pretrained" in baseline_paths:
            from metarl.comparison import load_pretrained

            pretrained = load_pretrained(baseline_paths["pretrained"], config.policy.action_scale)
            if (pretrained.obs_dim, pretrained.act_dim) != (policy.obs_dim, policy.act_dim):
                raise InputError(
                    f"{baseline_paths['pretrained']} observes {pretrained.obs_dim} values and acts "
                    f"with {pretrained.act_dim}; {config.env} (with its env_kwargs) has "
                    f"{policy.obs_dim} and {policy.act_dim}: is it a baseline of another env?"
                )
            results["baselines"]["pretrained"] = curve_of(pretrained)
    if "oracle" in baseline_paths:
        from metarl.comparison import oracle_returns

        # The oracle acts with its mean action (its strongest): a hard ceiling to close on.
        returns = oracle_returns(
            baseline_paths["oracle"],
            config.env,
            tasks,
            episodes,
            seed,
            horizon=config.horizon,
            env_kwargs=config.env_kwargs,
            deterministic=True,
        )
        results["baselines"]["oracle"] = {
            str(k): confidence_interval(returns) for k in range(steps + 1)
        }
    results["subgroups"] = by_subgroup(results, [task_distribution.task_subgroup(t) for t in tasks])
    _write(results, out)
    return results


def by_subgroup(results: dict[str, Any], groups: Sequence[str]) -> dict[str, Any]:
    """The results of each subgroup of tasks (forward/backward, slow/fast), recomputed from
    the per-task values, with the share of the pretrained -> oracle gap that each step closes.

    ``gap_closed[k] = (metarl_k - pretrained_k) / (oracle - pretrained_k)``: 1 reaches
    the oracle, 0 is no better than the pretrained policy adapted with the same steps.
    """
    out: dict[str, Any] = {}
    for group in dict.fromkeys(groups):  # first-seen order
        index = [i for i, g in enumerate(groups) if g == group]

        def part(curve: dict[str, Any], index: list[int] = index) -> dict[str, Any]:
            return {
                k: confidence_interval([step["per_task"][i] for i in index])
                for k, step in curve.items()
            }

        entry: dict[str, Any] = {
            "tasks": index,
            "metarl": part(results["metarl"]),
            "baselines": {name: part(c) for name, c in results.get("baselines", {}).items()},
        }
        baselines = entry["baselines"]
        if "pretrained" in baselines and "oracle" in baselines:
            gap = {}
            for k, step in entry["metarl"].items():
                low, high = baselines["pretrained"][k]["mean"], baselines["oracle"][k]["mean"]
                gap[k] = (step["mean"] - low) / (high - low) if high != low else None
            entry["gap_closed"] = gap
        out[group] = entry
    return out


def _with_inner_lr(config: Config, lr: float, learner: MetaLearner) -> Config:
    """``config`` with inner step size ``lr`` (a probe's), or an InputError where the run's
    meta-learner does not step by ``adaptation.lr``."""
    if not lr > 0:
        raise InputError(f"--inner-lr must be positive, got {lr}")
    why_not = learner.inner_lr_fixed()
    if why_not is not None:
        raise InputError(f"--inner-lr cannot be used on this run: {why_not}")
    return dataclasses.replace(config, adaptation=dataclasses.replace(config.adaptation, lr=lr))


def _baseline_paths(baselines_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    if baselines_dir is None:
        return {}
    directory = Path(baselines_dir)
    if not directory.is_dir():
        raise InputError(
            f"--baselines {directory} is not a directory; create it with `metarl baseline pretrain "
            f"CONFIG --out {directory}/pretrained.zip` and `metarl baseline oracle ...`"
        )
    found = {name: directory / f"{name}.zip" for name in ("pretrained", "oracle")}
    found = {name: path for name, path in found.items() if path.is_file()}
    if not found:
        raise InputError(f"--baselines {directory} holds neither pretrained.zip nor oracle.zip")
    return found


METHOD_LABELS = {name: learner.label for name, learner in META_LEARNERS.items()}
"""How each meta-learner's row is named in the tables and plots (results of old runs: MAML)."""
RATE_LABELS = {"per_tensor": "learned rates", "per_parameter": "Meta-SGD rates"}
"""What a row's name adds for meta-trained inner rates (``learned_rates``)."""


def _learned_rates(config: Config) -> str | None:
    if not config.adaptation.learn_lr:
        return None
    return "per_parameter" if config.adaptation.learn_lr_per_parameter else "per_tensor"


def _metarl_label(results: dict[str, Any]) -> str:
    name = results.get("meta_learner", "maml")
    label = METHOD_LABELS.get(name, name)
    rates = results.get("learned_rates")
    return f"metarl ({label}, {RATE_LABELS[rates]})" if rates else f"metarl ({label})"


def markdown_table(results: dict[str, Any]) -> str:
    """Mean return [95% CI] per method and adaptation step, over all tasks and per subgroup."""
    steps = sorted(results["metarl"], key=int)
    header = "| tasks | method | " + " | ".join(f"step {k}" for k in steps) + " |"
    lines = [header, "|---|---|" + "---|" * len(steps)]
    parts = {f"all ({len(results['tasks'])})": results}
    subgroups = results.get("subgroups", {})
    if len(subgroups) > 1:
        parts.update({f"{name} ({len(g['tasks'])})": g for name, g in subgroups.items()})
    elif subgroups:  # one subgroup (AntGoal's "all") is every task: its rows, with its gap row
        (only,) = subgroups.values()
        parts = {f"all ({len(results['tasks'])})": {**results, **only}}
    for label, part in parts.items():
        methods = {_metarl_label(results): part["metarl"], **part.get("baselines", {})}
        for name, curve in methods.items():
            cells = [_cell(curve[k]) for k in steps]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
        if "gap_closed" in part:
            cells = [_share(part["gap_closed"][k]) for k in steps]
            lines.append(f"| {label} | gap closed | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(step: dict[str, Any]) -> str:
    lo, hi = step["ci95"]
    if lo is None or hi is None:
        return f"{step['mean']:.1f} (one task: no interval)"
    return f"{step['mean']:.1f} [{lo:.1f}, {hi:.1f}]"


def _share(value: float | None) -> str:
    """A share of the gap to one decimal: rounded to whole percents, 59.7% would read as 60%."""
    return "-" if value is None else f"{100 * value:.1f}%"


def plot_curve(results: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    methods = {_metarl_label(results): results["metarl"], **results.get("baselines", {})}
    for name, curve in methods.items():
        steps = sorted(curve, key=int)
        x = [int(k) for k in steps]
        mean = [curve[k]["mean"] for k in steps]
        style = "--" if name == "oracle" else "-o"
        (line,) = ax.plot(x, mean, style, label=name)
        if all(curve[k]["ci95"][0] is not None for k in steps):
            lo = [curve[k]["ci95"][0] for k in steps]
            hi = [curve[k]["ci95"][1] for k in steps]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("policy-gradient steps on the new task")
    ax.set_ylabel("mean return (95% CI across tasks)")
    ax.set_title(f"{results['env']}: {len(results['tasks'])} held-out tasks")
    ax.set_xticks(range(len(results["metarl"])))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, out)
    out.with_suffix(".md").write_text(markdown_table(results), encoding="utf-8")
    plot_curve(results, out.with_suffix(".png"))
