"""The meta-training loop: every optimizer and objective, resume, checkpoints, failures."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, tiny_navigation_config, train_seeing_settings

from metarl.cli import main
from metarl.config import ConfigError, load_config, save_config
from metarl.meta_optimizers import PPOConfig, TRPOConfig
from metarl.trainer import (
    CheckpointError,
    Trainer,
    TrainingDiverged,
    iteration_seeds,
    load_checkpoint,
    load_policy,
)

tiny = tiny_navigation_config


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("objective", ["maml", "dice", "lvc"])
@pytest.mark.parametrize("optimizer", [TRPOConfig(), PPOConfig(epochs=2)], ids=["trpo", "ppo"])
def test_two_iterations_of_each_optimizer_and_objective(tmp_path, optimizer, objective):
    config = tiny(meta_optimizer=optimizer, objective=objective)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = {k: v.detach().clone() for k, v in trainer.policy.named_parameters()}
    trainer.train()
    rows = read_rows(tmp_path / "run")
    assert [int(r["iteration"]) for r in rows] == [0, 1]
    for column in ("return_pre", "return_post", "env_steps", "time_s", "kl", "loss_before"):
        assert column in rows[0]
    assert int(rows[1]["env_steps"]) == 2 * 2 * 4 * 5 * 20
    changed = any(not torch.equal(before[k], p) for k, p in trainer.policy.named_parameters())
    assert changed, "the meta-step must move the parameters"
    assert load_config(tmp_path / "run" / "config.yaml") == config
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
    assert list((tmp_path / "run").glob("events.out.tfevents.*")), "TensorBoard events"


@pytest.mark.parametrize(
    "optimizer",
    [TRPOConfig(), PPOConfig(epochs=2), PPOConfig(epochs=2, target_kl=1e-3)],
    ids=["trpo", "ppo", "ppo-target-kl"],
)
def test_resume_gives_the_same_returns_and_parameters(tmp_path, optimizer):
    """Stopped after 2 of 4 iterations and resumed: the rows and the final state are those of
    an uninterrupted run (for PPO that needs Adam's moments and step count restored)."""
    config = tiny(iterations=4, meta_optimizer=optimizer)
    Trainer(config, tmp_path / "full", progress=False).train()
    Trainer(dataclasses.replace(config, iterations=2), tmp_path / "split", progress=False).train()
    assert load_checkpoint(tmp_path / "split")["iteration"] == 2
    Trainer(config, tmp_path / "split", resume=True, progress=False).train()
    full, split = read_rows(tmp_path / "full"), read_rows(tmp_path / "split")
    assert [r["iteration"] for r in split] == ["0", "1", "2", "3"]
    columns = ["return_pre", "return_post", "env_steps", "loss_before", "kl"]
    if getattr(optimizer, "target_kl", None):
        columns.append("epochs")
    for column in columns:
        assert [r[column] for r in full] == [r[column] for r in split], column
    end_full, end_split = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    for name, value in end_full["policy"].items():
        assert torch.equal(end_split["policy"][name], value), name
    assert end_split["meta_optimizer"]["num_steps"] == end_full["meta_optimizer"]["num_steps"] == 4
    if "adam" in end_full["meta_optimizer"]:
        adam_full = end_full["meta_optimizer"]["adam"]["state"]
        adam_split = end_split["meta_optimizer"]["adam"]["state"]
        assert adam_full.keys() == adam_split.keys() and adam_full
        for key, moments in adam_full.items():
            for name in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(adam_split[key][name], moments[name]), (key, name)


@pytest.mark.parametrize("inner", [None, False])
def test_the_inner_step_normalises_its_advantages_as_configured(tmp_path, monkeypatch, inner):
    """`adaptation.normalize_advantages: false` keeps the inner step's advantages in reward
    units while the meta-objective's stay standardised (the top-level key)."""
    import metarl.trainer as trainer_module

    config = tiny(iterations=1)
    config = dataclasses.replace(
        config, adaptation=dataclasses.replace(config.adaptation, normalize_advantages=inner)
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    seen = {"inner": [], "outer": []}
    real_adapt, real_outer = (
        trainer.meta_learner.adapt_for_sampling,
        trainer_module.compute_advantages,
    )

    def adapt(*args, **kwargs):
        seen["inner"].append(kwargs["normalize"])
        return real_adapt(*args, **kwargs)

    def outer(episodes, baseline, gamma, gae_lambda, normalize=True):
        seen["outer"].append(normalize)
        return real_outer(episodes, baseline, gamma, gae_lambda, normalize)

    monkeypatch.setattr(trainer.meta_learner, "adapt_for_sampling", adapt)
    monkeypatch.setattr(trainer_module, "compute_advantages", outer)
    trainer.train()
    assert seen == {"inner": [inner is None], "outer": [True]}


def test_resuming_a_run_that_has_its_iterations_changes_nothing(tmp_path, capsys):
    """`train --resume` asking for no more iterations than the run has (how the experiment
    scripts re-evaluate a finished run) samples nothing and leaves every file as it was."""
    run = tmp_path / "run"
    Trainer(tiny(iterations=2), run, progress=False).train()
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for iterations in (2, 1):
        trainer = Trainer(tiny(iterations=iterations), run, resume=True, progress=False)
        assert trainer.done
        trainer.train()
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files, iterations
    config = tmp_path / "nav.yaml"
    save_config(tiny(iterations=2), config)
    args = ["train", str(config), "--run-dir", str(run), "--resume", "--no-progress"]
    assert main([*args, "--iterations", "1"]) == 0
    assert "nothing to train: the run has 2 iterations" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    more = Trainer(tiny(iterations=3), run, resume=True, progress=False)
    assert not more.done
    more.close()


def test_obs_statistics_take_in_every_iterations_episodes_and_resume_exactly(tmp_path):
    """policy.obs_normalization: the statistics count every step sampled (pre- and post-step,
    every iteration); they are what the next iteration samples with, and the checkpoint keeps
    them, so a resumed run is the uninterrupted one."""
    policy = dataclasses.replace(tiny().policy, obs_normalization=True)
    config = tiny(iterations=3, policy=policy, meta_optimizer=PPOConfig(epochs=2))
    Trainer(config, tmp_path / "full", progress=False).train()
    state = load_checkpoint(tmp_path / "full")
    assert state["policy"]["obs_count"].item() == state["env_steps"] == 3 * 2 * 4 * 5 * 20
    assert not torch.allclose(state["policy"]["obs_var"], torch.ones(2, dtype=torch.float64))
    Trainer(dataclasses.replace(config, iterations=1), tmp_path / "split", progress=False).train()
    Trainer(config, tmp_path / "split", resume=True, progress=False).train()
    full, split = read_rows(tmp_path / "full"), read_rows(tmp_path / "split")
    assert [r["return_post"] for r in full] == [r["return_post"] for r in split]
    for name, value in state["policy"].items():
        assert torch.equal(load_checkpoint(tmp_path / "split")["policy"][name], value), name
    # The statistics change what the policy does: without them the run differs from iteration 1.
    Trainer(
        dataclasses.replace(config, policy=tiny().policy), tmp_path / "raw", progress=False
    ).train()
    raw = read_rows(tmp_path / "raw")
    assert raw[0]["return_pre"] == full[0]["return_pre"]
    assert raw[1]["return_pre"] != full[1]["return_pre"]


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    config = tiny(iterations=3, checkpoint_every=2)
    Trainer(config, tmp_path / "run", progress=False).train()
    # Simulate a stop after iteration 2's row was logged but before its checkpoint.
    state = load_checkpoint(tmp_path / "run")
    state["iteration"] = 2
    torch.save(state, tmp_path / "run" / "checkpoints" / "latest.pt")
    trainer = Trainer(config, tmp_path / "run", resume=True, progress=False)
    assert [r["iteration"] for r in read_rows(tmp_path / "run")] == ["0", "1"]
    trainer.train()
    assert [r["iteration"] for r in read_rows(tmp_path / "run")] == ["0", "1", "2"]


def test_checkpoint_is_complete_and_atomic(tmp_path):
    trainer = Trainer(tiny(iterations=1), tmp_path / "run", progress=False)
    trainer.train()
    state = load_checkpoint(tmp_path / "run")
    assert {"policy", "meta_optimizer", "rng", "config", "iteration"} <= set(state)
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp")), "half-written file left"
    _, policy, _ = load_policy(tmp_path / "run")
    for name, p in policy.named_parameters():
        assert torch.equal(p, dict(trainer.policy.named_parameters())[name])


def test_a_checkpoint_write_that_fails_midway_leaves_the_old_one_loadable(tmp_path, monkeypatch):
    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    old = load_checkpoint(tmp_path / "run")
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        # The disk fills up halfway through the write.
        real_save(obj, f, *args, **kwargs)
        path = Path(f)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    resumed = Trainer(tiny(iterations=2), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(OSError, match="No space left"):
        resumed.train()
    monkeypatch.undo()
    moved = any(not torch.equal(p, old["policy"][n]) for n, p in resumed.policy.named_parameters())
    assert moved, "iteration 1 changed the policy, so an overwritten checkpoint would differ"
    kept = load_checkpoint(tmp_path / "run")
    assert kept["iteration"] == 1 and kept["env_steps"] == old["env_steps"]
    assert kept["policy"].keys() == old["policy"].keys()
    for name, value in old["policy"].items():
        assert torch.equal(kept["policy"][name], value), name
    _, policy, _ = load_policy(tmp_path / "run")
    for name, p in policy.named_parameters():
        assert torch.equal(p, old["policy"][name]), name


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny(), run, progress=False)
    assert (run / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def _checkpoint_tensors(state: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint state (policy, meta-optimizer, RNG), by dotted path."""
    out = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value.clone()
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)

    walk("", state)
    return out


def _nan_parameter(policy, batch):
    with torch.no_grad():
        policy.log_std[0] = float("nan")
    return batch


def _overflowing_loss(policy, batch):
    # Finite advantages (the input checks pass) whose surrogate overflows float32 to inf.
    huge = torch.full_like(batch.post_advantages, 3e38)
    return dataclasses.replace(batch, post_advantages=huge)


@pytest.mark.parametrize(
    ("inject", "what"),
    [(_nan_parameter, "policy parameters"), (_overflowing_loss, "meta-loss")],
    ids=["nan-parameter", "inf-loss"],
)
@pytest.mark.parametrize("optimizer", [TRPOConfig(), PPOConfig(epochs=2)], ids=["trpo", "ppo"])
def test_a_non_finite_meta_step_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, optimizer, inject, what
):
    """A real NaN (a parameter) or inf (the loss) at iteration 1's meta-step: the run stops
    with TrainingDiverged and latest.pt still holds exactly what iteration 0 saved."""
    trainer = Trainer(
        tiny(iterations=3, meta_optimizer=optimizer), tmp_path / "run", progress=False
    )
    real_step = trainer.meta_optimizer.step
    calls = []

    def step(policy, batch, settings, *learner):
        calls.append(1)
        if len(calls) == 2:
            batch = inject(policy, batch)
        return real_step(policy, batch, settings, *learner)

    monkeypatch.setattr(trainer.meta_optimizer, "step", step)
    saved = []  # latest.pt's tensors as each finished iteration left it

    def snapshot(row):
        saved.append(_checkpoint_tensors(load_checkpoint(tmp_path / "run")))

    with pytest.raises(TrainingDiverged, match=rf"iteration 1: {what}.*last good checkpoint"):
        trainer.train(on_iteration=snapshot)
    assert len(saved) == 1, "iteration 0 finished and was checkpointed"
    kept = load_checkpoint(tmp_path / "run")
    assert kept["iteration"] == 1
    after = _checkpoint_tensors(kept)
    assert after.keys() == saved[0].keys() and any(k.startswith(".policy.") for k in after)
    for key, value in saved[0].items():
        assert torch.equal(after[key], value), key
        assert torch.isfinite(after[key].float()).all(), key
    assert [r["iteration"] for r in read_rows(tmp_path / "run")] == ["0"]


def test_resume_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(tiny(), tmp_path / "nowhere", resume=True, progress=False)
    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    with pytest.raises(ConfigError, match="horizon"):
        Trainer(tiny(horizon=10), tmp_path / "run", resume=True, progress=False)
    (tmp_path / "run" / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(tiny(), tmp_path / "run", resume=True, progress=False)


def test_init_from_starts_from_another_runs_policy_and_resumes_as_any_run(tmp_path):
    """A warm start: the new run's first iteration samples with the source's latest policy (its
    learned std included), counts its own iterations and env steps, and resumes exactly."""
    source = tmp_path / "source"
    Trainer(tiny(iterations=2), source, progress=False).train()
    trained = load_checkpoint(source)["policy"]
    config = tiny(iterations=3, horizon=6, init_from=str(source))
    warm = Trainer(config, tmp_path / "warm", progress=False)
    for name, value in warm.policy.state_dict().items():
        assert torch.equal(value, trained[name]), name
    cold = Trainer(tiny(iterations=3, horizon=6), tmp_path / "cold", progress=False)
    assert not torch.equal(cold.policy.state_dict()["log_std"], trained["log_std"])
    cold.close()
    warm.train()
    state = load_checkpoint(tmp_path / "warm")
    assert state["iteration"] == 3 and state["env_steps"] == 3 * 2 * 4 * 5 * 6
    assert state["warm_start"] == {
        "run": str(source),
        "iteration": 2,
        "env_steps": 2 * 2 * 4 * 5 * 20,
    }
    assert load_config(tmp_path / "warm" / "config.yaml").init_from == str(source)
    # Stopped and resumed: the checkpoint, not init_from, gives the policy.
    Trainer(dataclasses.replace(config, iterations=2), tmp_path / "split", progress=False).train()
    Trainer(config, tmp_path / "split", resume=True, progress=False).train()
    assert load_checkpoint(tmp_path / "split")["warm_start"] == state["warm_start"]
    assert [r["return_post"] for r in read_rows(tmp_path / "split")] == [
        r["return_post"] for r in read_rows(tmp_path / "warm")
    ]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"init_from": "nowhere"}, "does not exist"),
        ({"policy": {"hidden_sizes": [8]}}, "policy.hidden_sizes"),
        ({"policy": {"activation": "tanh"}}, "policy.activation"),
        ({"policy": {"action_scale": 0.5}}, "policy.action_scale"),
        ({"policy": {"obs_normalization": True}}, "policy.obs_normalization"),
    ],
)
def test_init_from_a_run_that_does_not_fit_is_refused_before_anything_is_written(
    tmp_path, change, words
):
    source = tmp_path / "source"
    Trainer(tiny(iterations=1), source, progress=False).train()
    config = tiny(init_from=str(source))
    if "policy" in change:
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, **change["policy"])
        )
    else:
        config = dataclasses.replace(config, init_from=str(tmp_path / change["init_from"]))
    with pytest.raises(ConfigError, match="init_from") as err:
        Trainer(config, tmp_path / "run", progress=False)
    assert words in str(err.value)
    assert not (tmp_path / "run").exists()


def test_init_from_carries_learned_rates_when_both_runs_learn_them(tmp_path):
    """A warm start from a learned-rate run adapts as the source did (its trained rates); from
    a run without rates they start at adaptation.lr; rates of another layout are refused
    before anything is written."""

    def rated(per_parameter=False, **changes):
        base = tiny(**changes)
        adaptation = dataclasses.replace(
            base.adaptation, learn_lr=True, learn_lr_per_parameter=per_parameter
        )
        return dataclasses.replace(base, adaptation=adaptation)

    def rates(trainer):
        return [
            r.detach().clone() for step in trainer.meta_learner.learned_lrs for r in step.values()
        ]

    lr = tiny().adaptation.lr
    source, plain = tmp_path / "source", tmp_path / "plain"
    trained = Trainer(rated(iterations=2), source, progress=False)
    trained.train()
    assert any(not torch.allclose(r, torch.full_like(r, lr)) for r in rates(trained))
    Trainer(tiny(iterations=1), plain, progress=False).train()
    warm = Trainer(rated(init_from=str(source)), tmp_path / "warm", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(rates(warm), rates(trained), strict=True))
    warm.close()
    fresh = Trainer(rated(init_from=str(plain)), tmp_path / "fresh", progress=False)
    assert all(torch.all(r == lr) for r in rates(fresh))
    fresh.close()
    with pytest.raises(ConfigError, match=r"^adaptation.learn_lr: cannot carry .*shapes"):
        Trainer(rated(True, init_from=str(source)), tmp_path / "no", progress=False)
    assert not (tmp_path / "no").exists()


def test_init_from_must_name_a_directory():
    with pytest.raises(ConfigError, match="init_from"):
        tiny(init_from=" ")


def test_cli_train_and_bad_config(tmp_path, capsys):
    config = tmp_path / "nav.yaml"
    text = (CONFIGS / "navigation2d.yaml").read_text()
    config.write_text(text)
    run = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run), "--iterations", "1", "--no-progress"]
    small = ["--set", "tasks_per_batch=2", "--set", "episodes_per_task=2", "--set", "horizon=5"]
    assert main(args + small) == 0
    out = capsys.readouterr().out
    assert str(run) in out and "progress.csv" in out
    # A typo fails before any work, names the key, suggests the right one, writes nothing.
    bad_run = tmp_path / "bad"
    code = main(["train", str(config), "--run-dir", str(bad_run), "--set", "adaptaton.lr=0.1"])
    assert code != 0
    err = capsys.readouterr().err
    assert "adaptaton" in err and "adaptation" in err
    assert not bad_run.exists()
    assert main(["train", str(config), "--run-dir", str(bad_run), "--set", "adaptation.lr=-1"]) != 0
    assert "adaptation.lr" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) != 0
    assert "not found" in capsys.readouterr().err
    assert main(["train", str(config), "--run-dir", str(run), "--iterations", "1"]) != 0
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["objective=emaml"],
        ["adaptation.steps=2", "adaptation.lr=[0.1,0.1]"],
        ["adaptation.steps=3", "adaptation.lr=[0.1,0.1,0.1]"],
    ],
    ids=["maml", "emaml", "two-steps", "three-steps"],
)
def test_navigation_learns_to_adapt(tmp_path, overrides):
    """Post-adaptation return beats pre-adaptation and the first iteration, by clear margins."""
    config = dataclasses.replace(
        load_config(CONFIGS / "navigation2d.yaml", overrides),
        iterations=12,
        tasks_per_batch=20,
        episodes_per_task=10,
    )
    Trainer(config, tmp_path / "run", progress=False).train()
    rows = read_rows(tmp_path / "run")
    first_post = float(rows[0]["return_post"])
    last = rows[-3:]
    pre = sum(float(r["return_pre"]) for r in last) / 3
    post = sum(float(r["return_post"]) for r in last) / 3
    assert post > pre + 5, (pre, post)
    assert post > first_post + 20, (first_post, post)


def test_env_kwargs_and_policy_options_reach_every_engine(tmp_path):
    config = load_config(
        CONFIGS / "halfcheetah-dir.yaml",
        [
            "iterations=1",
            "tasks_per_batch=2",
            "episodes_per_task=2",
            "horizon=5",
            "policy.hidden_sizes=[8]",
            "policy.init=xavier_uniform",
            "policy.action_scale=0.1",
            "policy.init_std=0.1",
            "env_kwargs={exclude_current_positions_from_observation: false}",
        ],
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.policy.obs_dim == 18  # the root's x position is observed
    assert trainer.policy.mean[0].bias.eq(0).all()
    trainer.train()
    _, policy, _ = load_policy(tmp_path / "run")
    assert policy.obs_dim == 18 and policy.action_scale == 0.1
    torch.testing.assert_close(
        policy(torch.zeros(18)).stddev, trainer.policy(torch.zeros(18)).stddev
    )


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("env_kwargs={ctrl_cost_wieght: 0.1}", "ctrl_cost_wieght"),
        ("env_kwargs={ctrl_cost_weight: -1}", "non-negative"),
        ("env_kwargs=[1, 2]", "mapping"),
    ],
)
def test_bad_env_kwargs_are_config_errors_naming_the_key(tmp_path, override, words):
    with pytest.raises(ConfigError, match=rf"env_kwargs.*{words}"):
        config = load_config(CONFIGS / "halfcheetah-dir.yaml", [override])
        Trainer(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


class _Exploit:
    """Unpickling this calls a function of the attacker's choice (here: create a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "pwned"
    state["policy_spec"] = _Exploit(marker)
    torch.save(state, checkpoint)
    for load in (load_checkpoint, load_policy):
        with pytest.raises(CheckpointError, match=r"refused.*run code"):
            load(tmp_path / "run")
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(tiny(iterations=2), tmp_path / "run", resume=True, progress=False)
    assert not marker.exists(), "unpickling must not have run the payload"
    # The same file read the unsafe way does run it: the test's payload is live.
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_checkpoint_holds_plain_data_and_restores_every_rng(tmp_path):
    import random

    import numpy as np

    from metarl.checkpoint import get_rng_states, set_rng_states

    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    state = load_checkpoint(tmp_path / "run")  # weights_only=True
    assert state["format"] == "metarl-checkpoint-v2"
    saved = get_rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_states(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_a_new_progress_column_on_resume_keeps_the_rows_aligned(tmp_path):
    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    path = tmp_path / "run" / "progress.csv"
    # An older metarl wrote the file without the "skipped" column.
    rows = read_rows(tmp_path / "run")
    header = [k for k in rows[0] if k != "skipped"]
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)
    Trainer(tiny(iterations=2), tmp_path / "run", resume=True, progress=False).train()
    rows = read_rows(tmp_path / "run")
    assert [r["iteration"] for r in rows] == ["0", "1"]
    assert rows[0]["skipped"] == "" and rows[1]["skipped"] == "0.0"
    assert float(rows[1]["env_steps"]) > float(rows[0]["env_steps"])


def test_trpo_counts_and_reports_a_skipped_step():
    from metarl.adaptation import AdaptationSettings, make_meta_batch
    from metarl.meta_optimizers.trpo import TRPO
    from metarl.sampler import Sampler
    from metarl.value_baseline import LinearFeatureBaseline

    config = tiny()
    torch.manual_seed(0)
    with Sampler(config.env, 2, 3, 5) as sampler:
        from metarl.checkpoint import make_policy

        policy = make_policy(config, sampler.obs_dim, sampler.act_dim)
        tasks = sampler.sample_tasks(2)
        pre = sampler.sample(policy, None, tasks, seed=0)
        post = sampler.sample(policy, None, tasks, seed=1)
    batch = make_meta_batch(pre, post, LinearFeatureBaseline(), 0.99, 1.0)
    zero = dataclasses.replace(batch, post_advantages=torch.zeros_like(batch.post_advantages))
    trpo = TRPO()
    with pytest.warns(RuntimeWarning, match="skipped"):
        metrics = trpo.step(policy, zero, AdaptationSettings())
    assert metrics["skipped"] == 1.0 and trpo.num_skipped == 1
    assert trpo.state_dict()["num_skipped"] == 1
    assert trpo.step(policy, batch, AdaptationSettings())["skipped"] == 0.0


def test_a_run_directory_in_use_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    Trainer(tiny(iterations=1), tmp_path / "run", progress=False).train()
    assert not (tmp_path / "run" / ".lock").exists(), "train() releases the lock"
    # A live process holds it: a second writer is refused, and nothing is written.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run" / ".lock").write_text(f"{holder.pid}\n")
        before = (tmp_path / "run" / "progress.csv").read_text()
        with pytest.raises(CheckpointError, match=f"in use by process {holder.pid}"):
            Trainer(tiny(iterations=2), tmp_path / "run", resume=True, progress=False)
        assert (tmp_path / "run" / "progress.csv").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone: the lock is stale and the resume proceeds.
    Trainer(tiny(iterations=2), tmp_path / "run", resume=True, progress=False).train()
    assert [r["iteration"] for r in read_rows(tmp_path / "run")] == ["0", "1"]


def test_a_run_that_died_before_its_first_checkpoint_can_be_started_or_resumed(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny(iterations=1), run, progress=False)  # created, never trained
    trainer.close()
    with pytest.warns(RuntimeWarning, match="never finished an iteration"):
        Trainer(tiny(iterations=1), run, progress=False).train()
    assert [r["iteration"] for r in read_rows(run)] == ["0"]
    other = tmp_path / "other"
    Trainer(tiny(iterations=1), other, progress=False).close()
    Trainer(tiny(iterations=1), other, resume=True, progress=False).train()  # starts at 0
    assert [r["iteration"] for r in read_rows(other)] == ["0"]


def test_resume_repairs_a_cut_row_and_reports_missing_ones(tmp_path):
    Trainer(tiny(iterations=2), tmp_path / "run", progress=False).train()
    path = tmp_path / "run" / "progress.csv"
    lines = path.read_text().splitlines()
    # The row of iteration 0 is lost and a half-written row follows the last one.
    path.write_text("\n".join([lines[0], lines[2], lines[2][:15]]) + "\n")
    with pytest.warns(RuntimeWarning, match=r"iteration\(s\) 0 of the 2"):
        Trainer(tiny(iterations=3), tmp_path / "run", resume=True, progress=False).train()
    assert [r["iteration"] for r in read_rows(tmp_path / "run")] == ["1", "2"]


def test_two_inner_steps_sample_fresh_episodes_and_resume_exactly(tmp_path):
    adaptation = dataclasses.replace(tiny().adaptation, steps=2, lr=[0.1, 0.05])
    config = tiny(iterations=2, adaptation=adaptation)
    Trainer(config, tmp_path / "run", progress=False).train()
    rows = read_rows(tmp_path / "run")
    # Three samples per iteration: theta's, phi_1's (fresh), phi_2's (post).
    assert int(rows[0]["env_steps"]) == 3 * 4 * 5 * 20
    assert "return_step1" in rows[0]
    assert rows[0]["return_step1"] not in (rows[0]["return_pre"], rows[0]["return_post"])
    # Interrupted after one iteration and resumed: the same numbers.
    Trainer(tiny(iterations=1, adaptation=adaptation), tmp_path / "half", progress=False).train()
    Trainer(config, tmp_path / "half", resume=True, progress=False).train()
    again = read_rows(tmp_path / "half")
    for column in ("return_pre", "return_step1", "return_post"):
        assert [r[column] for r in again] == [r[column] for r in rows]


def test_one_step_iteration_seeds_are_unchanged_by_the_multi_step_extension():
    from metarl.trainer import iteration_seeds

    rng1, pre1, post1 = iteration_seeds(3, 7, 1)
    rng3, pre3, post3 = iteration_seeds(3, 7, 3)
    assert pre1 == pre3[:1] and post1 == post3 and len(set(pre3)) == 3
    assert rng1.integers(1 << 30) == rng3.integers(1 << 30)


def test_derivative_order_annealing_is_first_order_for_the_first_iterations(tmp_path, monkeypatch):
    adaptation = dataclasses.replace(tiny().adaptation, first_order_iterations=2)
    trainer = Trainer(tiny(iterations=4, adaptation=adaptation), tmp_path / "run", progress=False)
    seen = [s.first_order for s in train_seeing_settings(trainer, monkeypatch)]
    assert seen == [True, True, False, False]


def test_returns_are_logged_per_subgroup_and_average_to_the_whole(tmp_path):
    base = load_config(CONFIGS / "halfcheetah-dir.yaml")
    config = dataclasses.replace(
        base, iterations=1, tasks_per_batch=5, episodes_per_task=2, horizon=10
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.train()
    (row,) = read_rows(tmp_path / "run")
    tasks = trainer.task_distribution.sample_tasks(5, iteration_seeds(config.seed, 0)[0])
    forward = sum(t["direction"] > 0 for t in tasks)
    # Both directions, in unequal numbers (5 tasks): swapped columns fail the check below.
    assert 0 < forward < 5
    for phase in ("pre", "post"):
        whole = float(row[f"return_{phase}"])
        parts = float(row[f"return_{phase}/forward"]), float(row[f"return_{phase}/backward"])
        # Every task has the same number of episodes: the task-weighted mean is the whole's.
        assert (forward * parts[0] + (5 - forward) * parts[1]) / 5 == pytest.approx(whole)
        assert parts[0] != parts[1]
    # A one-group distribution (Navigation2D's goals in a disk) logs no subgroup column.
    Trainer(tiny(iterations=1), tmp_path / "nav", progress=False).train()
    assert not [c for c in read_rows(tmp_path / "nav")[0] if "/" in c]


def test_subgroup_returns_name_their_columns_and_leave_an_absent_group_blank():
    from metarl.episodes import Episodes
    from metarl.trainer import subgroup_returns

    rewards = torch.tensor([1.0, 2.0, 4.0]).reshape(3, 1, 1).expand(3, 2, 2)  # [task, T, E]
    ones = torch.ones(3, 2, 2)
    episodes = Episodes(torch.zeros(3, 2, 2, 1), torch.zeros(3, 2, 2, 1), rewards, ones, ones)
    groups = ["velocity < 1", "velocity >= 1", "velocity >= 1"]
    columns = subgroup_returns("return_post", episodes, groups, ("velocity < 1", "velocity >= 1"))
    assert columns == {"return_post/velocity_lt_1": 2.0, "return_post/velocity_ge_1": 6.0}
    absent = subgroup_returns("r", episodes, ["forward"] * 3, ("forward", "backward"))
    assert absent["r/forward"] == pytest.approx(14 / 3) and np.isnan(absent["r/backward"])
    assert subgroup_returns("r", episodes, ["all"] * 3, ("all",)) == {}


RESULTS = Path(__file__).resolve().parents[1] / "experiments"
CANONICAL_RUNS = sorted(
    p.parents[1] for p in (RESULTS / "results").glob("*/seed*/checkpoints/latest.pt")
)


@pytest.mark.parametrize(
    "run", CANONICAL_RUNS, ids=[f"{r.parent.name}/{r.name}" for r in CANONICAL_RUNS]
)
def test_every_committed_run_resumes_with_its_shipped_config(run, tmp_path):
    """`metarl train experiments/configs/<family>.yaml --seed S --iterations N --resume` on a
    copy of each canonical run: its config.yaml and checkpoint, written by whichever metarl
    trained it, are read in today's schema and match the shipped config."""
    import shutil

    family, seed = run.parent.name, int(run.name.removeprefix("seed"))
    done = int(load_checkpoint(run)["iteration"])
    config = load_config(
        RESULTS / "configs" / f"{family}.yaml", [f"seed={seed}", f"iterations={done + 1}"]
    )
    copy = tmp_path / "run"
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "progress.csv", "checkpoints/latest.pt"):
        shutil.copy(run / name, copy / name)
    trainer = Trainer(config, copy, resume=True, progress=False)
    trainer.close()
    assert trainer.start_iteration == done
