"""CG, Hessian-vector products, the line search, the three Fisher products, TRPO and PPO."""

from __future__ import annotations

import copy

import pytest
import torch

import metarl.meta_optimizers.ppo as ppo_module
from metarl.adaptation import AdaptationSettings, adapt_steps, normalize_advantages, policy_stats
from metarl.episodes import Episodes
from metarl.meta_optimizers import (
    PPO,
    TRPO,
    PPOConfig,
    TRPOConfig,
    backtracking_line_search,
    conjugate_gradient,
    hessian_vector_product,
    make_meta_optimizer,
)
from metarl.meta_optimizers.trpo import adapted_fisher_fvp, exact_fvp, gauss_newton_fvp
from metarl.objectives import OBJECTIVES, MetaBatch
from metarl.optim import flat, mean_kl, unflat
from metarl.policies import GaussianMLPPolicy, params_of

F64 = torch.float64


def tiny_policy(seed: int = 0) -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    return GaussianMLPPolicy(3, 2, [4], "tanh", init_std=0.8).to(F64)


def synthetic_batch(policy: GaussianMLPPolicy, lr: float = 0.3, seed: int = 0) -> MetaBatch:
    """Pre episodes from theta, post episodes from the adapted phi, random advantages."""
    g = torch.Generator().manual_seed(seed)
    tasks, steps, episodes = 3, 5, 4

    def sample(params) -> Episodes:
        obs = torch.randn(tasks, steps, episodes, 3, generator=g, dtype=F64)
        ends = torch.randint(1, steps + 1, (tasks, 1, episodes), generator=g)
        ends[..., 0] = steps
        ends[..., 1] = 2
        mask = (torch.arange(steps).view(1, steps, 1) < ends).to(F64)
        with torch.no_grad():
            mean, std = policy_stats(policy, params, obs)
            actions = mean + std * torch.randn(mean.shape, generator=g, dtype=F64)
            dist = torch.distributions.Normal(mean, std)
            log_probs = dist.log_prob(actions).sum(-1)
        rewards = torch.randn(tasks, steps, episodes, generator=g, dtype=F64)
        pad = mask.unsqueeze(-1)
        return Episodes(obs * pad, actions * pad, rewards * mask, mask, log_probs * mask)

    theta = {n: p.detach() for n, p in params_of(policy).items()}
    pre = sample(theta)
    pre_adv = normalize_advantages(torch.randn(pre.rewards.shape, generator=g, dtype=F64), pre.mask)
    with torch.no_grad():
        phi = adapt_steps(policy, theta, pre, pre_adv, lr)[-1]
    post = sample(phi)
    post_adv = normalize_advantages(
        torch.randn(post.rewards.shape, generator=g, dtype=F64), post.mask
    )
    return MetaBatch(pre, post, pre_adv, post_adv)


# --- conjugate gradient, Hessian-vector product, line search --------------------------------


def test_conjugate_gradient_solves_a_random_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(8, 8, generator=g, dtype=F64)
    a = m @ m.T + 0.5 * torch.eye(8, dtype=F64)
    b = torch.randn(8, generator=g, dtype=F64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=8, residual_tol=1e-30)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    # Too few iterations leave a visible error (the check can fail).
    x2 = conjugate_gradient(lambda v: a @ v, b, iters=2)
    assert (a @ x2 - b).norm() > 1e-3


def test_conjugate_gradient_stops_on_small_residual():
    calls = []

    def identity(v):
        calls.append(1)
        return v

    b = torch.ones(5, dtype=F64)
    torch.testing.assert_close(conjugate_gradient(identity, b, iters=10), b)
    assert len(calls) == 1


def test_hessian_vector_product_matches_autograd_hessian():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, generator=g, dtype=F64, requires_grad=True)
    c = torch.randn(4, generator=g, dtype=F64, requires_grad=True)

    def f(w, c):
        return (torch.tanh(w).sum(1) ** 2).sum() * c.exp().sum() + (w[0, 0] * c[1]) ** 3

    product = hessian_vector_product(f(w, c), [w, c], damping=0.1)
    full = torch.autograd.functional.hessian(f, (w, c))
    n = w.numel() + c.numel()
    blocks = [
        [full[i][j].reshape(t.numel(), s.numel()) for j, s in enumerate((w, c))]
        for i, t in enumerate((w, c))
    ]
    hessian = torch.cat([torch.cat(row, 1) for row in blocks], 0)
    for seed in range(2):
        v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
        torch.testing.assert_close(product(v), hessian @ v + 0.1 * v)


def _quadratic_problem(kl_scale: float):
    """A parameter p, loss (p - 1)^2 and KL = kl_scale * p^2, starting at p = 0."""
    p = torch.zeros(1, dtype=F64)

    def evaluate():
        return float((p - 1.0).square().sum()), float(kl_scale * p.square().sum())

    return p, evaluate


def test_line_search_accepts_the_full_step_when_it_improves_within_the_trust_region():
    p, evaluate = _quadratic_problem(kl_scale=0.01)
    result = backtracking_line_search([p], torch.ones(1, dtype=F64), evaluate, 1.0, max_kl=0.1)
    assert result.fraction == 1.0 and result.steps == 1
    assert p.item() == 1.0 and result.loss == 0.0


def test_line_search_backtracks_until_the_kl_fits():
    # KL = p^2 must be <= 0.25, so p = 1 * 0.5^k first fits at k = 1 (p = 0.5).
    p, evaluate = _quadratic_problem(kl_scale=1.0)
    result = backtracking_line_search(
        [p], torch.ones(1, dtype=F64), evaluate, 1.0, max_kl=0.25, backtrack_ratio=0.5
    )
    assert result.fraction == 0.5 and result.steps == 2
    assert p.item() == 0.5 and result.kl <= 0.25


def test_line_search_rejects_a_worse_surrogate_and_restores_params():
    # Stepping away from the minimum at 1 never improves the loss.
    p, evaluate = _quadratic_problem(kl_scale=0.0)
    p += 0.0
    result = backtracking_line_search(
        [p], -torch.ones(1, dtype=F64), evaluate, 1.0, max_kl=1.0, max_steps=5
    )
    assert result.fraction is None and result.steps == 5
    assert p.item() == 0.0


def test_line_search_rejects_when_the_kl_never_fits_and_restores_params():
    p, evaluate = _quadratic_problem(kl_scale=1e6)
    result = backtracking_line_search(
        [p], torch.ones(1, dtype=F64), evaluate, 1.0, max_kl=1e-3, max_steps=4, backtrack_ratio=0.5
    )
    assert result.fraction is None and p.item() == 0.0


# --- the three curvature products -----------------------------------------------------------


def _products(objective: str, steps: int, first_order: bool):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    theta = params_of(policy)
    params = list(theta.values())
    trace = adapt_steps(
        policy,
        theta,
        batch.pre,
        batch.pre_advantages,
        [0.3, 0.2][:steps],
        steps,
        first_order,
        objective,
    )
    mean, std = policy_stats(policy, trace[-1], batch.post.observations)
    kl = mean_kl(mean.detach(), std.detach(), mean, std, batch.post.mask)
    args = (trace, mean, std, batch.post.mask, params, 1e-3)
    fvps = exact_fvp(kl, params, 1e-3), gauss_newton_fvp(*args), adapted_fisher_fvp(*args)
    v = torch.randn(
        sum(p.numel() for p in params), dtype=F64, generator=torch.Generator().manual_seed(3)
    )
    return [f(v) for f in fvps]


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_gauss_newton_product_equals_the_exact_kl_hessian_at_the_current_point(objective, steps):
    exact, gauss_newton, adapted = _products(objective, steps, first_order=False)
    torch.testing.assert_close(gauss_newton, exact, rtol=1e-6, atol=1e-10)
    # The first-order approximation differs: the check above can fail.
    assert (adapted - exact).norm() > 1e-2 * exact.norm()


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_adapted_fisher_equals_exact_for_first_order_maml(objective):
    exact, gauss_newton, adapted = _products(objective, 1, first_order=True)
    torch.testing.assert_close(adapted, exact, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(gauss_newton, exact, rtol=1e-6, atol=1e-10)


# --- TRPO and PPO steps ----------------------------------------------------------------------


def _flat_params(policy) -> torch.Tensor:
    return flat([p.detach() for p in policy.parameters()]).clone()


def _measured_kl(
    policy, before: dict, batch: MetaBatch, adaptation: AdaptationSettings, reverse: bool = False
) -> float:
    """Mean KL(before || now) between the post-adaptation policies of ``before`` and of the
    current params; KL(now || before) with ``reverse``."""

    def stats(params):
        phi = adapt_steps(
            policy,
            params,
            batch.pre,
            batch.pre_advantages,
            adaptation.lr,
            adaptation.steps,
            True,
            adaptation.objective,
        )[-1]
        with torch.no_grad():
            return policy_stats(policy, phi, batch.post.observations)

    old_mean, old_std = stats(before)
    mean, std = stats({n: p.detach() for n, p in params_of(policy).items()})
    if reverse:
        return mean_kl(mean, std, old_mean, old_std, batch.post.mask).item()
    return mean_kl(old_mean, old_std, mean, std, batch.post.mask).item()


@pytest.mark.parametrize("fvp", ["exact", "gauss_newton", "adapted_fisher"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_trpo_step_improves_the_surrogate_within_the_trust_region(objective, fvp):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    adaptation = AdaptationSettings(lr=0.3, objective=objective)
    before = {n: p.detach().clone() for n, p in params_of(policy).items()}
    optimizer = TRPO(max_kl=0.01, fvp=fvp)
    metrics = optimizer.step(policy, batch, adaptation)
    assert metrics["step_fraction"] > 0
    assert not torch.equal(_flat_params(policy), flat(list(before.values())))
    assert metrics["loss_after"] < metrics["loss_before"]
    assert 0 < metrics["kl"] <= 0.01
    measured = _measured_kl(policy, before, batch, adaptation)
    assert measured == pytest.approx(metrics["kl"], rel=1e-9)
    assert {"loss_before", "loss_after", "kl", "ls_steps"} <= set(metrics)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_ppo_step_changes_params_and_lowers_the_clipped_surrogate(objective):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    adaptation = AdaptationSettings(lr=0.3, objective=objective)
    before = _flat_params(policy)
    metrics = PPO(lr=1e-2, epochs=3, inner_kl_coeff=5e-4).step(policy, batch, adaptation)
    assert not torch.equal(_flat_params(policy), before)
    assert metrics["loss_after"] < metrics["loss_before"]
    assert metrics["kl"] > 0 and metrics["inner_kl"] > 0


def _ppo_step(**settings):
    """One PPO step with ``settings`` from the same policy and batch: (metrics, params after)."""
    policy = tiny_policy()
    metrics = PPO(lr=0.1, **settings).step(
        policy, synthetic_batch(policy), AdaptationSettings(lr=0.3)
    )
    return metrics, _flat_params(policy)


def test_ppo_target_kl_stops_the_epochs_early_as_sb3_does():
    """stable-baselines3's ``target_kl``: once the approximate KL from the sampling policies
    passes 1.5 * target_kl, no more epochs. A tiny bound stops after the first (the same step
    as epochs=1); a loose one changes nothing; without it no ``epochs`` metric is logged."""
    free, free_after = _ppo_step(epochs=3)
    assert "epochs" not in free
    tight, tight_after = _ppo_step(epochs=3, target_kl=1e-12)
    one, one_after = _ppo_step(epochs=1)
    assert tight["epochs"] == 1.0
    assert torch.equal(tight_after, one_after) and tight["kl"] == one["kl"]
    loose, loose_after = _ppo_step(epochs=3, target_kl=1e9)
    assert loose["epochs"] == 3.0
    assert torch.equal(loose_after, free_after)
    assert not torch.equal(free_after, one_after)  # the stop made a difference
    with pytest.raises(ValueError, match="target_kl"):
        PPO(target_kl=-0.1)


def _trpo_meta_gradient(monkeypatch, policy, batch, adaptation, **settings) -> torch.Tensor:
    """The meta-gradient TRPO.step computes: the right-hand side it hands to CG.

    ``policy`` is left unchanged: the step runs on a copy.
    """
    import metarl.meta_optimizers.trpo as trpo_module

    seen = []
    real = trpo_module.conjugate_gradient

    def spy(fvp, b, *args, **kwargs):
        seen.append(b.detach().clone())
        return real(fvp, b, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trpo_module, "conjugate_gradient", spy)
        metrics = TRPO(**settings).step(copy.deepcopy(policy), batch, adaptation)
    (grad,) = seen
    assert metrics["grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-12)
    return grad


def _by_hand_meta_gradient(policy, batch: MetaBatch, lrs, first_order: bool) -> torch.Tensor:
    """The MAML meta-gradient written out: REINFORCE steps from theta on each step's episodes,
    the inner gradient detached in the update when first-order, TRPO's surrogate at phi."""
    theta = params_of(policy)
    pres, advs = batch.pre_list, batch.pre_advantages_list
    if len(pres) == 1:  # one batch that every step reuses
        pres, advs = pres * len(lrs), advs * len(lrs)
    current = {n: p.expand(batch.num_tasks, *p.shape) for n, p in theta.items()}
    for lr, pre, adv in zip(lrs, pres, advs, strict=True):
        mean, std = policy_stats(policy, current, pre.observations)
        log_probs = torch.distributions.Normal(mean, std).log_prob(pre.actions).sum(-1)
        losses = -(log_probs * adv * pre.mask).sum((-2, -1)) / pre.mask.sum((-2, -1))
        grads = torch.autograd.grad(losses.sum(), list(current.values()), create_graph=True)
        if first_order:
            grads = [g.detach() for g in grads]
        current = {n: p - lr * g for (n, p), g in zip(current.items(), grads, strict=True)}
    post = batch.post
    mean, std = policy_stats(policy, current, post.observations)
    log_probs = torch.distributions.Normal(mean, std).log_prob(post.actions).sum(-1)
    ratio = torch.exp((log_probs - post.log_probs) * post.mask)
    per_task = -(ratio * batch.post_advantages * post.mask).sum((-2, -1)) / post.mask.sum((-2, -1))
    return flat(list(torch.autograd.grad(per_task.mean(), list(theta.values()))))


def test_trpo_meta_gradient_is_first_order_over_both_steps(monkeypatch):
    """first_order and steps change TRPO's meta-gradient to exactly the intended one; the
    reference differs from the second-order and the one-step gradients, so a TRPO that
    ignored either setting would fail here."""
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    lrs = [0.3, 0.1]
    adaptation = AdaptationSettings(lr=lrs, steps=2, first_order=True)
    grad = _trpo_meta_gradient(monkeypatch, policy, batch, adaptation, fvp="adapted_fisher")
    expected = _by_hand_meta_gradient(policy, batch, lrs, first_order=True)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)
    second_order = _by_hand_meta_gradient(policy, batch, lrs, first_order=False)
    one_step = _by_hand_meta_gradient(policy, batch, lrs[:1], first_order=True)
    for other in (second_order, one_step):
        assert (other - expected).norm() > 1e-3 * expected.norm()
    metrics = TRPO(fvp="adapted_fisher").step(policy, batch, adaptation)
    assert metrics["kl"] <= 0.01 and metrics["loss_after"] < metrics["loss_before"]


def _two_step_batch(policy) -> MetaBatch:
    """Step 2 adapts on its own episodes (as the trainer samples them for several steps)."""
    first, second = synthetic_batch(policy, seed=0), synthetic_batch(policy, seed=1)
    return MetaBatch(
        (first.pre, second.pre),
        first.post,
        (first.pre_advantages, second.pre_advantages),
        first.post_advantages,
    )


@pytest.mark.parametrize("steps", [1, 2])
def test_trpo_meta_gradient_matches_finite_differences_of_its_own_loss(monkeypatch, steps):
    """The gradient TRPO.step follows against central differences of the loss TRPO.step
    reports (``loss_before``), in float64: one inner step, and two on fresh episodes."""
    policy = tiny_policy()
    batch = synthetic_batch(policy) if steps == 1 else _two_step_batch(policy)
    adaptation = AdaptationSettings(lr=[0.3, 0.2][:steps], steps=steps)
    grad = _trpo_meta_gradient(monkeypatch, policy, batch, adaptation)
    theta = _flat_params(policy)
    cheap = {"cg_iters": 1, "ls_max_steps": 1}  # only the loss before the step is read

    def loss_at(x: torch.Tensor) -> float:
        moved = tiny_policy()
        with torch.no_grad():
            for p, chunk in zip(
                moved.parameters(), unflat(x, list(moved.parameters())), strict=True
            ):
                p.copy_(chunk)
        return TRPO(**cheap).step(moved, batch, adaptation)["loss_before"]

    eps = 1e-6
    basis = torch.eye(len(theta), dtype=F64)
    fd = torch.tensor(
        [(loss_at(theta + eps * e) - loss_at(theta - eps * e)) / (2 * eps) for e in basis]
    )
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-6
    # The first-order gradient is measurably different: the check can fail.
    first_order = AdaptationSettings(lr=adaptation.lr, steps=steps, first_order=True)
    fo = _trpo_meta_gradient(monkeypatch, policy, batch, first_order)
    assert ((fo - fd).norm() / fd.norm()).item() > 1e-3


@pytest.mark.parametrize("make", [lambda: TRPO(), lambda: PPO()])
def test_nan_in_the_batch_raises_and_leaves_params_unchanged(make):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    post_adv = batch.post_advantages.clone()
    post_adv[0, 0, 0] = float("nan")
    bad = MetaBatch(batch.pre, batch.post, batch.pre_advantages, post_adv)
    before = _flat_params(policy)
    with pytest.raises(FloatingPointError, match="post_advantages"):
        make().step(policy, bad, AdaptationSettings(lr=0.3))
    assert torch.equal(_flat_params(policy), before)


@pytest.mark.parametrize("make", [lambda: TRPO(), lambda: PPO()])
def test_nan_parameter_raises(make):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    with torch.no_grad():
        policy.log_std[0] = float("inf")
    with pytest.raises(FloatingPointError, match="policy parameters"):
        make().step(policy, batch, AdaptationSettings(lr=0.3))


def test_ppo_restores_params_and_adam_when_a_later_epoch_goes_nan(monkeypatch):
    policy = tiny_policy()
    batch = synthetic_batch(policy)
    optimizer = PPO(epochs=3)
    optimizer.step(policy, batch, AdaptationSettings(lr=0.3))  # Adam now has moments
    before, state = _flat_params(policy), optimizer.state_dict()
    calls = []
    real = ppo_module.clipped_surrogate

    def poisoned(*args, **kwargs):
        calls.append(1)
        value = real(*args, **kwargs)
        return value * float("nan") if len(calls) == 2 else value

    monkeypatch.setattr(ppo_module, "clipped_surrogate", poisoned)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        optimizer.step(policy, batch, AdaptationSettings(lr=0.3))
    assert torch.equal(_flat_params(policy), before)
    after = optimizer.state_dict()["adam"]["state"]
    for key, value in state["adam"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(after[key][name], value[name])


def _continue_a_ppo(start) -> tuple[PPO, PPO, GaussianMLPPolicy]:
    """A PPO that stepped once; a second PPO given its state by ``start(second, state,
    count)``; both then step copies of the policy on the same batch and must land on the same
    parameters, where a fresh Adam, without the moments, lands elsewhere (the check can fail).
    Returns the two optimizers and the first's policy."""
    policy_a, policy_b, policy_c = tiny_policy(), tiny_policy(), tiny_policy()
    batch = synthetic_batch(policy_a)
    adaptation = AdaptationSettings(lr=0.3)
    first = PPO(lr=1e-2, epochs=2)
    first.step(policy_a, batch, adaptation)
    policy_b.load_state_dict(policy_a.state_dict())
    policy_c.load_state_dict(policy_a.state_dict())
    second = PPO(lr=1e-2, epochs=2)
    start(second, first.state_dict(), len(list(policy_a.parameters())))  # before its Adam exists
    first.step(policy_a, batch, adaptation)
    second.step(policy_b, batch, adaptation)
    assert torch.equal(_flat_params(policy_a), _flat_params(policy_b))
    PPO(lr=1e-2, epochs=2).step(policy_c, batch, adaptation)
    assert not torch.allclose(_flat_params(policy_c), _flat_params(policy_a))
    return first, second, policy_a


def test_ppo_state_dict_round_trip_gives_identical_steps():
    _, second, _ = _continue_a_ppo(lambda ppo, state, count: ppo.load_state_dict(state))
    assert second.num_steps == 2  # the source's step and its own


def test_trpo_state_dict_round_trip():
    policy = tiny_policy()
    optimizer = TRPO()
    optimizer.step(policy, synthetic_batch(policy), AdaptationSettings(lr=0.3))
    restored = TRPO()
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict() == optimizer.state_dict() == {"num_steps": 1, "num_skipped": 0}


def test_make_meta_optimizer_from_configs_and_mappings():
    trpo = make_meta_optimizer(TRPOConfig(max_kl=0.02, fvp="exact"))
    assert isinstance(trpo, TRPO) and trpo.max_kl == 0.02 and trpo.fvp == "exact"
    ppo = make_meta_optimizer(PPOConfig(clip=0.2))
    assert isinstance(ppo, PPO) and ppo.clip == 0.2
    assert make_meta_optimizer({"name": "ppo", "epochs": 3}).epochs == 3
    # Checked once, by the config, with its dotted-key messages.
    with pytest.raises(ValueError, match=r"meta_optimizer\.clip: unknown key"):
        make_meta_optimizer({"name": "trpo", "clip": 0.2})
    with pytest.raises(ValueError, match=r"meta_optimizer\.name: unknown meta optimizer 'sgd'"):
        make_meta_optimizer({"name": "sgd"})
    with pytest.raises(ValueError, match=r"fvp: must be one of"):
        TRPO(fvp="diagonal")
    assert TRPO(TRPOConfig(max_kl=0.05), cg_iters=3).config == TRPOConfig(max_kl=0.05, cg_iters=3)


def test_cg_subsample_estimates_the_curvature_on_a_share_of_the_tasks(monkeypatch):
    """cg_subsample=1 is the full curvature; a share uses those tasks' episodes only."""
    import metarl.meta_optimizers.trpo as trpo_module

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    seen = []
    real = trpo_module.gauss_newton_fvp

    def spy(trace, mean, std, mask, params, damping):
        seen.append(mask.shape[0])
        return real(trace, mean, std, mask, params, damping)

    monkeypatch.setitem(trpo_module.CURVATURE_PRODUCTS, "gauss_newton", spy)
    full, half = tiny_policy(), tiny_policy()
    adaptation = AdaptationSettings(lr=0.3)
    TRPO(cg_subsample=1.0).step(full, batch, adaptation)
    metrics = TRPO(cg_subsample=0.5).step(half, batch, adaptation)
    assert seen == [3, 2]  # 3 tasks; round(0.5 * 3) = 2 of them for the subsample
    assert 0 < metrics["kl"] <= 0.01  # the line search still checks the KL on every task
    moved = [
        not torch.equal(a, b) for a, b in zip(full.parameters(), half.parameters(), strict=True)
    ]
    assert any(moved), "a different curvature estimate gives a different step"
    with pytest.raises(ValueError, match="cg_subsample"):
        TRPO(cg_subsample=0.0)


def test_emaml_adds_the_exploration_gradient_to_the_meta_step():
    """objective: emaml = MAML's meta-gradient plus the pre-episodes' exploration term."""
    from metarl.adaptation import exploration_loss

    policy = tiny_policy()
    batch = synthetic_batch(policy)
    theta = params_of(policy)
    maml, emaml = AdaptationSettings(lr=0.3), AdaptationSettings(lr=0.3, objective="emaml")
    assert exploration_loss(policy, theta, batch, maml).item() == 0.0
    term = exploration_loss(policy, theta, batch, emaml)
    assert term.item() == pytest.approx(0.0, abs=1e-12)  # weights have zero mean across tasks
    grads = torch.autograd.grad(term, list(theta.values()))
    assert any(g.abs().sum() > 0 for g in grads), "the term moves theta"
    a, b = tiny_policy(), tiny_policy()
    TRPO().step(a, batch, maml)
    metrics = TRPO().step(b, batch, emaml)
    assert metrics["step_fraction"] > 0
    assert not torch.equal(_flat_params(a), _flat_params(b))
