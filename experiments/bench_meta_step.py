"""Seconds per adaptation and per TRPO meta-step at the MAML paper's scale, on synthetic data.

Paper scale (Finn et al. 2017, appendix A.2): 40 tasks x 20 episodes x 200
steps before and after adaptation, HalfCheetah's 17-d observations and 6-d
actions, a 2x100 ReLU policy, 10 CG iterations. Episodes are random data of
the right shapes (a quarter of them end early); pre-adaptation actions are
sampled from theta and post-adaptation ones from the adapted phi, so the
log-probabilities are consistent. Prints the median over ``--repeats`` runs
after one warm-up; the policy is reset before every TRPO step.

    .venv/bin/python experiments/bench_meta_step.py [--repeats 3] [--fvp exact gauss_newton ...]

``--malloc-tuning`` raises glibc's mmap and trim thresholds first: PyTorch's CPU
allocator hands large tensors to glibc, which by default maps every tensor
above 32 MiB fresh from the kernel and pays a page fault per 4 KiB page on
first touch; here the activations are 64 MiB.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from metarl.adaptation import AdaptationSettings, adapt_with_advantages, make_meta_batch
from metarl.cli import tune_malloc
from metarl.episodes import Episodes
from metarl.meta_optimizers import FVP_KINDS, TRPO
from metarl.policies import GaussianMLPPolicy, Params, params_of
from metarl.value_baseline import LinearFeatureBaseline


def synthetic_episodes(
    policy: GaussianMLPPolicy,
    params: Params | None,
    tasks: int,
    steps: int,
    episodes: int,
    generator: torch.Generator,
) -> Episodes:
    """Random observations and rewards; actions and log-probs from ``params`` (theta if None)."""
    obs = torch.randn(tasks, steps, episodes, policy.obs_dim, generator=generator)
    early = torch.rand(tasks, 1, episodes, generator=generator) < 0.25
    ends = torch.where(
        early,
        torch.randint(1, steps, (tasks, 1, episodes), generator=generator),
        torch.full((tasks, 1, episodes), steps),
    )
    mask = (torch.arange(steps).view(1, steps, 1) < ends).float()
    with torch.no_grad():
        if params is None:
            mean, std = policy(obs, stats=True)
        else:
            mean, std = torch.func.vmap(
                lambda p, o: torch.func.functional_call(policy, p, (o,), {"stats": True})
            )(params, obs)
        actions = mean + std * torch.randn(mean.shape, generator=generator)
        log_probs = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    rewards = torch.randn(tasks, steps, episodes, generator=generator)
    return Episodes(
        obs * mask[..., None], actions * mask[..., None], rewards * mask, mask, log_probs * mask
    )


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    # Cheapest first, so the peak memory printed after each kind is its own.
    parser.add_argument("--fvp", nargs="+", default=list(FVP_KINDS)[::-1], choices=FVP_KINDS)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.malloc_tuning:
        tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    policy = GaussianMLPPolicy(17, 6, (100, 100), "relu", init_std=1.0)
    initial = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    adaptation = AdaptationSettings(lr=0.1, steps=1, first_order=args.first_order)
    baseline = LinearFeatureBaseline()
    size = (args.tasks, args.horizon, args.episodes)
    pre = synthetic_episodes(policy, None, *size, generator)
    pre_only = make_meta_batch(pre, pre, baseline, 0.99, 1.0)
    with torch.no_grad():
        phi = adapt_with_advantages(policy, params_of(policy), pre, pre_only.pre_advantages, 0.1)
    post = synthetic_episodes(policy, phi, *size, generator)
    batch = make_meta_batch(pre, post, baseline, 0.99, 1.0)
    print(
        f"tasks {args.tasks}, episodes {args.episodes}, horizon {args.horizon}, "
        f"valid steps pre {pre.num_steps} post {post.num_steps}, threads "
        f"{torch.get_num_threads()}, malloc tuning {args.malloc_tuning}, "
        f"first_order {args.first_order}, median of {args.repeats}"
    )

    def adapt_for_sampling() -> None:
        with torch.no_grad():
            adapt_with_advantages(policy, params_of(policy), pre, batch.pre_advantages, 0.1)

    seconds = median_seconds(adapt_for_sampling, args.repeats)
    print(f"adaptation (no graph, for sampling): {seconds:.3f} s")

    for kind in args.fvp:
        optimizer = TRPO(fvp=kind)
        runs: list[dict[str, float]] = []

        def meta_step(optimizer: TRPO = optimizer, runs: list = runs) -> None:
            policy.load_state_dict(initial)
            runs.append(optimizer.step(policy, batch, adaptation))

        seconds = median_seconds(meta_step, args.repeats)
        last = runs[-1]
        print(
            f"TRPO step, fvp={kind}: {seconds:.3f} s; ls_steps {last['ls_steps']:.0f}, "
            f"kl {last['kl']:.4f}, loss {last['loss_before']:.4f} -> {last['loss_after']:.4f}; "
            f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"
        )


if __name__ == "__main__":
    main()
