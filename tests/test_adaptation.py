"""The inner loop: advantages, the REINFORCE loss, and batched, differentiable adaptation."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from metarl.adaptation import (
    AdaptationSettings,
    adapt,
    adapt_steps,
    adapt_with_advantages,
    compute_advantages,
    inner_loss,
    make_meta_batch,
    normalize_advantages,
    policy_stats,
    step_sizes,
)
from metarl.episodes import Episodes, discounted_returns, gae, stack_episodes
from metarl.objectives import OBJECTIVES, gaussian_log_prob, masked_task_mean, outer_surrogate
from metarl.policies import GaussianMLPPolicy, Params, params_of
from metarl.value_baseline import LinearFeatureBaseline

F64 = torch.float64


def tiny_policy(seed: int = 0, activation: str = "tanh") -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    return GaussianMLPPolicy(3, 2, [4], activation, init_std=0.8).to(F64)


def synthetic_episodes(
    policy: GaussianMLPPolicy, tasks: int = 3, steps: int = 5, episodes: int = 4, seed: int = 0
) -> Episodes:
    """Random observations and rewards, actions from ``policy``, some episodes ending early."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(tasks, steps, episodes, policy.obs_dim, generator=g, dtype=F64)
    ends = torch.randint(1, steps + 1, (tasks, 1, episodes), generator=g)
    ends[..., 0] = steps  # at least one full-length episode per task
    ends[..., 1] = 2  # and one that terminates early
    mask = (torch.arange(steps).view(1, steps, 1) < ends).to(F64)
    with torch.no_grad():
        dist = policy(obs)
        actions = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=g, dtype=F64)
        log_probs = dist.log_prob(actions)
    rewards = torch.randn(tasks, steps, episodes, generator=g, dtype=F64)
    pad = mask.unsqueeze(-1)
    return Episodes(obs * pad, actions * pad, rewards * mask, mask, log_probs * mask)


def random_advantages(episodes: Episodes, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(episodes.rewards.shape, generator=g, dtype=F64)
    return normalize_advantages(raw, episodes.mask)


class ZeroBaseline:
    def fit_predict(self, episodes: Episodes, gamma: float) -> torch.Tensor:
        return torch.zeros_like(episodes.rewards)


def test_step_sizes():
    assert step_sizes(0.1, 3) == [0.1, 0.1, 0.1]
    assert step_sizes([0.1, 0.05], 2) == [0.1, 0.05]
    with pytest.raises(ValueError, match="lr has 2 entries but steps is 3"):
        step_sizes([0.1, 0.05], 3)
    with pytest.raises(ValueError, match="positive"):
        step_sizes(-0.1, 1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        step_sizes(0.1, 0)


def test_adaptation_settings_validate():
    assert AdaptationSettings(lr=[0.1, 0.05], steps=2).lr == (0.1, 0.05)
    with pytest.raises(ValueError, match="objective must be one of"):
        AdaptationSettings(objective="promp")
    with pytest.raises(ValueError, match="one per step"):
        AdaptationSettings(lr=[0.1], steps=2)


def test_normalize_advantages_per_task_over_valid_steps():
    mask = torch.tensor([[[1.0], [1.0], [0.0]], [[1.0], [1.0], [1.0]]], dtype=F64)
    adv = torch.tensor([[[1.0], [3.0], [50.0]], [[0.0], [3.0], [6.0]]], dtype=F64)
    out = normalize_advantages(adv, mask)
    # Task 0: mean 2, std 1 over its two valid steps; task 1: mean 3, std sqrt(6).
    expected = torch.tensor(
        [[[-1.0], [1.0], [0.0]], [[-3 / 6**0.5], [0.0], [3 / 6**0.5]]], dtype=F64
    )
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_compute_advantages_is_gae_on_the_baseline_and_normalised_per_task():
    episodes = synthetic_episodes(tiny_policy())
    raw = compute_advantages(episodes, ZeroBaseline(), 0.9, 1.0, normalize=False)
    torch.testing.assert_close(raw, discounted_returns(episodes.rewards, episodes.mask, 0.9))
    baseline = LinearFeatureBaseline()
    adv = compute_advantages(episodes, baseline, 0.99, 0.95)
    values = LinearFeatureBaseline().fit_predict(episodes, 0.99)
    expected = normalize_advantages(
        gae(episodes.rewards, values, episodes.mask, 0.99, 0.95), episodes.mask
    )
    torch.testing.assert_close(adv, expected)
    for k in range(3):  # stacked equals per task
        torch.testing.assert_close(adv[k], compute_advantages(episodes[k], baseline, 0.99, 0.95))
        valid = adv[k][episodes.mask[k] > 0]
        assert valid.mean().item() == pytest.approx(0.0, abs=1e-9)
        assert valid.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


def test_inner_loss_is_reinforce_per_task():
    policy = tiny_policy()
    episodes = synthetic_episodes(policy)
    adv = random_advantages(episodes)
    losses = inner_loss(policy, params_of(policy), episodes, adv)
    assert losses.shape == (3,)
    for k in range(3):
        ep = episodes[k]
        log_probs = Independent(Normal(*policy(ep.observations, stats=True)), 1).log_prob(
            ep.actions
        )
        expected = -(log_probs * adv[k] * ep.mask).sum() / ep.mask.sum()
        torch.testing.assert_close(losses[k], expected)
        torch.testing.assert_close(inner_loss(policy, params_of(policy), ep, adv[k]), expected)


def test_one_step_is_theta_minus_lr_times_each_tasks_gradient():
    policy = tiny_policy()
    episodes = synthetic_episodes(policy)
    adv = random_advantages(episodes)
    theta = params_of(policy)
    phi = adapt_with_advantages(policy, theta, episodes, adv, lr=0.3)
    for k in range(3):
        loss = inner_loss(policy, theta, episodes[k], adv[k])
        grads = torch.autograd.grad(loss, list(theta.values()))
        for (name, p), g in zip(theta.items(), grads, strict=True):
            torch.testing.assert_close(phi[name][k], p - 0.3 * g)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_batched_adaptation_equals_a_loop_over_tasks(objective):
    policy = tiny_policy()
    episodes = synthetic_episodes(policy)
    adv = random_advantages(episodes)
    theta = params_of(policy)
    lr = [0.3, 0.1]
    batched = adapt_with_advantages(policy, theta, episodes, adv, lr, 2, objective=objective)
    for k in range(3):
        single = adapt_with_advantages(
            policy, theta, episodes[k], adv[k], lr, 2, objective=objective
        )
        for name in theta:
            torch.testing.assert_close(batched[name][k], single[name])
            assert single[name].shape == theta[name].shape


def test_adapt_uses_the_baseline_advantages_and_works_without_grad():
    policy = tiny_policy()
    episodes = synthetic_episodes(policy)
    theta = params_of(policy)
    adv = compute_advantages(episodes, LinearFeatureBaseline(), 0.99, 1.0)
    expected = adapt_with_advantages(policy, theta, episodes, adv, 0.2, 2)
    phi = adapt(policy, theta, episodes, LinearFeatureBaseline(), 0.2, 2, gamma=0.99)
    # Sampling adapts under no_grad: the inner gradient must still be taken.
    with torch.no_grad():
        phi_no_grad = adapt(policy, theta, episodes, LinearFeatureBaseline(), 0.2, 2)
    for name in theta:
        torch.testing.assert_close(phi[name], expected[name])
        torch.testing.assert_close(phi_no_grad[name], expected[name])
        assert not phi_no_grad[name].requires_grad
        assert not torch.equal(phi[name][0], theta[name])


def test_make_meta_batch():
    policy = tiny_policy()
    pre, post = synthetic_episodes(policy, seed=0), synthetic_episodes(policy, seed=5)
    batch = make_meta_batch(pre, post, LinearFeatureBaseline(), 0.99, 1.0)
    torch.testing.assert_close(
        batch.post_advantages, compute_advantages(post, LinearFeatureBaseline(), 0.99, 1.0)
    )
    assert batch.pre is pre and batch.num_tasks == 3
    stacked = stack_episodes([pre[k] for k in range(3)])
    torch.testing.assert_close(stacked.rewards, pre.rewards)


def post_objective(policy, params: Params, pre, pre_adv, post, post_adv, objective, first_order):
    trace = adapt_steps(policy, params, pre, pre_adv, 0.5, 1, first_order, objective)
    mean, std = policy_stats(policy, trace[-1], post.observations)
    log_probs = gaussian_log_prob(mean, std, post.actions)
    return outer_surrogate(log_probs, post.log_probs, post_adv, post.mask).mean()


def importance_weighted_dice(log_probs, old_log_probs, advantages, mask):
    """DiCE with the magic box's stop-gradient replaced by the sampling log-probabilities.

    A genuine function of theta, so finite differences can see its derivatives;
    at the sampling parameters it agrees with DiCE to every order.
    """
    cumulative = torch.cumsum(log_probs * mask, dim=-2)
    weight = torch.exp(cumulative - torch.cumsum(old_log_probs * mask, dim=-2))
    following = torch.cat([advantages[..., 1:, :], torch.zeros_like(advantages[..., :1, :])], -2)
    return -masked_task_mean(weight * (advantages - following) * mask, mask)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_second_order_meta_gradient_matches_finite_differences(objective):
    # DiCE's value ignores theta's effect through its stop-gradient, so its
    # finite differences are taken on the importance-weighted equivalent.
    reference = importance_weighted_dice if objective == "dice" else objective
    policy = tiny_policy()
    pre, post = synthetic_episodes(policy, seed=0), synthetic_episodes(policy, seed=7)
    data = (pre, random_advantages(pre, 1), post, random_advantages(post, 2))
    theta = params_of(policy)
    names = list(theta)
    grad = torch.autograd.grad(
        post_objective(policy, theta, *data, objective, False), list(theta.values())
    )
    grad = torch.cat([g.reshape(-1) for g in grad])
    flat = torch.cat([p.detach().reshape(-1) for p in theta.values()])

    def value(x: torch.Tensor) -> float:
        chunks = x.split([p.numel() for p in theta.values()])
        params = {n: c.view_as(theta[n]) for n, c in zip(names, chunks, strict=True)}
        return post_objective(policy, params, *data, reference, False).item()

    eps = 1e-6
    basis = torch.eye(len(flat), dtype=F64)
    fd = torch.tensor([(value(flat + eps * e) - value(flat - eps * e)) / (2 * eps) for e in basis])
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-4
    # The first-order gradient is measurably different: the check can fail.
    fo = torch.autograd.grad(
        post_objective(policy, theta, *data, objective, True), list(theta.values())
    )
    fo = torch.cat([g.reshape(-1) for g in fo])
    assert ((fo - fd).norm() / fd.norm()).item() > 1e-3


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_first_order_gradient_equals_gradient_with_the_inner_gradient_detached(objective):
    policy = tiny_policy()
    pre, post = synthetic_episodes(policy, seed=0), synthetic_episodes(policy, seed=7)
    pre_adv, post_adv = random_advantages(pre, 1), random_advantages(post, 2)
    theta = params_of(policy)
    fo = torch.autograd.grad(
        post_objective(policy, theta, pre, pre_adv, post, post_adv, objective, True),
        list(theta.values()),
    )
    # By hand: the inner gradient with a graph, then detached in the update.
    expanded = {n: p.expand(3, *p.shape) for n, p in theta.items()}
    losses = inner_loss(policy, expanded, pre, pre_adv, objective)
    inner = torch.autograd.grad(losses.sum(), list(expanded.values()), create_graph=True)
    phi = {n: p - 0.5 * g.detach() for (n, p), g in zip(expanded.items(), inner, strict=True)}
    mean, std = policy_stats(policy, phi, post.observations)
    loss = outer_surrogate(
        gaussian_log_prob(mean, std, post.actions), post.log_probs, post_adv, post.mask
    ).mean()
    by_hand = torch.autograd.grad(loss, list(theta.values()))
    for a, b in zip(fo, by_hand, strict=True):
        torch.testing.assert_close(a, b)


def test_two_steps_on_fresh_episodes_meta_gradient_matches_finite_differences():
    """Step k adapts on its own batch; the second-order meta-gradient goes through both."""
    policy = tiny_policy()
    first, second = synthetic_episodes(policy, seed=0), synthetic_episodes(policy, seed=3)
    post = synthetic_episodes(policy, seed=7)
    advs = (random_advantages(first, 1), random_advantages(second, 4))
    post_adv = random_advantages(post, 2)
    theta = params_of(policy)
    names = list(theta)

    def objective(params, first_order=False):
        phi = adapt_steps(policy, params, (first, second), advs, [0.5, 0.3], 2, first_order, "lvc")[
            -1
        ]
        mean, std = policy_stats(policy, phi, post.observations)
        log_probs = gaussian_log_prob(mean, std, post.actions)
        return outer_surrogate(log_probs, post.log_probs, post_adv, post.mask).mean()

    grad = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(objective(theta), list(theta.values()))]
    )
    flat = torch.cat([p.detach().reshape(-1) for p in theta.values()])

    def value(x):
        chunks = x.split([p.numel() for p in theta.values()])
        return objective(
            {n: c.view_as(theta[n]) for n, c in zip(names, chunks, strict=True)}
        ).item()

    eps = 1e-6
    basis = torch.eye(len(flat), dtype=F64)
    fd = torch.tensor([(value(flat + eps * e) - value(flat - eps * e)) / (2 * eps) for e in basis])
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-4
    # Reusing the first batch for both steps is a different function: the check can fail.
    same = adapt_steps(policy, theta, first, advs[0], [0.5, 0.3], 2, False, "lvc")[-1]
    fresh = adapt_steps(policy, theta, (first, second), advs, [0.5, 0.3], 2, False, "lvc")[-1]
    assert not torch.allclose(same["log_std"], fresh["log_std"])
    with pytest.raises(ValueError, match="one of each per step"):
        adapt_steps(policy, theta, (first,), advs[:1], [0.5, 0.3], 2)
