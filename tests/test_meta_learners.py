"""The meta-learners of the MAML family: registry, config checks, and each method's meta-gradient."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, tiny_navigation_config, train_seeing_settings
from test_meta_optimizers import _two_step_batch, synthetic_batch, tiny_policy

from metarl.adaptation import AdaptationSettings, policy_stats
from metarl.config import Config, ConfigError, load_config
from metarl.meta_learners import CAVIA, MAML, META_LEARNERS, make_meta_learner
from metarl.meta_optimizers import PPO, TRPO
from metarl.objectives import tail_weights
from metarl.optim import flat, unflat
from metarl.policies import GaussianMLPPolicy, params_of
from metarl.trainer import Trainer, load_checkpoint

F64 = torch.float64
NAVIGATION = tiny_navigation_config().to_dict()


def _flat_params(policy) -> torch.Tensor:
    return flat([p.detach() for p in policy.parameters()]).clone()


# --- the registry and the config -------------------------------------------------------------


def test_the_config_picks_the_meta_learner_by_registered_name():
    config = tiny_navigation_config()
    assert config.meta_learner == "maml"
    assert type(make_meta_learner(config, tiny_policy())) is META_LEARNERS["maml"] is MAML


def test_an_unknown_meta_learner_is_a_config_error_with_a_suggestion(tmp_path):
    path = tmp_path / "nav.yaml"
    path.write_text("env: metarl/Navigation2D-v0\n")
    with pytest.raises(ConfigError, match=r"meta_learner: must be one of .*did you mean 'maml'"):
        load_config(path, ["meta_learner=mamll"])


@pytest.mark.parametrize("make", [TRPO, lambda: PPO(epochs=2)], ids=["trpo", "ppo"])
def test_maml_learner_step_is_the_meta_optimizers_step(make):
    """Passing the MAML learner explicitly changes nothing: it is the meta-optimizers' default."""
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    adaptation = AdaptationSettings(lr=0.3)
    a, b = copy.deepcopy(policy), copy.deepcopy(policy)
    metrics_a = make().step(a, batch, adaptation)
    metrics_b = MAML().step(b, batch, adaptation, make())
    assert metrics_a == metrics_b
    assert torch.equal(_flat_params(a), _flat_params(b))
    assert not torch.equal(_flat_params(a), _flat_params(policy))


# --- Reptile ---------------------------------------------------------------------------------


def _central_difference_gradient(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    basis = torch.eye(len(x), dtype=x.dtype)
    return torch.tensor(
        [(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in basis], dtype=x.dtype
    )


def _reptile_reference(policy, batch, lrs) -> torch.Tensor:
    """``mean_i(phi_K,i) - theta``, each inner step ``phi - lr * grad`` with the gradient of task
    ``i``'s REINFORCE surrogate on step ``k``'s episodes taken by central differences."""
    from metarl.adaptation import inner_loss

    theta = {n: p.detach() for n, p in policy.named_parameters()}
    like = list(theta.values())
    start = flat(like)

    def loss_at(x, episodes, advantages):
        params = dict(zip(theta, unflat(x, like), strict=True))
        return inner_loss(policy, params, episodes, advantages)

    adapted = []
    for task in range(batch.num_tasks):
        x = start.clone()
        pres, advs = batch.pre_list, batch.pre_advantages_list
        for lr, pre, adv in zip(lrs, pres, advs, strict=True):
            episodes, advantages = pre[task], adv[task]

            def f(y, episodes=episodes, advantages=advantages):
                return loss_at(y, episodes, advantages).item()

            x = x - lr * _central_difference_gradient(f, x)
        adapted.append(x)
    return torch.stack(adapted).mean(0) - start


@pytest.mark.parametrize("steps", [1, 2])
def test_reptile_moves_theta_by_epsilon_times_the_mean_adapted_difference(steps):
    """theta' - theta = epsilon * mean_i(phi_K,i - theta), phi_K from K policy-gradient steps on
    each step's own episodes, against a reference whose gradients are finite differences."""
    from metarl.meta_learners import Reptile

    policy = tiny_policy()
    batch = synthetic_batch(policy) if steps == 1 else _two_step_batch(policy)
    lrs = [0.3, 0.2][:steps]
    expected = _reptile_reference(policy, batch, lrs)
    before = _flat_params(policy)
    metrics = Reptile(policy, epsilon=0.5).step(
        policy, batch, AdaptationSettings(lr=lrs, steps=steps)
    )
    moved = _flat_params(policy) - before
    torch.testing.assert_close(moved, 0.5 * expected, rtol=1e-6, atol=1e-9)
    assert metrics["reptile_distance"] == pytest.approx(expected.norm().item(), rel=1e-6)
    if steps == 2:  # the second step is taken and on its own episodes: the check can fail
        one_step = _reptile_reference(policy, synthetic_batch(policy), lrs[:1])
        assert (one_step - expected).norm() > 1e-2 * expected.norm()


def test_reptile_epsilon_and_adam_set_the_outer_step():
    """epsilon scales the step; with Adam the first step is epsilon * sign(direction) (Adam's
    first moments are the direction itself), whatever the direction's size."""
    from metarl.meta_learners import Reptile

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    settings = AdaptationSettings(lr=0.3)
    direction = _reptile_reference(policy, batch, [0.3])
    moves = {}
    for epsilon in (0.5, 0.25):
        moved = copy.deepcopy(policy)
        Reptile(moved, epsilon=epsilon).step(moved, batch, settings)
        moves[epsilon] = _flat_params(moved) - _flat_params(policy)
    torch.testing.assert_close(moves[0.25], moves[0.5] / 2, rtol=1e-9, atol=1e-12)
    adam_policy = copy.deepcopy(policy)
    Reptile(adam_policy, epsilon=1e-3, optimizer="adam").step(adam_policy, batch, settings)
    adam_move = _flat_params(adam_policy) - _flat_params(policy)
    clear = direction.abs() > 1e-5  # where Adam's eps (1e-8) is negligible
    assert clear.sum() > len(direction) // 2
    torch.testing.assert_close(
        adam_move[clear], 1e-3 * direction[clear].sign(), rtol=1e-3, atol=1e-9
    )


def test_reptile_refuses_an_exploring_objective():
    with pytest.raises(ConfigError, match=r"objective: .*Reptile"):
        tiny_navigation_config(meta_learner="reptile", objective="emaml")


# --- iMAML -----------------------------------------------------------------------------------


def _task_hessian(policy, episodes, advantages) -> torch.Tensor:
    """The dense Hessian of one task's REINFORCE surrogate at the policy's parameters."""
    from metarl.adaptation import inner_loss

    theta = {n: p.detach() for n, p in policy.named_parameters()}
    like = list(theta.values())

    def f(x):
        return inner_loss(
            policy, dict(zip(theta, unflat(x, like), strict=True)), episodes, advantages
        )

    return torch.autograd.functional.hessian(f, flat(like))


def test_implicit_meta_gradient_solves_each_tasks_proximal_system():
    """(I + H_k / lam)^-1 g_k per task, against a dense solve with each task's own Hessian."""
    from metarl.adaptation import expand_params
    from metarl.meta_learners import implicit_meta_gradient

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    phi = expand_params(theta, batch.num_tasks)
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(p.shape, generator=g, dtype=F64) for p in phi.values()]
    lam = 10.0
    solved = implicit_meta_gradient(
        policy, phi, batch.pre, batch.pre_advantages, grads, lam, cg_iters=200
    )
    n = sum(p.numel() for p in theta.values())
    for k in range(batch.num_tasks):
        hessian = _task_hessian(policy, batch.pre[k], batch.pre_advantages[k])
        g_k = flat([x[k] for x in grads])
        expected = torch.linalg.solve(torch.eye(n, dtype=F64) + hessian / lam, g_k)
        got = flat([x[k] for x in solved])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
        # lambda matters: the system without it has another solution.
        other = torch.linalg.solve(torch.eye(n, dtype=F64) + hessian, g_k)
        assert (other - expected).norm() > 1e-2 * expected.norm()


def _meta_gradient_of(policy, batch, adaptation, learner, monkeypatch) -> torch.Tensor:
    """The meta-gradient TRPO.step hands to conjugate gradient (the policy and the learner, with
    any learned rates, are left unchanged: the step moves copies)."""
    import metarl.meta_optimizers.trpo as trpo_module

    seen = []
    real = trpo_module.conjugate_gradient

    def spy(fvp, b, *args, **kwargs):
        seen.append(b.detach().clone())
        return real(fvp, b, *args, **kwargs)

    moved = copy.deepcopy(policy)
    with monkeypatch.context() as m:
        m.setattr(trpo_module, "conjugate_gradient", spy)
        TRPO(cg_iters=1, ls_max_steps=1).step(moved, batch, adaptation, copy.deepcopy(learner))
    (grad,) = seen
    return grad


@pytest.mark.parametrize(("lam", "lr"), [(20.0, 0.05), (40.0, 0.025)])
def test_imaml_meta_gradient_matches_finite_differences_of_the_solved_inner_problem(
    monkeypatch, lam, lr
):
    """With the inner problem solved (60 proximal steps on one batch converge here), iMAML's
    meta-gradient is the derivative of the post-adaptation surrogate at phi*(theta), checked
    by central differences in float64 of a reference that solves the problem itself."""
    from metarl.adaptation import expand_params, inner_loss
    from metarl.meta_learners import IMAML
    from metarl.objectives import gaussian_log_prob, outer_surrogate

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    steps = 60
    adaptation = AdaptationSettings(lr=lr, steps=steps)
    grad = _meta_gradient_of(policy, batch, adaptation, IMAML(lam, cg_iters=200), monkeypatch)
    names = [n for n, _ in policy.named_parameters()]
    like = [p.detach() for p in policy.parameters()]

    def solved_objective(x: torch.Tensor) -> float:
        theta = dict(zip(names, unflat(x, like), strict=True))
        phi = {n: p.clone() for n, p in expand_params(theta, batch.num_tasks).items()}
        for _ in range(steps):
            leaves = {n: p.requires_grad_() for n, p in phi.items()}
            losses = inner_loss(policy, leaves, batch.pre, batch.pre_advantages)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
            phi = {
                n: (p - lr * (g + lam * (p - theta[n]))).detach()
                for (n, p), g in zip(leaves.items(), grads, strict=True)
            }
        with torch.no_grad():
            mean, std = policy_stats(policy, phi, batch.post.observations)
            log_probs = gaussian_log_prob(mean, std, batch.post.actions)
            post = batch.post
            return (
                outer_surrogate(log_probs, post.log_probs, batch.post_advantages, post.mask)
                .mean()
                .item()
            )

    fd = _central_difference_gradient(solved_objective, flat(like))
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-4
    # Without the implicit Jacobian (first order) the gradient is measurably different.
    first_order = AdaptationSettings(lr=lr, steps=steps, first_order=True)
    fo = _meta_gradient_of(policy, batch, first_order, IMAML(lam, cg_iters=200), monkeypatch)
    assert ((fo - fd).norm() / fd.norm()).item() > 1e-2


@pytest.mark.parametrize("make", [TRPO, lambda: PPO(lr=1e-2, epochs=3)], ids=["trpo", "ppo"])
def test_imaml_serves_trpo_and_ppo(make):
    """Both outer steps take iMAML's meta-gradient and lower their own surrogate (TRPO within
    its trust region, measured on the re-solved inner problem)."""
    from metarl.meta_learners import IMAML

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    before = _flat_params(policy)
    metrics = make().step(policy, batch, AdaptationSettings(lr=0.3), IMAML(lam=10.0))
    assert not torch.equal(_flat_params(policy), before)
    assert metrics["loss_after"] < metrics["loss_before"]
    assert 0 < metrics["kl"] <= 0.01 or "inner_kl" in metrics


def test_imaml_keeps_the_direct_gradient_of_terms_that_read_theta(monkeypatch):
    """E-MAML's exploration term depends on theta itself, not through phi: under iMAML it adds
    its own gradient, untouched by the implicit solve."""
    from metarl.adaptation import exploration_loss
    from metarl.meta_learners import IMAML

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    maml, emaml = AdaptationSettings(lr=0.3), AdaptationSettings(lr=0.3, objective="emaml")
    plain = _meta_gradient_of(policy, batch, maml, IMAML(10.0, cg_iters=50), monkeypatch)
    exploring = _meta_gradient_of(policy, batch, emaml, IMAML(10.0, cg_iters=50), monkeypatch)
    theta = dict(policy.named_parameters())
    term = flat(
        torch.autograd.grad(exploration_loss(policy, theta, batch, emaml), list(theta.values()))
    )
    assert term.norm() > 1e-3 * plain.norm()
    torch.testing.assert_close(exploring - plain, term, rtol=1e-7, atol=1e-12)


# --- MAML++: learned per-tensor, per-step inner rates ---------------------------------------


def _learned_rate_learner(policy, lrs=(0.3, 0.2), per_parameter=False) -> MAML:
    """A learn_lr MAML whose rates differ across tensors (so no rate is shared by accident),
    and with ``per_parameter`` (Meta-SGD) across the entries of each tensor too."""
    learner = MAML(policy, list(lrs), len(lrs), learn_lr=True, per_parameter=per_parameter)
    spread = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for k, step in enumerate(learner.learned_lrs):
            for i, rate in enumerate(step.values()):
                rate.mul_(1.0 + 0.25 * i - 0.1 * k)
                if per_parameter:
                    rate.mul_(0.5 + torch.rand(rate.shape, dtype=rate.dtype, generator=spread))
    return learner


def _rates_by_hand(policy, batch, rates, x: torch.Tensor) -> torch.Tensor:
    """TRPO's post-adaptation surrogate with REINFORCE steps phi - rate[k][tensor] * grad on
    each step's own episodes, as a function of the flat vector x = (theta, rates)."""
    from metarl.adaptation import expand_params, inner_loss
    from metarl.objectives import gaussian_log_prob, outer_surrogate

    names = [n for n, _ in policy.named_parameters()]
    like = [p.detach() for p in policy.parameters()] + [r for s in rates for r in s.values()]
    chunks = unflat(x.detach().requires_grad_(), like)
    theta = dict(zip(names, chunks[: len(names)], strict=True))
    current = expand_params(theta, batch.num_tasks)
    for k, (pre, adv) in enumerate(zip(batch.pre_list, batch.pre_advantages_list, strict=True)):
        step = chunks[len(names) * (k + 1) : len(names) * (k + 2)]
        losses = inner_loss(policy, current, pre, adv)
        grads = torch.autograd.grad(losses.sum(), list(current.values()), create_graph=True)
        current = {n: p - r * g for (n, p), r, g in zip(current.items(), step, grads, strict=True)}
    mean, std = policy_stats(policy, current, batch.post.observations)
    post = batch.post
    log_probs = gaussian_log_prob(mean, std, post.actions)
    return outer_surrogate(log_probs, post.log_probs, batch.post_advantages, post.mask).mean()


@pytest.mark.parametrize(("steps", "per_parameter"), [(1, False), (2, False), (1, True), (2, True)])
def test_learned_rate_meta_gradient_matches_finite_differences(monkeypatch, steps, per_parameter):
    """TRPO's meta-gradient over theta and every learned rate, against central differences in
    float64 of the post-adaptation surrogate written out with the rates (per tensor, or per
    entry: Meta-SGD's)."""
    policy = tiny_policy()
    batch = synthetic_batch(policy) if steps == 1 else _two_step_batch(policy)
    learner = _learned_rate_learner(policy, [0.3, 0.2][:steps], per_parameter)
    adaptation = AdaptationSettings(lr=[0.3, 0.2][:steps], steps=steps)
    grad = _meta_gradient_of(policy, batch, adaptation, learner, monkeypatch)
    x = flat([p.detach() for p in learner.meta_parameters(policy)])
    n_theta = sum(p.numel() for p in policy.parameters())
    # 5 tensors, one rate each per step, or one per entry
    assert len(grad) == len(x) == n_theta + (n_theta if per_parameter else 5) * steps

    def value(y):
        return _rates_by_hand(policy, batch, learner.learned_lrs, y).item()

    fd = _central_difference_gradient(value, x)
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-6
    if per_parameter:  # an entry whose inner gradient is zero (a std's, say) has none
        assert (grad[n_theta:].abs() > 1e-6).float().mean() > 0.5
    else:
        assert (grad[n_theta:].abs() > 1e-6).all(), "every rate has its own gradient"
    # The rates' part is not a theta-only gradient with zeros appended: the check can fail.
    fixed = _meta_gradient_of(policy, batch, adaptation, MAML(), monkeypatch)
    assert ((fixed - fd[:n_theta]).norm() / fd[:n_theta].norm()).item() > 1e-3


@pytest.mark.parametrize("zero_rate", [False, True], ids=["", "a-zero-rate"])
@pytest.mark.parametrize(("steps", "per_parameter"), [(1, False), (2, False), (1, True), (2, True)])
def test_learned_rate_curvature_products_equal_the_exact_kl_hessian(
    steps, per_parameter, zero_rate
):
    """gauss_newton with learned rates (per tensor or per entry) is the exact KL Hessian over
    (theta, rates); so is adapted_fisher for first-order adaptation, and not for second order.
    A rate of exactly 0 (which rates pass on their way negative) changes none of it."""
    from metarl.meta_optimizers.trpo import adapted_fisher_fvp, exact_fvp, gauss_newton_fvp
    from metarl.optim import mean_kl

    policy = tiny_policy()
    batch = synthetic_batch(policy) if steps == 1 else _two_step_batch(policy)
    theta = dict(policy.named_parameters())
    for first_order in (False, True):
        learner = _learned_rate_learner(policy, [0.3, 0.2][:steps], per_parameter)
        if zero_rate:
            with torch.no_grad():
                for step in learner.learned_lrs:
                    next(iter(step.values())).view(-1)[0] = 0.0
        settings = AdaptationSettings(lr=[0.3, 0.2][:steps], steps=steps, first_order=first_order)
        params = learner.meta_parameters(policy)
        trace, mean, std = learner.adapted_stats(policy, theta, batch, settings)
        kl = mean_kl(mean.detach(), std.detach(), mean, std, batch.post.mask)
        args = (trace, mean, std, batch.post.mask, params, 1e-3)
        rates = learner.curvature_step_sizes()
        exact = exact_fvp(kl, params, 1e-3)
        gauss_newton = gauss_newton_fvp(*args, step_sizes=rates)
        adapted = adapted_fisher_fvp(*args, step_sizes=rates)
        v = torch.randn(len(flat(params)), dtype=F64, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(gauss_newton(v), exact(v), rtol=1e-6, atol=1e-10)
        if first_order:
            torch.testing.assert_close(adapted(v), exact(v), rtol=1e-6, atol=1e-10)
        else:
            assert (adapted(v) - exact(v)).norm() > 1e-2 * exact(v).norm()


@pytest.mark.parametrize("make", [TRPO, lambda: PPO(lr=1e-2, epochs=3)], ids=["trpo", "ppo"])
def test_learned_rates_move_with_the_policy(make):
    """learn_lr puts the rates in the meta-step: they leave their start, each its own way;
    without it they are not meta-parameters at all."""
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    learner = MAML(policy, 0.3, 1, learn_lr=True)
    metrics = make().step(policy, batch, AdaptationSettings(lr=0.3), learner)
    assert metrics["loss_after"] < metrics["loss_before"]
    rates = learner.metrics()
    assert sorted(rates) == sorted(f"inner_lr0/{n}" for n, _ in policy.named_parameters())
    assert all(r != 0.3 for r in rates.values()) and len(set(rates.values())) == len(rates)
    assert len(MAML(policy).meta_parameters(policy)) == len(list(policy.parameters()))
    assert MAML(policy).metrics() == {}


@pytest.mark.parametrize("make", [TRPO, lambda: PPO(lr=1e-2, epochs=3)], ids=["trpo", "ppo"])
def test_meta_sgd_rates_move_entry_by_entry(make):
    """Meta-SGD's rates have theta's shapes and the meta-step moves their entries apart (the
    inner step's direction is learned); progress.csv gets each tensor's mean rate."""
    policy = tiny_policy()
    learner = MAML(policy, 0.3, 1, learn_lr=True, per_parameter=True)
    rates = learner.learned_lrs[0]
    assert {n: r.shape for n, r in rates.items()} == {
        n: p.shape for n, p in policy.named_parameters()
    }
    make().step(policy, synthetic_batch(policy), AdaptationSettings(lr=0.3), learner)
    weight = rates["mean.0.weight"].detach()
    assert weight.std() > 0 and (weight != 0.3).float().mean() > 0.5
    assert learner.metrics()["inner_lr0/mean.0.weight"] == pytest.approx(float(weight.mean()))
    with pytest.raises(ValueError, match="needs learn_lr"):
        MAML(policy, 0.3, 1, per_parameter=True)


def test_learned_rates_of_another_shape_are_refused_on_load():
    """A per-tensor checkpoint does not load into Meta-SGD's rates (nor the reverse): copying
    would broadcast one rate over every entry without a word."""
    policy = tiny_policy()
    per_tensor = MAML(policy, 0.3, 1, learn_lr=True)
    per_entry = MAML(policy, 0.3, 1, learn_lr=True, per_parameter=True)
    for source, target in ((per_tensor, per_entry), (per_entry, per_tensor)):
        with pytest.raises(ValueError, match="other shapes"):
            target.load_state_dict(source.state_dict())


@pytest.mark.parametrize("per_parameter", [False, True])
def test_learned_rates_are_used_for_sampling_and_evaluation(per_parameter):
    """Sampling (and evaluation, which adapts through the same call) steps with the learned
    rates, tensor by tensor; past the trained steps with half the last step's rates."""
    from metarl.adaptation import compute_advantages, inner_loss
    from metarl.value_baseline import LinearFeatureBaseline

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    learner = _learned_rate_learner(policy, [0.3], per_parameter)
    settings = AdaptationSettings(lr=0.3)
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    advantages, phi = learner.adapt_for_sampling(
        policy,
        theta,
        theta,
        batch.pre,
        LinearFeatureBaseline(),
        settings,
        gamma=0.99,
        gae_lambda=1.0,
        normalize=True,
        step=0,
    )
    torch.testing.assert_close(
        advantages, compute_advantages(batch.pre, LinearFeatureBaseline(), 0.99, 1.0)
    )
    leaves = {n: p.expand(3, *p.shape).clone().requires_grad_() for n, p in theta.items()}
    grads = torch.autograd.grad(
        inner_loss(policy, leaves, batch.pre, advantages).sum(), list(leaves.values())
    )
    rates = learner.learned_lrs[0]
    for (n, p), g in zip(theta.items(), grads, strict=True):
        torch.testing.assert_close(phi[n], p - rates[n].detach() * g)
    later = learner.step_size(settings, 1)
    for n, r in rates.items():
        torch.testing.assert_close(later[n], r.detach() / 2, rtol=0, atol=0)
    assert MAML().step_size(settings, 0) == 0.3


# --- MAML++: the multi-step loss -------------------------------------------------------------


def test_multi_step_loss_weights_follow_maml_plus_plus():
    """Hand-computed from MAML++'s schedule: uniform first, the earlier steps' weights falling by
    1 / steps / iterations per iteration (floor 0.03 / steps), the last step taking the rest."""
    from metarl.meta_learners import multi_step_loss_weights

    assert [multi_step_loss_weights(2, i, 4) for i in range(5)] == [
        (0.5, 0.5),
        (0.375, 0.625),
        (0.25, 0.75),
        (0.125, 0.875),
        None,
    ]
    assert multi_step_loss_weights(3, 1, 2) == pytest.approx((1 / 6, 1 / 6, 2 / 3))
    assert multi_step_loss_weights(2, 99, 100) == pytest.approx((0.015, 0.985))  # the floor


def _multi_step_by_hand(policy, batch, lrs, weights, x: torch.Tensor, clip=None) -> torch.Tensor:
    """sum_k w_k * TRPO's surrogate (PPO's clipped one with ``clip``) of phi_k on the episodes
    sampled with phi_k (the next step's pre-adaptation batch, the post batch for the last),
    REINFORCE steps written out."""
    from metarl.adaptation import expand_params, inner_loss
    from metarl.objectives import clipped_surrogate, gaussian_log_prob, outer_surrogate

    names = [n for n, _ in policy.named_parameters()]
    like = [p.detach() for p in policy.parameters()]
    theta = dict(zip(names, unflat(x.detach().requires_grad_(), like), strict=True))
    current = expand_params(theta, batch.num_tasks)
    pres, advs = batch.pre_list, batch.pre_advantages_list
    sampled = [*zip(pres[1:], advs[1:], strict=True), (batch.post, batch.post_advantages)]
    total = torch.zeros((), dtype=F64)
    for lr, pre, adv, (episodes, advantages), w in zip(
        lrs, pres, advs, sampled, weights, strict=True
    ):
        grads = torch.autograd.grad(
            inner_loss(policy, current, pre, adv).sum(), list(current.values()), create_graph=True
        )
        current = {n: p - lr * g for (n, p), g in zip(current.items(), grads, strict=True)}
        mean, std = policy_stats(policy, current, episodes.observations)
        log_probs = gaussian_log_prob(mean, std, episodes.actions)
        args = (log_probs, episodes.log_probs, advantages, episodes.mask)
        surrogate = outer_surrogate(*args) if clip is None else clipped_surrogate(*args, clip)
        total = total + w * surrogate.mean()
    return total


def test_multi_step_loss_meta_gradient_matches_finite_differences(monkeypatch):
    """TRPO's meta-gradient of the multi-step loss against central differences in float64 of
    the weighted sum written out; the last step alone is a measurably different gradient."""
    policy = tiny_policy()
    batch = _two_step_batch(policy)
    lrs, weights = [0.3, 0.2], (0.375, 0.625)
    adaptation = AdaptationSettings(lr=lrs, steps=2, step_weights=weights)
    grad = _meta_gradient_of(policy, batch, adaptation, MAML(), monkeypatch)
    x = _flat_params(policy)
    fd = _central_difference_gradient(
        lambda y: _multi_step_by_hand(policy, batch, lrs, weights, y).item(), x
    )
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-6
    last_only = AdaptationSettings(lr=lrs, steps=2)
    plain = _meta_gradient_of(policy, batch, last_only, MAML(), monkeypatch)
    assert ((plain - fd).norm() / fd.norm()).item() > 1e-2
    # PPO's loss is the same weighted sum of its clipped surrogates.
    loss_ppo = PPO(epochs=1, clip=0.2).step(copy.deepcopy(policy), batch, adaptation)
    by_hand = _multi_step_by_hand(policy, batch, lrs, weights, x, clip=0.2).item()
    assert loss_ppo["loss_before"] == pytest.approx(by_hand, rel=1e-12)


def test_multi_step_loss_is_annealed_by_the_trainer_then_off(tmp_path, monkeypatch):
    """The trainer hands the meta-step MAML++'s weights for the first N iterations, then none."""
    adaptation = {"steps": 2, "lr": [0.1, 0.05], "multi_step_loss_iterations": 2}
    config = Config.from_dict({**NAVIGATION, "iterations": 3, "adaptation": adaptation})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    seen = [s.step_weights for s in train_seeing_settings(trainer, monkeypatch)]
    assert seen == [(0.5, 0.5), (0.25, 0.75), None]
    assert [r["last_step_weight"] for r in _rows(tmp_path / "run")] == ["0.5", "0.75", "1.0"]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        (
            {"adaptation": {"multi_step_loss_iterations": 5}},
            "adaptation.multi_step_loss_iterations",
        ),
        ({"meta_learner": "imaml", "adaptation": {"learn_lr": True}}, "adaptation.learn_lr"),
        ({"meta_learner": "reptile", "adaptation": {"learn_lr": True}}, "adaptation.learn_lr"),
        ({"meta_learner": "reptile", "tail_fraction": 0.5}, "tail_fraction"),
        ({"meta_learner": "cavia"}, "policy.context_dim"),
        (
            {
                "meta_learner": "cavia",
                "policy": {**NAVIGATION["policy"], "context_dim": 2},
                "adaptation": {"learn_lr": True},
            },
            "adaptation.learn_lr",
        ),
        (
            {
                "meta_learner": "imaml",
                "adaptation": {"steps": 2, "lr": [0.1, 0.1], "multi_step_loss_iterations": 5},
            },
            "adaptation.multi_step_loss_iterations",
        ),
    ],
)
def test_settings_a_method_cannot_honour_are_config_errors(changes, key):
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        Config.from_dict({**NAVIGATION, **changes})


# --- CAVIA -----------------------------------------------------------------------------------


def _context_policy() -> GaussianMLPPolicy:
    """A tiny policy with two context inputs, away from zero (a meta-trained start)."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, [4], "tanh", init_std=0.8, context_dim=2).to(F64)
    with torch.no_grad():
        policy.context.copy_(torch.tensor([0.3, -0.2], dtype=F64))
    return policy


def _cavia_by_hand(policy, batch, lr: float, x: torch.Tensor) -> torch.Tensor:
    """TRPO's post-adaptation surrogate after REINFORCE steps on each task's context alone, as
    a function of the flat theta ``x``."""
    from metarl.adaptation import expand_params, inner_loss
    from metarl.objectives import gaussian_log_prob, outer_surrogate

    names = [n for n, _ in policy.named_parameters()]
    chunks = unflat(x.detach().requires_grad_(), [p.detach() for p in policy.parameters()])
    current = expand_params(dict(zip(names, chunks, strict=True)), batch.num_tasks)
    for pre, advantages in zip(batch.pre_list, batch.pre_advantages_list, strict=True):
        losses = inner_loss(policy, current, pre, advantages)
        (grad,) = torch.autograd.grad(losses.sum(), [current["context"]], create_graph=True)
        current = {**current, "context": current["context"] - lr * grad}
    mean, std = policy_stats(policy, current, batch.post.observations)
    post = batch.post
    log_probs = gaussian_log_prob(mean, std, post.actions)
    return outer_surrogate(log_probs, post.log_probs, batch.post_advantages, post.mask).mean()


def test_cavia_adapts_each_tasks_context_alone():
    policy = _context_policy()
    batch = synthetic_batch(policy)
    theta = params_of(policy)
    trace, _, _ = CAVIA(policy, lr=0.7).adapted_stats(policy, theta, batch, AdaptationSettings())
    phi = trace[-1]
    from metarl.adaptation import expand_params, inner_loss

    expanded = expand_params({n: p.detach() for n, p in theta.items()}, batch.num_tasks)
    for name, value in phi.items():
        if name != "context":
            assert torch.equal(value.detach(), expanded[name]), name
    context = expanded["context"].clone().requires_grad_()
    losses = inner_loss(policy, {**expanded, "context": context}, batch.pre, batch.pre_advantages)
    (grad,) = torch.autograd.grad(losses.sum(), [context])
    torch.testing.assert_close(phi["context"].detach(), expanded["context"] - 0.7 * grad)
    assert grad.abs().min() > 0 and not torch.allclose(grad[0], grad[1])  # one per task


@pytest.mark.parametrize("steps", [1, 2])
def test_cavia_meta_gradient_matches_finite_differences(monkeypatch, steps):
    """TRPO's meta-gradient through the context steps, second order, against central
    differences in float64 of the post-adaptation surrogate written out by hand."""
    policy = _context_policy()
    batch = synthetic_batch(policy) if steps == 1 else _two_step_batch(policy)
    adaptation = AdaptationSettings(lr=[0.3, 0.2][:steps], steps=steps)
    grad = _meta_gradient_of(policy, batch, adaptation, CAVIA(policy, lr=0.7), monkeypatch)
    x = flat([p.detach() for p in policy.parameters()])
    fd = _central_difference_gradient(lambda y: _cavia_by_hand(policy, batch, 0.7, y).item(), x)
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-6
    # Not MAML's meta-gradient (every tensor stepped): the check can fail.
    maml = _meta_gradient_of(policy, batch, adaptation, MAML(), monkeypatch)
    assert ((maml - fd).norm() / fd.norm()).item() > 1e-2


def test_cavia_steps_its_context_and_a_policy_without_one_takes_mamls_step():
    settings = AdaptationSettings(lr=0.1)
    learner = CAVIA(_context_policy(), lr=10.0)
    assert learner.step_size(settings, 0) == {"context": 10.0}
    assert learner.step_size(settings, 1) == {"context": 5.0}  # later steps: half, as MAML's
    plain = CAVIA(tiny_policy(), lr=10.0)  # a baseline evaluated beside a CAVIA run
    assert [plain.step_size(settings, k) for k in (0, 1)] == [0.1, 0.05]


# --- the tail of the task distribution (tail_fraction) ------------------------------------


def test_tail_weights_average_the_tasks_of_lowest_return():
    returns = torch.tensor([3.0, -1.0, 2.0, -5.0], dtype=F64)
    assert torch.equal(tail_weights(returns, 1.0), torch.full((4,), 0.25, dtype=F64))
    assert torch.equal(tail_weights(returns, 0.5), torch.tensor([0, 0.5, 0, 0.5], dtype=F64))
    third = 1.0 / 3.0  # ceil(0.6 * 4) = 3 tasks
    assert torch.equal(
        tail_weights(returns, 0.6), torch.tensor([0, third, third, third], dtype=F64)
    )
    assert torch.equal(tail_weights(returns, 0.01), torch.tensor([0, 0, 0, 1.0], dtype=F64))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            tail_weights(returns, bad)


def test_a_tail_meta_step_is_the_plain_step_on_the_tail_tasks_alone(monkeypatch):
    """With ``tail_fraction`` the meta-gradient is the plain one on the meta-batch cut to the
    tasks of lowest post-adaptation return, and PPO's whole step equals the step on those tasks
    (TRPO keeps its trust region and curvature on every task's adapted policy)."""
    policy = tiny_policy()
    batch = synthetic_batch(policy, seed=3)  # the two lowest returns are tasks 1 and 2
    returns = batch.post.episode_returns.mean(dim=-1)
    tail = torch.sort(returns).indices[:2]  # ceil(0.5 * 3) tasks
    assert tail.tolist() == [1, 2]
    on_tail, plain = AdaptationSettings(lr=0.3, tail_fraction=0.5), AdaptationSettings(lr=0.3)
    grad_tail = _meta_gradient_of(policy, batch, on_tail, MAML(), monkeypatch)
    grad_cut = _meta_gradient_of(policy, batch.select(tail), plain, MAML(), monkeypatch)
    grad_all = _meta_gradient_of(policy, batch, plain, MAML(), monkeypatch)
    assert torch.allclose(grad_tail, grad_cut, rtol=1e-10, atol=1e-14)
    assert ((grad_tail - grad_all).norm() / grad_all.norm()).item() > 1e-2
    whole, cut = copy.deepcopy(policy), copy.deepcopy(policy)
    metrics_tail = PPO(epochs=2).step(whole, batch, on_tail)
    metrics_cut = PPO(epochs=2).step(cut, batch.select(tail), plain)
    assert metrics_tail["loss_after"] == pytest.approx(metrics_cut["loss_after"], rel=1e-10)
    assert torch.allclose(_flat_params(whole), _flat_params(cut), rtol=0, atol=1e-12)


def test_the_trainer_hands_the_configs_tail_fraction_to_the_meta_step(tmp_path, monkeypatch):
    config = Config.from_dict({**NAVIGATION, "iterations": 1, "tail_fraction": 0.25})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert [s.tail_fraction for s in train_seeing_settings(trainer, monkeypatch)] == [0.25]


# --- every method in the trainer: runs, resumes exactly, learns -------------------------------

METHODS = {
    "imaml": {"meta_learner": "imaml"},
    "maml-learned-lr": {
        "adaptation": {"steps": 2, "lr": [0.1, 0.05], "learn_lr": True},
        "meta_optimizer": {"name": "trpo", "fvp": "gauss_newton"},
    },
    "maml++": {
        "adaptation": {
            "steps": 2,
            "lr": [0.1, 0.1],
            "learn_lr": True,
            "multi_step_loss_iterations": 2,
        },
    },
    "maml-learned-lr-ppo": {
        "adaptation": {"learn_lr": True},
        "meta_optimizer": {"name": "ppo", "epochs": 2},
    },
    # Meta-SGD: one learned rate per parameter entry, under TRPO's curvature and PPO's Adam.
    "meta-sgd": {
        "adaptation": {"learn_lr": True, "learn_lr_per_parameter": True},
        "meta_optimizer": {"name": "trpo", "fvp": "gauss_newton"},
    },
    "meta-sgd-ppo": {
        "adaptation": {"learn_lr": True, "learn_lr_per_parameter": True},
        "meta_optimizer": {"name": "ppo", "epochs": 2},
    },
    "reptile": {"meta_learner": "reptile"},
    # The meta-loss over the half of each meta-batch's tasks that adapt worst (DR-MAML's tail).
    "maml-tail": {"tail_fraction": 0.5, "meta_optimizer": {"name": "ppo", "epochs": 2}},
    # CAVIA: the inner step adapts two context inputs alone.
    "cavia": {
        "meta_learner": "cavia",
        "policy": {**NAVIGATION["policy"], "context_dim": 2},
        "cavia": {"lr": 1.0},
    },
    # The comparison's other methods (experiments/configs/variants/): MAML's own loop with
    # another estimator, optimizer, derivative order or number of steps.
    "emaml": {"objective": "emaml"},
    "promp": {
        "objective": "lvc",
        "meta_optimizer": {"name": "ppo", "epochs": 2, "inner_kl_coeff": 5e-4},
    },
    "fo-maml-3step": {"adaptation": {"steps": 3, "lr": [0.1, 0.1, 0.1], "first_order": True}},
    "reptile-adam": {"meta_learner": "reptile", "reptile": {"optimizer": "adam", "epsilon": 0.01}},
}


def _config(method: str, **changes):
    data = {**copy.deepcopy(NAVIGATION), **copy.deepcopy(METHODS[method]), **changes}
    return Config.from_dict(data)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_trains_and_resumes_exactly(tmp_path, method):
    """Three iterations straight, or two then a resume: the same rows and final state (Adam's
    moments and learned rates included, where the method has them)."""
    config = _config(method, iterations=3)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    before = _flat_params(straight.policy)
    straight.train()
    assert not torch.equal(_flat_params(straight.policy), before), "the meta-step moves theta"
    Trainer(_config(method, iterations=2), tmp_path / "split", progress=False).train()
    Trainer(config, tmp_path / "split", resume=True, progress=False).train()
    full, split = _rows(tmp_path / "straight"), _rows(tmp_path / "split")
    assert [r["iteration"] for r in split] == ["0", "1", "2"]
    drop = {"time_s", "sampling_s", "adaptation_s", "meta_optimization_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in full] == [
        {k: v for k, v in r.items() if k not in drop} for r in split
    ]
    end_full, end_split = (
        load_checkpoint(tmp_path / "straight"),
        load_checkpoint(tmp_path / "split"),
    )
    for name, value in end_full["policy"].items():
        assert torch.equal(end_split["policy"][name], value), name
    assert _same(end_full["meta_learner"], end_split["meta_learner"])


def _same(a, b) -> bool:
    """Equal nested checkpoint data, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_learned_rate_run_is_evaluated_with_its_learned_rates(tmp_path):
    """progress.csv and the checkpoint show the rates; Run.adapt (and so evaluate and render,
    which share adaptation_curve) adapts with them, not with the config's starting rate."""
    from metarl.api import load_run
    from metarl.evaluation import adaptation_curve
    from metarl.sampling import make_sampler

    config = _config("maml-learned-lr", iterations=2)
    Trainer(config, tmp_path / "run", progress=False).train()
    row = _rows(tmp_path / "run")[-1]
    state = load_checkpoint(tmp_path / "run")
    saved = state["meta_learner"]["learned_lrs"]
    assert [float(r) for r in saved[1].values()] == [float(row[f"inner_lr1/{n}"]) for n in saved[1]]
    assert all(float(r) != 0.05 for r in saved[1].values()), "the rates were meta-trained"
    run = load_run(tmp_path / "run")
    task = {"goal": [0.3, -0.2]}
    adapted = run.adapt(task, episodes=3, steps=2, seed=4)
    c = run.config
    with make_sampler(c.env, 1, 3, c.horizon, c.sampler, c.env_kwargs) as sampler:
        _, fresh = adaptation_curve(run.policy, sampler, [task], 2, c, 4)  # starting rates
    assert any(not torch.equal(adapted.params[n], fresh[-1][n][0]) for n in adapted.params)


SMALL = ["iterations=12", "tasks_per_batch=20", "episodes_per_task=10"]
SMALLER = [
    "iterations=8",
    "tasks_per_batch=10",
    "episodes_per_task=10",
    "policy.hidden_sizes=[32,32]",
]
LEARNING = {
    # method: (overrides of the shipped Navigation2D config, the gain the mean post-adaptation
    # return of the last 3 iterations must have over the first iteration's). The sizes keep
    # each run under ~30 s; the gains seen were 20-25 (reptile, seeds 0-2), 53-71 (imaml, seeds
    # 0-2), 69 (learned rates, seed 0), 62-68 (maml++, seeds 0-1), 64-70 (cavia, seeds 0-1).
    "reptile": (["meta_learner=reptile", *SMALL], 10.0),
    # CAVIA's Navigation2D context and step (5 inputs, lr 1).
    "cavia": (
        ["meta_learner=cavia", "policy.context_dim=5", "cavia.lr=1.0", *SMALLER],
        30.0,
    ),
    "imaml": (["meta_learner=imaml", *SMALLER], 30.0),
    "maml-learned-lr": (["adaptation.learn_lr=true", *SMALLER], 30.0),
    "meta-sgd": (
        ["adaptation.learn_lr=true", "adaptation.learn_lr_per_parameter=true", *SMALLER],
        30.0,
    ),
    "maml++": (
        [
            "adaptation.learn_lr=true",
            "adaptation.steps=2",
            "adaptation.lr=[0.1,0.1]",
            "adaptation.multi_step_loss_iterations=4",
            *SMALLER,
        ],
        30.0,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(LEARNING))
def test_each_method_learns_on_navigation(tmp_path, method):
    """The post-adaptation return rises clearly within a few small iterations."""
    overrides, gain = LEARNING[method]
    config = load_config(CONFIGS / "navigation2d.yaml", overrides)
    Trainer(config, tmp_path / "run", progress=False).train()
    rows = _rows(tmp_path / "run")
    first = float(rows[0]["return_post"])
    last = sum(float(r["return_post"]) for r in rows[-3:]) / 3
    assert last > first + gain, (first, last)
