"""Discounted returns and GAE against hand-computed values (style of SB3 tests/test_gae.py)."""

from __future__ import annotations

import pytest
import torch

from metarl.episodes import Episodes, discounted_returns, gae, stack_episodes

# Two episodes of three steps; the second ends after two steps, and its padded
# third step holds garbage (reward 5, value 7) that must be ignored.
REWARDS = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 5.0]])
MASK = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
VALUES = torch.tensor([[0.5, 1.0], [1.0, 2.0], [2.0, 7.0]])


def test_discounted_returns_by_hand():
    # gamma 0.5. Episode 0: R2 = 3, R1 = 2 + 0.5*3 = 3.5, R0 = 1 + 0.5*3.5 = 2.75.
    # Episode 1: R1 = 1, R0 = 1 + 0.5*1 = 1.5, padded step 0.
    expected = torch.tensor([[2.75, 1.5], [3.5, 1.0], [3.0, 0.0]])
    torch.testing.assert_close(discounted_returns(REWARDS, MASK, 0.5), expected)


def test_discounted_returns_gamma_one_is_reward_to_go():
    returns = discounted_returns(REWARDS, MASK, 1.0)
    torch.testing.assert_close(returns[:, 0], torch.tensor([6.0, 5.0, 3.0]))
    torch.testing.assert_close(returns[:, 1], torch.tensor([2.0, 1.0, 0.0]))


def test_gae_by_hand():
    # gamma 0.5, lambda 0.5, delta_t = r_t + gamma * V_{t+1} * mask_{t+1} - V_t.
    # Episode 0: d2 = 3 - 2 = 1, d1 = 2 + 0.5*2 - 1 = 2, d0 = 1 + 0.5*1 - 0.5 = 1;
    #   A2 = 1, A1 = 2 + 0.25*1 = 2.25, A0 = 1 + 0.25*2.25 = 1.5625.
    # Episode 1 (the value 7 after termination is not bootstrapped):
    #   d1 = 1 - 2 = -1, d0 = 1 + 0.5*2 - 1 = 1; A1 = -1, A0 = 1 - 0.25 = 0.75.
    expected = torch.tensor([[1.5625, 0.75], [2.25, -1.0], [1.0, 0.0]])
    torch.testing.assert_close(gae(REWARDS, VALUES, MASK, 0.5, 0.5), expected)


def test_gae_lambda_zero_is_one_step_td():
    expected = torch.tensor([[1.0, 1.0], [2.0, -1.0], [1.0, 0.0]])
    torch.testing.assert_close(gae(REWARDS, VALUES, MASK, 0.5, 0.0), expected)


def _random_batch(generator, shape):
    rewards = torch.randn(shape, generator=generator)
    values = torch.randn(shape, generator=generator)
    lengths = torch.randint(1, shape[-2] + 1, shape[:-2] + shape[-1:], generator=generator)
    steps = torch.arange(shape[-2]).view(-1, 1)
    mask = (steps < lengths.unsqueeze(-2)).float()
    return rewards, values, mask


@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_gae_lambda_one_is_returns_minus_values(gamma):
    rewards, values, mask = _random_batch(torch.Generator().manual_seed(0), (7, 5))
    advantages = gae(rewards, values, mask, gamma, 1.0)
    expected = (discounted_returns(rewards, mask, gamma) - values) * mask
    torch.testing.assert_close(advantages, expected)


def test_stacked_tasks_match_each_task():
    rewards, values, mask = _random_batch(torch.Generator().manual_seed(1), (3, 6, 4))
    returns = discounted_returns(rewards, mask, 0.9)
    advantages = gae(rewards, values, mask, 0.9, 0.8)
    for k in range(3):
        torch.testing.assert_close(returns[k], discounted_returns(rewards[k], mask[k], 0.9))
        torch.testing.assert_close(advantages[k], gae(rewards[k], values[k], mask[k], 0.9, 0.8))


def test_inputs_not_modified():
    rewards, values, mask = _random_batch(torch.Generator().manual_seed(2), (5, 3))
    copies = [t.clone() for t in (rewards, values, mask)]
    discounted_returns(rewards, mask, 0.9)
    gae(rewards, values, mask, 0.9, 0.95)
    for original, copy in zip((rewards, values, mask), copies, strict=True):
        assert torch.equal(original, copy)


def test_episodes_stack_and_index():
    def one(seed):
        g = torch.Generator().manual_seed(seed)
        rewards, _, mask = _random_batch(g, (4, 2))
        return Episodes(
            observations=torch.randn(4, 2, 3, generator=g),
            actions=torch.randn(4, 2, 1, generator=g),
            rewards=rewards * mask,
            mask=mask,
            log_probs=torch.zeros(4, 2),
            tasks=({"goal": seed},),
        )

    parts = [one(0), one(1)]
    stack = stack_episodes(parts)
    assert stack.observations.shape == (2, 4, 2, 3)
    assert stack.tasks == ({"goal": 0}, {"goal": 1})
    assert stack.num_steps == int(parts[0].mask.sum() + parts[1].mask.sum())
    for k, part in enumerate(parts):
        for name in ("observations", "actions", "rewards", "mask", "log_probs"):
            assert torch.equal(getattr(stack[k], name), getattr(part, name))
        assert stack[k].tasks == part.tasks
        torch.testing.assert_close(stack.episode_returns[k], part.rewards.sum(0))
