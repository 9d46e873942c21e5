"""The ``metarl`` command line: ``train | evaluate | render | plot | baseline | benchmark | demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import envs
    from metarl.benchmarks import env_steps_per_second

    _check_counts(args, num_envs=1, steps=1)
    print(
        f"Stepping every metarl env: {args.num_envs} sub-envs, {args.steps} steps, random actions"
    )
    for env_id in envs.ENV_IDS:
        rate = env_steps_per_second(env_id, args.num_envs, "vector_entry_point", steps=args.steps)
        print(f"  {env_id:<28} {rate:>12,.0f} env steps/s (batched engine)")
    return 0


def _benchmark_envs(args: argparse.Namespace) -> int:
    from metarl.benchmarks import env_steps_per_second

    _check_counts(args, num_envs=1, steps=1)
    for env_id in args.env:
        _check_env_id(env_id)
    results = {}
    for env_id in args.env:
        rates = {
            mode: env_steps_per_second(env_id, args.num_envs, mode, steps=args.steps)
            for mode in ("vector_entry_point", "sync")
        }
        results[env_id] = {
            "batched_steps_per_s": rates["vector_entry_point"],
            "sync_steps_per_s": rates["sync"],
            "batched_over_sync": rates["vector_entry_point"] / rates["sync"],
        }
    if args.json:
        print(json.dumps({"num_envs": args.num_envs, "envs": results}))
    else:
        print(
            f"{'env':<28} {'batched/s':>12} {'sync/s':>12} {'ratio':>7}   ({args.num_envs} sub-envs)"
        )
        for env_id, r in results.items():
            print(
                f"{env_id:<28} {r['batched_steps_per_s']:>12,.0f} {r['sync_steps_per_s']:>12,.0f}"
                f" {r['batched_over_sync']:>7.2f}"
            )
    return 0


def _benchmark_sampler(args: argparse.Namespace) -> int:
    from metarl.benchmarks import benchmark_sampler

    _check_counts(args, tasks=1, episodes=1, horizon=1, repeats=1, workers=1, async_envs=1)
    _check_env_id(args.env)
    kinds = ("batched", *args.kind) if args.kind else ("batched", "sync", "async")
    r = benchmark_sampler(
        args.env,
        args.tasks,
        args.episodes,
        args.horizon,
        args.async_envs,
        args.seed,
        args.repeats,
        kinds=kinds,
        workers=args.workers,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    raw = r["raw_physics_steps_per_s"]
    print(
        f"{r['env']}: {args.tasks} tasks x {args.episodes} episodes x {args.horizon} steps = {r['env_steps']:,} env steps"
    )
    print(
        f"  {'raw mujoco.batch physics':<28} {raw:>12,.0f} steps/s"
        if raw
        else "  (no MuJoCo physics)"
    )
    for kind, s in r["samplers"].items():
        extra = f"  ({s['num_envs']} sub-envs)" if "num_envs" in s else ""
        print(
            f"  {kind + ' sampler':<28} {s['steps_per_s']:>12,.0f} steps/s"
            f" ({s['collected_steps_per_s']:,.0f} before episode ends)"
            f"  peak {s['peak_rss_mib']:>5.0f} MiB{extra}"
        )
    ratios = r["ratios"]
    if ratios["batched_over_raw"] is not None:
        print(
            f"  batched / raw physics: {ratios['batched_over_raw']:.2f}"
            f" (steps before episode ends: {ratios['batched_collected_over_raw']:.2f})"
        )
    if "batched_over_sync" in ratios:
        print(f"  batched / sync: {ratios['batched_over_sync']:.2f}")
    if "ray_over_batched" in ratios:
        ray = r["samplers"]["ray"]
        print(
            f"  ray / batched: {ratios['ray_over_batched']:.2f} ({ray['workers']} workers; "
            f"{ray['bytes_out'] / 1e6:.2f} MB out, {ray['bytes_back'] / 1e6:.1f} MB back per sample)"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from metarl.config import load_config
    from metarl.trainer import Trainer

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.iterations is not None:
        overrides.append(f"iterations={args.iterations}")
    config = load_config(args.config, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else _default_run_dir(args.config, config.seed)
    if args.resume and not args.run_dir:
        raise UsageError("--resume needs the --run-dir of the run to continue")
    trainer = Trainer(config, run_dir, resume=args.resume, progress=not args.no_progress)
    print(f"run directory: {run_dir}", flush=True)
    if trainer.done:
        print(
            f"nothing to train: the run has {trainer.start_iteration} iterations and "
            f"--iterations asks for {config.iterations}; pass more to continue it"
        )
    trainer.train()
    _print_summary(run_dir)
    return 0


def _default_run_dir(config_path: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-seed{seed}-{stamp}"


def _print_summary(run_dir: Path) -> None:
    import csv

    with (run_dir / "progress.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows:
        first, last = rows[0], rows[-1]
        print(
            f"iterations {int(first['iteration'])}..{int(last['iteration'])}: return before adaptation "
            f"{float(first['return_pre']):.2f} -> {float(last['return_pre']):.2f}, after one step "
            f"{float(first['return_post']):.2f} -> {float(last['return_post']):.2f}"
        )
    print(
        f"results: {run_dir}/progress.csv, {run_dir}/checkpoints/latest.pt, TensorBoard events in {run_dir}"
    )


def _benchmark_iteration(args: argparse.Namespace) -> int:
    from metarl.benchmarks import benchmark_iteration
    from metarl.config import load_config
    from metarl.trainer import Trainer

    _check_counts(args, iterations=1, warmup=0)
    config = load_config(args.config, list(args.set))
    result = benchmark_iteration(
        lambda run_dir: Trainer(config, run_dir, progress=False),
        iterations=args.iterations,
        warmup=args.warmup,
    )
    result["fvp"] = getattr(config.meta_optimizer, "fvp", None)
    result["meta_optimizer"] = config.meta_optimizer.name
    result["first_order"] = config.adaptation.first_order
    if not args.json:
        print(
            f"{config.env}: {config.tasks_per_batch} tasks x {config.episodes_per_task} episodes x {config.horizon} steps"
        )
        print(
            f"  meta-optimizer {result['meta_optimizer']}, fvp {result['fvp']}, first_order {result['first_order']}"
        )
        print(f"  median over {args.iterations} iterations (after {args.warmup} warm-up):")
        for key in ("sampling_s", "adaptation_s", "meta_optimization_s"):
            print(f"    {key:<22} {result[key]:8.2f} s")
        print(
            f"  (adaptation + meta-optimisation) / sampling = {result['learning_over_sampling']:.2f}"
        )
    print(json.dumps(result) if args.json else "", end="\n" if args.json else "")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from metarl.evaluation import evaluate, markdown_table

    out = Path(args.out) if args.out else Path(args.run_dir) / "evaluation" / "results.json"
    _check_counts(args, tasks=1, episodes=1, steps=0)
    _check_writable(out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose another --out")
    results = evaluate(
        args.run_dir,
        args.tasks,
        args.steps,
        args.episodes,
        args.seed,
        args.baselines,
        out,
        inner_lr=args.inner_lr,
    )
    print(markdown_table(results), end="")
    print(f"results: {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


def _check_counts(args: argparse.Namespace, **minimum: int) -> None:
    """Each named argument, when given, is at least its minimum (the same rule for every command)."""
    for name, low in minimum.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least {low}, got {value}")


def _yaml_mapping(text: str, flag: str) -> dict:
    """A YAML mapping given on the command line, or a UsageError naming ``flag``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())  # one line: YAML's own message spans several
        raise UsageError(f"{flag} is not valid YAML: {detail}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UsageError(
            f"{flag} must be a YAML mapping such as '{{batch_size: 256}}', got {text!r}"
        )
    return value


def _check_env_id(env_id: str) -> None:
    import gymnasium as gym

    import envs

    envs.register_envs()
    if env_id not in gym.registry:
        known = ", ".join(envs.ENV_IDS)
        raise UsageError(f"--env {env_id!r} is not a registered environment; metarl's are {known}")


def _check_writable(out: Path) -> None:
    """Fail before any work when ``out`` cannot be written (a directory, a read-only parent).

    Creates nothing: the nearest existing ancestor must be a writable directory.
    """
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give a file name for the output")
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"cannot write {out}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK):
        raise UsageError(f"cannot write {out}: the directory {ancestor} is not writable")


def _parse_task_json(text: str) -> dict:
    try:
        task = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--task is not valid JSON ({err}); e.g. --task '{{\"direction\": -1}}'"
        ) from None
    if not isinstance(task, dict):
        raise UsageError(
            f"--task must be a JSON object such as '{{\"velocity\": 1.0}}', got {text!r}"
        )
    return task


def _render(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from metarl.checkpoint import load_policy
    from metarl.evaluation import adaptation_curve, held_out_tasks
    from metarl.meta_learners import load_meta_learner
    from metarl.rendering import render_adaptation
    from metarl.sampling import make_sampler

    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise UsageError(f"--out must end in .mp4 or .gif, got {out}")
    _check_counts(args, steps=0, tasks=1, width=1, height=1, fps=1, max_steps=1, stride=1)
    _check_writable(out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose another --out")
    config, policy, state = load_policy(args.run_dir)
    learner = load_meta_learner(config, policy, state)  # its learned inner rates, if any
    distribution = gym.make(config.env, **config.env_kwargs).unwrapped
    if args.task:
        tasks = []
        for text in args.task:
            try:
                distribution.task = _parse_task_json(text)  # validates against the env
            except ValueError as err:
                raise UsageError(f"--task does not fit {config.env}: {err}") from None
            tasks.append(distribution.task)
    else:
        tasks = held_out_tasks(distribution, args.tasks, args.seed)
    with make_sampler(
        config.env,
        len(tasks),
        config.episodes_per_task,
        config.horizon,
        config.sampler,
        config.env_kwargs,
    ) as sampler:
        _, history = adaptation_curve(
            policy, sampler, tasks, args.steps, config, args.seed, learner
        )
    path = render_adaptation(
        config.env,
        policy,
        history,
        tasks,
        out=out,
        seed=args.seed,
        size=(args.width, args.height),
        fps=args.fps,
        max_steps=min(args.max_steps, config.horizon) if args.max_steps else config.horizon,
        deterministic=args.deterministic,
        env_kwargs=config.env_kwargs,
        stride=args.stride,
    )
    print(f"wrote {path}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from metarl.plotting import plot_runs

    path = plot_runs([Path(d) for d in args.run_dirs], Path(args.out), subgroups=args.subgroups)
    print(f"wrote {path}")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from metarl.comparison import curve_path, curve_summary, saved_steps, train_baseline
    from metarl.config import load_config
    from metarl.errors import InputError
    from metarl.plotting import plot_curve

    config = load_config(args.config, list(args.set))
    name = "pretrained" if args.kind == "pretrain" else "oracle"
    out = Path(args.out) if args.out else Path("baselines") / Path(args.config).stem / f"{name}.zip"
    if out.suffix != ".zip":
        raise UsageError(
            f"--out must end in .zip (what `evaluate --baselines` reads: pretrained.zip, "
            f"oracle.zip), got {out}"
        )
    if args.algo == "sac" and args.kind == "pretrain":
        raise UsageError(
            "--algo sac is for the oracle: the pretrained baseline is adapted by metarl's "
            "policy-gradient step, so it must be a PPO Gaussian policy"
        )
    _check_counts(args, timesteps=1, n_envs=1, save_every=0)
    algo_kwargs = _yaml_mapping(args.algo_kwargs, "--algo-kwargs")
    for path in (out, curve_path(out), out.with_suffix(".png")):
        _check_writable(path)
    if args.resume and args.force:
        raise UsageError(
            "--resume continues the saved baseline and --force overwrites it: pick one"
        )
    if args.resume and not out.is_file():
        raise UsageError(f"--resume: {out} does not exist; train it first without --resume")
    if out.exists() and not (args.force or args.resume):
        raise UsageError(
            f"{out} exists; pass --resume to train it on to --timesteps in all, --force to "
            "overwrite it, or choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    done = saved_steps(out) if args.resume else 0
    if done >= args.timesteps:
        path = out
        print(
            f"{out} has trained {done} steps, at least --timesteps {args.timesteps}: nothing to "
            "train (--timesteps is the total; raise it to train on)"
        )
    else:
        if done:
            print(f"resuming {out} at {done} steps, to {args.timesteps} in all")
        path = train_baseline(
            config.env,
            args.timesteps,
            config.policy.hidden_sizes,
            config.policy.activation,
            config.policy.init_std,
            config.seed,
            out,
            progress_bar=not args.no_progress,
            observe_task=args.kind == "oracle",
            algorithm=args.algo,
            horizon=config.horizon,
            env_kwargs=config.env_kwargs,
            n_envs=args.n_envs,
            algo_kwargs=algo_kwargs,
            resume=args.resume,
            save_every=args.save_every,
            log=print if args.no_progress else None,  # a line per save in place of the bar
        )
        curve = plot_curve(
            curve_path(path), path.with_suffix(".png"), title=f"{name}: {config.env}"
        )
        print(f"wrote {path}, its learning curve {curve_path(path)} and {curve}")
    try:
        summary = curve_summary(curve_path(path))
    except InputError as error:  # a short run: too few episodes to judge
        print(f"{error}; train longer to tell whether the curve is flat")
        return 0
    verdict = "flat" if summary["flat"] else "still rising: train longer (--resume, --timesteps)"
    print(
        f"mean return of the last 10% of {summary['episodes']} episodes {summary['last']:.1f}, "
        f"of the best 10% before {summary['before']:.1f} (change {summary['change']:+.1f}; training "
        f"rose {summary['rise']:.1f}, noise +-{summary['noise']:.1f}): {verdict}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl", description="Meta-reinforcement learning (MAML for RL)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="step every environment with the batched engine")
    demo.add_argument(
        "--num-envs", type=int, default=200, help="sub-envs per family (default: 200)"
    )
    demo.add_argument("--steps", type=int, default=20, help="steps timed (default: 20)")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="meta-train a policy from a YAML config")
    train.add_argument("config", help="YAML config, e.g. experiments/configs/navigation2d.yaml")
    train.add_argument("--run-dir", help="where results go (default: runs/<config>-seed<S>-<time>)")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--iterations", type=int, help="override the config's iterations")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key by its dotted path (repeatable)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest checkpoint",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    ev = commands.add_parser("evaluate", help="k-step adaptation on held-out tasks vs baselines")
    ev.add_argument("run_dir", help="a training run directory")
    ev.add_argument("--tasks", type=int, default=40, help="held-out tasks")
    ev.add_argument("--steps", type=int, default=3, help="adaptation steps (0..K are reported)")
    ev.add_argument("--episodes", type=int, default=20, help="episodes per task and step")
    ev.add_argument("--seed", type=int, default=1, help="seed of the held-out task stream")
    ev.add_argument(
        "--baselines", help="directory with pretrained.zip / oracle.zip from `metarl baseline`"
    )
    ev.add_argument("--out", help="results.json path (default RUN_DIR/evaluation/results.json)")
    ev.add_argument("--force", action="store_true", help="overwrite an existing results.json")
    ev.add_argument(
        "--inner-lr",
        type=float,
        help="inner step size instead of the run's, for every policy (later steps half of it): "
        "probe it on tasks of another --seed than the held-out ones",
    )
    ev.set_defaults(run=_evaluate)

    render = commands.add_parser("render", help="video of the policy before and after adaptation")
    render.add_argument("run_dir", help="a training run directory")
    which = render.add_mutually_exclusive_group()
    which.add_argument(
        "--task",
        action="append",
        help="a task as JSON, e.g. '{\"direction\": -1}'; repeat for more rows",
    )
    which.add_argument("--tasks", type=int, default=1, help="N held-out tasks, one row each")
    render.add_argument("--steps", type=int, default=1, help="adaptation steps (one column each)")
    render.add_argument(
        "--seed", type=int, default=1, help="seed of the tasks and the episodes (default: 1)"
    )
    render.add_argument("--out", default="video.mp4", help="video.mp4 or video.gif")
    render.add_argument("--force", action="store_true", help="overwrite an existing video")
    render.add_argument(
        "--stride",
        type=int,
        default=1,
        help="keep every Nth frame (a smaller GIF, same panel size)",
    )
    render.add_argument("--width", type=int, default=480, help="of one panel, in pixels")
    render.add_argument("--height", type=int, default=360, help="of one panel, in pixels")
    render.add_argument("--fps", type=int, default=20, help="frames per second (default: 20)")
    render.add_argument(
        "--max-steps", type=int, help="steps to show (default: the config's horizon)"
    )
    render.add_argument(
        "--deterministic", action="store_true", help="act with the mean action instead of sampling"
    )
    render.set_defaults(run=_render)

    plot = commands.add_parser("plot", help="pre/post-adaptation learning curves of runs")
    plot.add_argument(
        "run_dirs", nargs="+", help="run directories (seeds of one config are averaged)"
    )
    plot.add_argument(
        "--out", default="curves.png", help="where the figure goes (default: curves.png)"
    )
    plot.add_argument(
        "--subgroups",
        action="store_true",
        help="a curve per subgroup of the tasks (forward/backward, slow/fast) instead of the mean",
    )
    plot.set_defaults(run=_plot)

    base = commands.add_parser("baseline", help="train the stable-baselines3 baselines")
    base.add_argument(
        "kind",
        choices=["pretrain", "oracle"],
        help="pretrain: PPO on the whole distribution; oracle: PPO or SAC (--algo) that sees "
        "the task",
    )
    base.add_argument("config", help="the YAML config of the meta-training run")
    base.add_argument(
        "--timesteps",
        type=int,
        default=1_000_000,
        help="environment steps in all (with --resume, the saved ones included)",
    )
    base.add_argument(
        "--algo",
        choices=["ppo", "sac"],
        default="ppo",
        help="stable-baselines3 algorithm (sac: oracle only; stronger on MuJoCo locomotion)",
    )
    base.add_argument("--n-envs", type=int, default=8, help="sub-envs stepped together")
    base.add_argument(
        "--algo-kwargs",
        default="{}",
        metavar="YAML",
        help="keyword arguments of SB3's PPO/SAC, e.g. '{gradient_steps: 2, batch_size: 512}'",
    )
    base.add_argument(
        "--out", help="zip path (default baselines/<config>/pretrained.zip or oracle.zip)"
    )
    base.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as for train (repeatable)",
    )
    base.add_argument("--force", action="store_true", help="overwrite an existing zip")
    base.add_argument(
        "--resume",
        action="store_true",
        help="train the existing zip on until --timesteps in all, continuing its curve",
    )
    base.add_argument(
        "--save-every",
        type=int,
        default=100_000,
        metavar="STEPS",
        help="save the zip and curve every STEPS env steps, so an interrupted training can be "
        "resumed (0: only at the end)",
    )
    base.add_argument(
        "--no-progress", action="store_true", help="no progress bar: a line per save instead"
    )
    base.set_defaults(run=_baseline)

    bench = commands.add_parser("benchmark", help="speed measurements")
    bench_kinds = bench.add_subparsers(dest="kind", required=True, metavar="KIND")
    bench_envs = bench_kinds.add_parser(
        "envs", help="batched engine vs gymnasium's sync vector env"
    )
    bench_envs.add_argument(
        "--env", nargs="+", default=["metarl/HalfCheetahVel-v0", "metarl/AntVel-v0"], help="env ids"
    )
    bench_envs.add_argument("--num-envs", type=int, default=800)
    bench_envs.add_argument("--steps", type=int, default=50)
    bench_envs.add_argument("--json", action="store_true", help="print one JSON object")
    bench_envs.set_defaults(run=_benchmark_envs)
    bench_sampler = bench_kinds.add_parser(
        "sampler", help="one meta-batch: batched, sync, async vs raw physics"
    )
    bench_sampler.add_argument("--env", default="metarl/HalfCheetahVel-v0", help="env id")
    bench_sampler.add_argument("--tasks", type=int, default=40)
    bench_sampler.add_argument("--episodes", type=int, default=20, help="episodes per task")
    bench_sampler.add_argument("--horizon", type=int, default=200)
    bench_sampler.add_argument(
        "--async-envs", type=int, default=16, help="sub-envs (processes) for the async sampler"
    )
    bench_sampler.add_argument("--seed", type=int, default=0)
    bench_sampler.add_argument("--repeats", type=int, default=3, help="best of N (raw and batched)")
    bench_sampler.add_argument(
        "--kind",
        action="append",
        choices=["sync", "async", "ray"],
        help="samplers beside the batched one (repeatable; default: sync and async)",
    )
    bench_sampler.add_argument("--workers", type=int, default=2, help="Ray actors (--kind ray)")
    bench_sampler.add_argument("--json", action="store_true", help="print one JSON object")
    bench_sampler.set_defaults(run=_benchmark_sampler)
    bench_iter = bench_kinds.add_parser(
        "iteration", help="seconds of one meta-iteration, split in parts"
    )
    bench_iter.add_argument("--config", required=True, help="YAML config")
    bench_iter.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    bench_iter.add_argument(
        "--iterations", type=int, default=3, help="measured iterations (median)"
    )
    bench_iter.add_argument("--warmup", type=int, default=1, help="iterations run before measuring")
    bench_iter.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    bench_iter.set_defaults(run=_benchmark_iteration)
    return parser


class UsageError(Exception):
    """A command-line argument that cannot work; reported without a traceback."""


def tune_malloc() -> None:
    """Keep freed large blocks in the process instead of returning them to the kernel.

    The meta-step's activations are tens of MiB; glibc serves every block over 32 MiB
    with a fresh mmap and unmaps it on free, so each of them costs page faults again.
    Raising the mmap and trim thresholds makes a meta-iteration about 1.7x faster on
    this project's machine, for a higher resident peak. Process-wide, so only the
    command line does it, never library code; a no-op where glibc is absent.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 36)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()
    from metarl.checkpoint import CheckpointError
    from metarl.errors import InputError
    from metarl.rendering import RenderingError
    from metarl.sampler import NonFiniteError, SamplerError
    from metarl.trainer import TrainingDiverged

    try:
        return args.run(args)
    except (
        UsageError,
        InputError,
        CheckpointError,
        TrainingDiverged,
        SamplerError,
        RenderingError,
    ) as err:
        # Errors of the input or the environment: one line that says what to change.
        # Any other exception is a bug in metarl and keeps its traceback.
        print(f"metarl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(
            f"metarl {args.command}: error: {err}. The policy or the physics diverged: lower "
            "adaptation.lr or meta_optimizer.max_kl, or check policy.init_std",
            file=sys.stderr,
        )
        return 2
    except OSError as err:
        # A path that cannot be read or written (missing, read-only, a directory, ...).
        print(f"metarl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metarl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
