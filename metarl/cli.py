"""The ``metarl`` command line: ``metarl demo | benchmark ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import envs
    from metarl.benchmarks import env_steps_per_second

    print(
        f"Stepping every metarl env: {args.num_envs} sub-envs, {args.steps} steps, random actions"
    )
    for env_id in envs.ENV_IDS:
        rate = env_steps_per_second(env_id, args.num_envs, "vector_entry_point", steps=args.steps)
        print(f"  {env_id:<28} {rate:>12,.0f} env steps/s (batched engine)")
    return 0


def _benchmark_envs(args: argparse.Namespace) -> int:
    from metarl.benchmarks import env_steps_per_second

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

    r = benchmark_sampler(
        args.env, args.tasks, args.episodes, args.horizon, args.async_envs, args.seed, args.repeats
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
            f"  peak {s['peak_rss_mib']:>5.0f} MiB{extra}"
        )
    ratios = r["ratios"]
    if ratios["batched_over_raw"] is not None:
        print(f"  batched / raw physics: {ratios['batched_over_raw']:.2f}")
    print(f"  batched / sync: {ratios['batched_over_sync']:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl", description="Meta-reinforcement learning (MAML for RL)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="step every environment with the batched engine")
    demo.add_argument("--num-envs", type=int, default=200)
    demo.add_argument("--steps", type=int, default=20)
    demo.set_defaults(run=_demo)

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
    bench_sampler.add_argument("--json", action="store_true", help="print one JSON object")
    bench_sampler.set_defaults(run=_benchmark_sampler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
