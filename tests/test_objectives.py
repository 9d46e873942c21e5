"""Surrogates checked against hand-computed values and derivatives (tiny float64 tensors)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from metarl.episodes import Episodes, discounted_returns
from metarl.objectives import (
    INNER_SURROGATES,
    MetaBatch,
    clipped_surrogate,
    dice_surrogate,
    exploration_surrogate,
    gaussian_kl,
    gaussian_log_prob,
    inner_surrogate,
    lvc_surrogate,
    magic_box,
    masked_task_mean,
    outer_surrogate,
    reinforce_surrogate,
)

F64 = torch.float64

# One task, 3 steps, 2 episodes; the second episode ends after its first step.
MASK = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]], dtype=F64)
ADV = torch.tensor([[[1.0, -2.0], [0.5, 0.0], [-1.0, 0.0]]], dtype=F64)
LOGP = torch.tensor([[[-1.0, -2.0], [-0.5, 0.0], [-1.5, 0.0]]], dtype=F64)
N_VALID = 4.0


def test_masked_task_mean_ignores_padding():
    values = torch.tensor([[[1.0, 2.0], [3.0, 100.0], [5.0, 100.0]]], dtype=F64)
    assert masked_task_mean(values, MASK).item() == pytest.approx((1 + 2 + 3 + 5) / 4)


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, mean2, act = (torch.randn(4, 3, generator=g, dtype=F64) for _ in range(3))
    std, std2 = (torch.rand(4, 3, generator=g, dtype=F64) + 0.5 for _ in range(2))
    p, q = Independent(Normal(mean, std), 1), Independent(Normal(mean2, std2), 1)
    torch.testing.assert_close(gaussian_log_prob(mean, std, act), p.log_prob(act))
    torch.testing.assert_close(gaussian_kl(mean, std, mean2, std2), kl_divergence(p, q))


def test_reinforce_value_by_hand():
    expected = -(-1.0 * 1.0 + -2.0 * -2.0 + -0.5 * 0.5 + -1.5 * -1.0) / N_VALID
    assert reinforce_surrogate(LOGP, LOGP, ADV, MASK).item() == pytest.approx(expected)


def _derivatives(surrogate):
    """Gradient and Hessian of ``surrogate`` in the log-probabilities, at old == new."""
    x = LOGP.clone().requires_grad_()

    def f(x):
        return surrogate(x, LOGP, ADV, MASK).sum()

    grad = torch.autograd.grad(f(x), x)[0]
    hess = torch.autograd.functional.hessian(f, x).reshape(6, 6)
    return grad, hess


def test_lvc_matches_reinforce_first_derivative_and_adds_the_outer_product_term():
    # d/dx exp(x - old) = 1 and d^2/dx^2 = 1 at x = old: Hessian diag(-A * mask / N).
    g_reinforce, h_reinforce = _derivatives(reinforce_surrogate)
    g_lvc, h_lvc = _derivatives(lvc_surrogate)
    torch.testing.assert_close(g_reinforce, -ADV * MASK / N_VALID)
    torch.testing.assert_close(g_lvc, g_reinforce)
    torch.testing.assert_close(h_reinforce, torch.zeros(6, 6, dtype=F64))
    torch.testing.assert_close(h_lvc, torch.diag((-ADV * MASK / N_VALID).reshape(-1)))
    assert lvc_surrogate(LOGP, LOGP, ADV, MASK).item() == pytest.approx(-(ADV * MASK).sum() / 4)


def test_dice_first_derivative_is_reinforce_and_second_has_cross_time_terms():
    g_dice, h_dice = _derivatives(dice_surrogate)
    torch.testing.assert_close(g_dice, -ADV * MASK / N_VALID)
    # L = -sum_t magic(sum_{s<=t} x_s) (A_t - A_{t+1}) / N, so within one episode
    # d^2 L / dx_a dx_b = -A_{max(a, b)} / N, and zero across episodes or padding.
    expected = torch.zeros(3, 2, 3, 2, dtype=F64)
    for e in range(2):
        for a in range(3):
            for b in range(3):
                t = max(a, b)
                expected[a, e, b, e] = -ADV[0, t, e] * MASK[0, a, e] * MASK[0, b, e] / N_VALID
    torch.testing.assert_close(h_dice, expected.reshape(6, 6))


def test_dice_without_baseline_is_foerster_dice_on_rewards():
    # gamma = 1, no baseline, no normalisation: A_t - A_{t+1} = r_t, Foerster et al. eq. 5.
    rewards = torch.tensor([[[1.0, 3.0], [-2.0, 0.0], [0.5, 0.0]]], dtype=F64)
    returns = discounted_returns(rewards, MASK, 1.0)
    x = LOGP.clone().requires_grad_()
    ours = dice_surrogate(x, LOGP, returns, MASK)
    theirs = -masked_task_mean(magic_box(torch.cumsum(x * MASK, dim=-2)) * rewards, MASK)
    torch.testing.assert_close(ours, theirs)
    g1, g2 = (torch.autograd.grad(v.sum(), x, create_graph=True)[0] for v in (ours, theirs))
    torch.testing.assert_close(g1, g2)
    h1, h2 = (torch.autograd.grad(g.sum(), x)[0] for g in (g1, g2))
    torch.testing.assert_close(h1, h2)


def test_outer_surrogate_value_and_gradient():
    old = LOGP - 0.1
    x = LOGP.clone().requires_grad_()
    value = outer_surrogate(x, old, ADV, MASK)
    ratio = torch.exp(torch.tensor(0.1, dtype=F64))
    assert value.item() == pytest.approx(-(ratio * ADV * MASK).sum().item() / N_VALID)
    grad = torch.autograd.grad(value.sum(), x)[0]
    torch.testing.assert_close(grad, -ratio * ADV * MASK / N_VALID)


def test_ratio_surrogates_stay_finite_on_padding_with_huge_log_prob_gaps():
    # Padded steps may hold any log-probability; exp(1000) would be inf and inf * 0 NaN.
    logp = LOGP.clone()
    logp[0, 1:, 1] = 1000.0
    for value in (
        outer_surrogate(logp, LOGP, ADV, MASK),
        lvc_surrogate(logp, LOGP, ADV, MASK),
        clipped_surrogate(logp, LOGP, ADV, MASK, 0.2),
    ):
        assert torch.isfinite(value).all()


def test_clipped_surrogate_by_hand():
    mask = torch.ones(1, 1, 4, dtype=F64)
    adv = torch.tensor([[[1.0, 1.0, -1.0, -1.0]]], dtype=F64)
    ratio = torch.tensor([[[1.5, 0.9, 1.5, 0.5]]], dtype=F64)
    x = ratio.log().requires_grad_()
    value = clipped_surrogate(x, torch.zeros_like(x), adv, mask, clip=0.2)
    # min(r A, clip(r) A): 1.2 (clipped), 0.9, -1.5 (unclipped), -0.8 (clipped).
    assert value.item() == pytest.approx(-(1.2 + 0.9 - 1.5 - 0.8) / 4)
    grad = torch.autograd.grad(value, x)[0]
    # Clipped terms carry no gradient; the others -r A / 4.
    torch.testing.assert_close(grad, torch.tensor([[[0.0, -0.9 / 4, 1.5 / 4, 0.0]]], dtype=F64))


def test_inner_surrogate_lookup():
    assert set(INNER_SURROGATES) == {"maml", "dice", "lvc", "emaml"}
    assert inner_surrogate("emaml") is reinforce_surrogate  # E-MAML adapts as MAML
    assert inner_surrogate("lvc") is lvc_surrogate
    assert inner_surrogate(reinforce_surrogate) is reinforce_surrogate
    with pytest.raises(ValueError, match="unknown objective 'promp'"):
        inner_surrogate("promp")


def _episodes(tasks: int, steps: int = 3, episodes: int = 2) -> Episodes:
    shape = (tasks, steps, episodes)
    return Episodes(
        observations=torch.zeros(*shape, 2),
        actions=torch.zeros(*shape, 1),
        rewards=torch.zeros(shape),
        mask=torch.ones(shape),
        log_probs=torch.zeros(shape),
    )


def test_meta_batch_checks_shapes_and_finds_nonfinite_fields():
    pre, post = _episodes(2), _episodes(2)
    batch = MetaBatch(pre, post, torch.zeros(2, 3, 2), torch.zeros(2, 3, 2))
    assert batch.num_tasks == 2
    assert batch.nonfinite_fields() == []
    assert batch.to(F64).post_advantages.dtype == F64
    assert batch.to(F64).pre.observations.dtype == F64
    with pytest.raises(ValueError, match="post_advantages has shape"):
        MetaBatch(pre, post, torch.zeros(2, 3, 2), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="stacked over tasks"):
        MetaBatch(pre[0], post[0], torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="pre has 2 tasks but post has 3"):
        MetaBatch(pre, _episodes(3), torch.zeros(2, 3, 2), torch.zeros(3, 3, 2))
    bad_adv = torch.zeros(2, 3, 2)
    bad_adv[1, 2, 0] = float("nan")
    assert MetaBatch(pre, post, torch.zeros(2, 3, 2), bad_adv).nonfinite_fields() == [
        "post_advantages"
    ]


def test_exploration_surrogate_credits_pre_episodes_with_the_post_return():
    """E-MAML's term: its gradient is -w_k * mean_t grad log pi, w = standardised post returns."""
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    old = theta.detach().clone()
    mask = torch.ones(3, 4, 2, dtype=torch.float64)
    mask[1, 3:, 0] = 0
    post_returns = torch.tensor([10.0, -2.0, 4.0], dtype=torch.float64)
    loss = exploration_surrogate(theta, old, mask, post_returns)
    assert loss.shape == (3,)
    w = post_returns - post_returns.mean()
    w = w / w.square().mean().sqrt()
    torch.testing.assert_close(loss.detach(), -w)  # ratio 1 at the sampling parameters
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    expected = -w.view(3, 1, 1) * mask / mask.sum(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(grad, expected)
