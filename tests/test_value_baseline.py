"""The linear feature baseline (Duan et al. 2016): exact fits, batching, masks, ridge escalation."""

from __future__ import annotations

import pytest
import torch

from metarl import value_baseline
from metarl.episodes import Episodes, discounted_returns, stack_episodes
from metarl.value_baseline import LinearFeatureBaseline, fit_linear, linear_features


def _mask(generator, horizon, num_episodes):
    lengths = torch.randint(horizon // 2, horizon + 1, (num_episodes,), generator=generator)
    return (torch.arange(horizon).view(-1, 1) < lengths).float()


def _episodes(seed, horizon=100, num_episodes=4, obs_dim=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mask = _mask(g, horizon, num_episodes)
    return Episodes(
        observations=torch.randn(horizon, num_episodes, obs_dim, generator=g).to(dtype),
        actions=torch.zeros(horizon, num_episodes, 1, dtype=dtype),
        rewards=(torch.randn(horizon, num_episodes, generator=g) * mask).to(dtype),
        mask=mask.to(dtype),
        log_probs=torch.zeros(horizon, num_episodes, dtype=dtype),
    )


def test_features_by_hand():
    obs = torch.tensor([[[2.0]], [[-3.0]], [[5.0]]])  # T=3, E=1, D=1
    mask = torch.tensor([[1.0], [1.0], [0.0]])
    features = linear_features(obs, mask)
    expected = torch.tensor(
        [
            [[2.0, 4.0, 0.0, 0.0, 0.0, 1.0]],
            [[-3.0, 9.0, 0.01, 0.0001, 0.000001, 1.0]],
            [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],  # masked step
        ]
    )
    torch.testing.assert_close(features, expected)


def test_fit_recovers_known_linear_answer():
    episodes = _episodes(0, dtype=torch.float64)
    features = linear_features(episodes.observations, episodes.mask)
    true_weights = torch.randn(features.shape[-1], generator=torch.Generator().manual_seed(1))
    targets = features @ true_weights.double()
    weights = fit_linear(features, targets, episodes.mask, reg_coeff=1e-12)
    torch.testing.assert_close(weights, true_weights.double(), atol=1e-6, rtol=1e-6)

    baseline = LinearFeatureBaseline(reg_coeff=1e-12).fit(episodes, targets)
    torch.testing.assert_close(baseline.predict(episodes), targets, atol=1e-8, rtol=1e-8)


def test_batched_fit_equals_per_task_fits():
    parts = [_episodes(seed, horizon=30, num_episodes=3) for seed in range(3)]
    stack = stack_episodes(parts)
    batched = LinearFeatureBaseline()
    values = batched.fit_predict(stack, gamma=0.9)
    assert values.shape == (3, 30, 3)
    for k, part in enumerate(parts):
        single = LinearFeatureBaseline()
        torch.testing.assert_close(values[k], single.fit_predict(part, gamma=0.9))
        torch.testing.assert_close(batched.weights[k], single.weights, rtol=1e-9, atol=1e-9)
    # The fits really are per task: different tasks give different weights.
    assert not torch.allclose(batched.weights[0], batched.weights[1])


def test_masked_steps_predict_zero_and_do_not_matter():
    clean = _episodes(2, horizon=40)
    assert (clean.mask == 0).any()
    masked = (clean.mask == 0).unsqueeze(-1)
    # Garbage on padded steps must neither reach the fit nor the prediction.
    dirty = Episodes(
        observations=torch.where(
            masked, torch.full_like(clean.observations, 1e3), clean.observations
        ),
        actions=clean.actions,
        rewards=torch.where(clean.mask == 0, torch.full_like(clean.rewards, 1e3), clean.rewards),
        mask=clean.mask,
        log_probs=clean.log_probs,
    )
    clean_values = LinearFeatureBaseline().fit_predict(clean, gamma=0.99)
    dirty_values = LinearFeatureBaseline().fit_predict(dirty, gamma=0.99)
    assert torch.all(dirty_values[clean.mask == 0] == 0)
    assert torch.any(dirty_values[clean.mask == 1] != 0)
    torch.testing.assert_close(dirty_values, clean_values)


def test_dtype_kept_inputs_untouched_and_no_graph():
    episodes = _episodes(3, horizon=20)
    obs = episodes.observations.clone().requires_grad_(True)
    episodes = Episodes(obs, episodes.actions, episodes.rewards, episodes.mask, episodes.log_probs)
    before = [t.detach().clone() for t in (obs, episodes.rewards, episodes.mask)]
    returns = discounted_returns(episodes.rewards, episodes.mask, 0.99)
    values = LinearFeatureBaseline().fit(episodes, returns).predict(episodes)
    assert values.dtype == torch.float32
    assert not values.requires_grad
    for original, copy in zip((obs, episodes.rewards, episodes.mask), before, strict=True):
        assert torch.equal(original.detach(), copy)
    torch.testing.assert_close(values, LinearFeatureBaseline().fit_predict(episodes, 0.99))


def _singular_system():
    """Two identical columns of size 1e6: F^T F ~ 1e13, so a 1e-5 ridge is lost to rounding."""
    x = torch.linspace(1.0, 2.0, 10, dtype=torch.float64) * 1e6
    features = torch.stack([x, x, torch.ones_like(x)], dim=-1).view(10, 1, 3)  # [T, E, F]
    targets = (2.0 * x + 3.0).view(10, 1)
    mask = torch.ones(10, 1, dtype=torch.float64)
    return features, targets, mask


def _failing_cholesky(failures: int):
    """``torch.linalg.cholesky_ex`` that reports a failed factorisation for its first ``failures`` calls.

    Whether a nearly singular ridge system factorises at a given coefficient depends on
    the BLAS's rounding; the escalation logic is tested on a failure that is certain.
    """
    real = torch.linalg.cholesky_ex
    calls = []

    def cholesky_ex(matrix):
        factor, info = real(matrix)
        calls.append(matrix.clone())
        if len(calls) <= failures:
            info = torch.ones_like(info)
        return factor, info

    return cholesky_ex, calls


def test_regulariser_escalates_while_the_factorisation_fails(monkeypatch):
    features, targets, mask = _singular_system()
    gram = features.view(10, 3).T @ features.view(10, 3)
    eye = torch.eye(3, dtype=torch.float64)
    with monkeypatch.context() as patch:
        # With a single try, the first ridge coefficient is all there is: it fails.
        patch.setattr(value_baseline, "MAX_REG_TRIES", 1)
        patch.setattr(torch.linalg, "cholesky_ex", _failing_cholesky(1)[0])
        with pytest.raises(RuntimeError, match="no finite solution"):
            fit_linear(features, targets, mask, reg_coeff=1e-5)
    with monkeypatch.context() as patch:
        fake, calls = _failing_cholesky(2)
        patch.setattr(torch.linalg, "cholesky_ex", fake)
        weights = fit_linear(features, targets, mask, reg_coeff=1e-5)
    # Two forced failures, then tenfold steps until the real factorisation succeeded: at 1e-3
    # on some CPUs, later on others (the BLAS's rounding decides, as for the first failures).
    assert len(calls) >= 3
    for k, call in enumerate(calls):
        torch.testing.assert_close(call, gram + 1e-5 * 10.0**k * eye)
    torch.testing.assert_close(features @ weights, targets, rtol=1e-6, atol=1e-3)


def test_escalation_is_per_task_in_a_batch():
    bad_features, bad_targets, mask = _singular_system()
    g = torch.Generator().manual_seed(4)
    good_features = torch.randn(10, 1, 3, generator=g, dtype=torch.float64)
    good_targets = torch.randn(10, 1, generator=g, dtype=torch.float64)
    weights = fit_linear(
        torch.stack([good_features, bad_features]),
        torch.stack([good_targets, bad_targets]),
        torch.stack([mask, mask]),
    )
    assert torch.isfinite(weights).all()
    # The good task keeps its own, unescalated ridge coefficient.
    torch.testing.assert_close(weights[0], fit_linear(good_features, good_targets, mask))


def test_hopeless_fit_raises_clearly():
    features, targets, mask = _singular_system()
    targets = targets.clone()
    targets[3] = float("nan")
    with pytest.raises(RuntimeError, match="no finite solution"):
        fit_linear(features, targets, mask)


def test_bad_arguments():
    episodes = _episodes(5, horizon=10)
    with pytest.raises(ValueError, match="reg_coeff"):
        LinearFeatureBaseline(reg_coeff=0.0)
    with pytest.raises(RuntimeError, match="before fit"):
        LinearFeatureBaseline().predict(episodes)
    single_task = LinearFeatureBaseline().fit(episodes, episodes.rewards)
    with pytest.raises(ValueError, match="task axes"):
        single_task.predict(stack_episodes([episodes, episodes]))


def test_fit_on_ant_episodes_with_all_zero_contact_features():
    """Regression: batched LU aborted ("Pivots given to lu_solve ...") on Ant's ridge systems."""
    import numpy as np

    from metarl.policies import GaussianMLPPolicy
    from metarl.sampler import Sampler

    torch.manual_seed(0)
    with Sampler("metarl/AntVel-v0", 4, 5, 60) as sampler:
        policy = GaussianMLPPolicy(sampler.obs_dim, sampler.act_dim)
        tasks = sampler.sample_tasks(4, np.random.default_rng(0))
        episodes = sampler.sample(policy, None, tasks, seed=0)
    values = LinearFeatureBaseline().fit_predict(episodes, 0.99)
    assert values.shape == episodes.rewards.shape
    assert torch.isfinite(values).all()
    assert values[episodes.mask == 0].eq(0).all()
    per_task = torch.stack(
        [LinearFeatureBaseline().fit_predict(episodes[k], 0.99) for k in range(4)]
    )
    torch.testing.assert_close(values, per_task, rtol=1e-6, atol=1e-6)
