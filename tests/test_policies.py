"""GaussianMLPPolicy and its functional helpers (torch.func.functional_call, vmap)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metarl.policies import GaussianMLPPolicy, distribution, params_of, stack_params

OBS_DIM, ACT_DIM = 3, 2


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(8, 8), init_std=0.5)


def test_shapes_and_layers(policy):
    obs = torch.randn(5, 4, OBS_DIM)  # [T, E, D]
    dist = policy(obs)
    assert dist.batch_shape == (5, 4)
    assert dist.event_shape == (ACT_DIM,)
    assert dist.sample().shape == (5, 4, ACT_DIM)
    assert dist.log_prob(dist.sample()).shape == (5, 4)
    widths = [(m.in_features, m.out_features) for m in policy.modules() if isinstance(m, nn.Linear)]
    assert widths == [(OBS_DIM, 8), (8, 8), (8, ACT_DIM)]


def test_paper_default_architecture():
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM)
    widths = [m.out_features for m in policy.modules() if isinstance(m, nn.Linear)]
    assert widths == [100, 100, ACT_DIM]
    assert sum(isinstance(m, nn.ReLU) for m in policy.modules()) == 2


@pytest.mark.parametrize("init_std", [0.1, 1.0, 2.5])
def test_init_std(init_std):
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(4,), init_std=init_std)
    dist = policy(torch.randn(6, OBS_DIM))
    torch.testing.assert_close(dist.stddev, torch.full((6, ACT_DIM), init_std))
    torch.testing.assert_close(policy.log_std.detach(), torch.full((ACT_DIM,), math.log(init_std)))


def test_functional_call_uses_the_given_params(policy):
    obs = torch.randn(7, OBS_DIM)
    before = policy(obs).mean.detach().clone()
    same = distribution(policy, params_of(policy), obs)
    torch.testing.assert_close(same.mean, before)

    changed = {name: p.detach().clone() for name, p in params_of(policy).items()}
    changed["mean.4.bias"] = changed["mean.4.bias"] + 1.0  # the output layer
    changed["log_std"] = changed["log_std"] + math.log(2.0)
    dist = distribution(policy, changed, obs)
    torch.testing.assert_close(dist.mean, before + 1.0)
    torch.testing.assert_close(dist.stddev, torch.full((7, ACT_DIM), 1.0))
    # The module's own parameters are untouched.
    torch.testing.assert_close(policy(obs).mean, before)


def test_gradients_reach_the_param_dict(policy):
    obs = torch.randn(7, OBS_DIM)
    params = {
        name: p.detach().clone().requires_grad_(True) for name, p in params_of(policy).items()
    }
    dist = distribution(policy, params, obs)
    loss = -dist.log_prob(torch.zeros(7, ACT_DIM)).mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    assert all(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in policy.parameters())


def test_stats_agree_with_distribution(policy):
    obs = torch.randn(4, 3, OBS_DIM)
    mean, std = policy(obs, stats=True)
    dist = policy(obs)
    torch.testing.assert_close(mean, dist.mean)
    torch.testing.assert_close(std, dist.stddev)
    assert std.shape == mean.shape == (4, 3, ACT_DIM)


def test_vmap_over_stacked_params_equals_loop(policy):
    g = torch.Generator().manual_seed(1)
    per_task = [
        {
            name: p.detach() + 0.1 * torch.randn(p.shape, generator=g)
            for name, p in policy.named_parameters()
        }
        for _ in range(3)
    ]
    obs = torch.randn(3, 5, OBS_DIM, generator=g)  # [task, E, D]

    def stats(params, task_obs):
        return torch.func.functional_call(policy, params, (task_obs,), {"stats": True})

    means, stds = torch.func.vmap(stats)(stack_params(per_task), obs)
    assert means.shape == stds.shape == (3, 5, ACT_DIM)
    for k, params in enumerate(per_task):
        dist = distribution(policy, params, obs[k])
        torch.testing.assert_close(means[k], dist.mean)
        torch.testing.assert_close(stds[k], dist.stddev)
    assert not torch.allclose(means[0], means[1])


def test_stack_params_shapes(policy):
    stacked = stack_params([params_of(policy)] * 4)
    for name, p in policy.named_parameters():
        assert stacked[name].shape == (4, *p.shape)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        GaussianMLPPolicy(OBS_DIM, ACT_DIM, activation="sigmoidal")
    with pytest.raises(ValueError, match="init_std"):
        GaussianMLPPolicy(OBS_DIM, ACT_DIM, init_std=0.0)


def test_xavier_init_gives_glorot_weights_and_zero_biases():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(64, 64), init="xavier_uniform")
    for layer in (m for m in policy.mean if isinstance(m, torch.nn.Linear)):
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert layer.bias.eq(0).all()
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range
    torch.manual_seed(0)
    default = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(64, 64), init="torch")
    assert not default.mean[0].bias.eq(0).all()


def test_action_scale_multiplies_mean_and_std_and_init_std_is_in_env_units():
    torch.manual_seed(0)
    scaled = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(8,), init_std=0.1, action_scale=0.1)
    torch.manual_seed(0)
    plain = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(8,), init_std=1.0)
    obs = torch.randn(5, OBS_DIM)
    torch.testing.assert_close(scaled(obs).stddev, torch.full((5, ACT_DIM), 0.1))
    torch.testing.assert_close(scaled(obs).mean, 0.1 * plain(obs).mean)
    torch.testing.assert_close(scaled.log_std, plain.log_std)  # log(0.1 / 0.1) = log(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "orthogonal"}, "init"),
        ({"action_scale": 0.0}, "action_scale"),
        ({"action_scale": float("inf")}, "action_scale"),
    ],
)
def test_bad_init_or_scale(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMLPPolicy(OBS_DIM, ACT_DIM, **kwargs)


@pytest.mark.parametrize("action_scale", [1.0, 0.1])
def test_task_stats_is_the_policys_forward_under_given_parameters(action_scale):
    """The sampler's per-task product: bit-identical to forward on the same parameters, and
    under other parameters what functional_call gives."""
    from metarl.policies import task_stats

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(
        5, 3, hidden_sizes=(8, 8), activation="tanh", action_scale=action_scale
    )
    obs = torch.randn(4, 5)
    mean, std = task_stats(policy, dict(policy.named_parameters()), obs)
    want_mean, want_std = policy(obs, stats=True)
    assert torch.equal(mean, want_mean) and torch.equal(std, want_std)
    other = {k: v.detach() + 0.1 for k, v in policy.named_parameters()}
    mean, std = task_stats(policy, other, obs)
    want_mean, want_std = torch.func.functional_call(policy, other, (obs,), {"stats": True})
    assert torch.equal(mean, want_mean) and torch.equal(std, want_std)


def _normalizing_policy() -> GaussianMLPPolicy:
    torch.manual_seed(0)
    return GaussianMLPPolicy(
        4,
        2,
        hidden_sizes=(8,),
        activation="tanh",
        init_std=0.1,
        action_scale=0.1,
        obs_normalization=True,
    )


def test_obs_statistics_are_those_of_every_unmasked_observation_seen():
    """Two updates (a masked-out step among them) give the mean and (population) variance of
    the observations where the mask is one, as one pass over them would."""
    policy = _normalizing_policy()
    gen = torch.Generator().manual_seed(3)
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0])
    first, second = (torch.randn(5, 3, 4, generator=gen) * scale + 2 for _ in range(2))
    mask = torch.ones(5, 3)
    mask[4, 1] = 0.0
    first[4, 1] = 1e6  # a masked step must not count
    policy.update_obs_stats(first, mask)
    policy.update_obs_stats(second, torch.ones(5, 3))
    seen = torch.cat([first.reshape(-1, 4)[mask.reshape(-1) > 0], second.reshape(-1, 4)]).double()
    torch.testing.assert_close(policy.obs_mean, seen.mean(0))
    torch.testing.assert_close(policy.obs_var, seen.var(0, unbiased=False))
    assert policy.obs_count.item() == 29


def test_the_network_sees_standardised_clipped_observations():
    """forward and task_stats: the plain network on (obs - mean) / std clipped to +-OBS_CLIP;
    the identity (within the clip) before any update; buffers in the state dict, not parameters."""
    from metarl.policies import OBS_CLIP, task_stats

    policy = _normalizing_policy()
    plain = GaussianMLPPolicy(4, 2, hidden_sizes=(8,), activation="tanh", action_scale=0.1)
    plain.load_state_dict(
        {k: v for k, v in policy.state_dict().items() if not k.startswith("obs_")}
    )
    obs = torch.randn(6, 4) * 2  # within the clip
    torch.testing.assert_close(policy(obs, stats=True), plain(obs, stats=True))  # identity
    policy.update_obs_stats(
        torch.randn(50, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 1, torch.ones(50)
    )
    obs[0, 2] = 1e3  # far past the clip
    std = policy.obs_var.sqrt().float()
    seen = ((obs - policy.obs_mean.float()) / std).clamp(-OBS_CLIP, OBS_CLIP)
    assert seen[0, 2] == OBS_CLIP
    want = plain(seen, stats=True)
    torch.testing.assert_close(policy(obs, stats=True), want)
    torch.testing.assert_close(task_stats(policy, params_of(policy), obs), want)
    assert {"obs_mean", "obs_var", "obs_count"} <= set(policy.state_dict())
    assert not any(name.startswith("obs_") for name in params_of(policy))


def test_obs_statistics_need_a_normalizing_policy():
    with pytest.raises(ValueError, match="obs_normalization=True"):
        GaussianMLPPolicy(4, 2).update_obs_stats(torch.zeros(3, 4), torch.ones(3))
