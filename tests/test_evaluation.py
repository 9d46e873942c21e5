"""Evaluation of one-step adaptation, and the evaluate / render / plot / baseline commands."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import CONFIGS, spy, tiny_navigation_config

from metarl.adaptation import adapt_for_sampling
from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.evaluation import (
    adaptation_curve,
    by_subgroup,
    confidence_interval,
    evaluate,
    held_out_tasks,
    markdown_table,
    step_seed,
)
from metarl.sampler import Sampler
from metarl.trainer import Trainer, iteration_seeds, load_policy


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    config = tiny_navigation_config()
    path = tmp_path_factory.mktemp("eval") / "run"
    Trainer(config, path, progress=False).train()
    return path


def test_confidence_interval_by_hand():
    ci = confidence_interval([1.0, 2.0, 3.0])
    half = 4.302652730 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    big = confidence_interval([float(i % 7) for i in range(40)])
    assert big["ci95"][1] - big["mean"] == pytest.approx(
        2.0227 * torch.tensor([float(i % 7) for i in range(40)]).std().item() / math.sqrt(40),
        rel=1e-3,
    )


def test_held_out_tasks_are_not_training_tasks():
    """No held-out goal is any goal training draws, over many iterations and seeds."""
    distribution = gym.make("metarl/Navigation2D-v0").unwrapped
    training = {
        tuple(task["goal"])
        for seed in range(5)
        for iteration in range(200)
        for task in distribution.sample_tasks(20, iteration_seeds(seed, iteration)[0])
    }
    for seed in range(5):
        held_out = held_out_tasks(distribution, 40, seed=seed)
        assert not training & {tuple(task["goal"]) for task in held_out}
        assert held_out == held_out_tasks(distribution, 40, seed=seed)  # reproducible


def test_evaluate_uses_the_held_out_stream(run_dir, tmp_path):
    results = evaluate(run_dir, num_tasks=3, steps=0, episodes=2, seed=4, out=tmp_path / "r.json")
    distribution = gym.make("metarl/Navigation2D-v0").unwrapped
    assert results["tasks"] == held_out_tasks(distribution, 3, seed=4)


def test_evaluate_schema(run_dir, tmp_path):
    out = tmp_path / "results.json"
    results = evaluate(run_dir, num_tasks=3, steps=2, episodes=4, seed=5, out=out)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["env"] == "metarl/Navigation2D-v0"
    saved = load_checkpoint(run_dir)  # the evaluated state is named
    assert (on_disk["iteration"], on_disk["env_steps"]) == (saved["iteration"], saved["env_steps"])
    assert on_disk["iteration"] > 0
    assert len(on_disk["tasks"]) == 3
    for curve in (on_disk["metarl"], on_disk["baselines"]["random"]):
        assert sorted(curve) == ["0", "1", "2"]
        for step in curve.values():
            assert len(step["per_task"]) == 3
            assert step["mean"] == pytest.approx(sum(step["per_task"]) / 3)
            # The 95% t-interval of the three per-task values: t(0.975, 2) * sd / sqrt(3).
            half = 4.302652730 * statistics.stdev(step["per_task"]) / math.sqrt(3)
            assert half > 0
            assert step["ci95"] == pytest.approx([step["mean"] - half, step["mean"] + half])
    assert "pretrained" not in on_disk["baselines"] and "oracle" not in on_disk["baselines"]
    assert out.with_suffix(".md").read_text().startswith("| tasks | method |")
    assert list(on_disk["subgroups"]) == ["all"]  # a 2-D goal has no halves
    assert out.with_suffix(".png").stat().st_size > 1000


def test_step_one_returns_come_from_adapted_parameters(run_dir):
    config, policy, _ = load_policy(run_dir)
    tasks = held_out_tasks(gym.make(config.env).unwrapped, 3, seed=2)
    with Sampler(config.env, 3, 4, config.horizon) as sampler:
        curve, history = adaptation_curve(policy, sampler, tasks, 1, config, seed=2)
        assert history[1]["log_std"].shape[0] == 3, "step-1 parameters are per task"
        assert not torch.equal(history[1]["mean.0.weight"][0], history[0]["mean.0.weight"])
        again = sampler.sample(policy, history[1], tasks, seed=step_seed(2, 1))
        unadapted = sampler.sample(policy, None, tasks, seed=step_seed(2, 1))
    assert curve[1] == pytest.approx([float(r) for r in again.episode_returns.mean(-1)])
    assert curve[1] != pytest.approx([float(r) for r in unadapted.episode_returns.mean(-1)])


def test_baselines_enter_the_evaluation(run_dir, tmp_path):
    baselines = tmp_path / "baselines"
    config = str(CONFIGS / "navigation2d.yaml")
    small = ["--set", "policy.hidden_sizes=[16,16]", "--timesteps", "256", "--no-progress"]
    assert (
        main(["baseline", "pretrain", config, "--out", str(baselines / "pretrained.zip"), *small])
        == 0
    )
    assert main(["baseline", "oracle", config, "--out", str(baselines / "oracle.zip"), *small]) == 0
    # Refuses to overwrite without --force.
    assert main(["baseline", "oracle", config, "--out", str(baselines / "oracle.zip"), *small]) != 0
    out = tmp_path / "results.json"
    code = main(
        [
            "evaluate",
            str(run_dir),
            "--tasks",
            "2",
            "--steps",
            "1",
            "--episodes",
            "3",
            "--baselines",
            str(baselines),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results["baselines"]) == {"random", "pretrained", "oracle"}
    assert sorted(results["baselines"]["pretrained"]) == ["0", "1"]
    assert all(math.isfinite(v["mean"]) for v in results["baselines"]["oracle"].values())


def test_render_and_plot_commands(run_dir, tmp_path):
    gif = tmp_path / "nav.gif"
    assert (
        main(
            [
                "render",
                str(run_dir),
                "--task",
                '{"goal": [0.2, -0.3]}',
                "--task",
                '{"goal": [-0.4, 0.1]}',
                "--out",
                str(gif),
                "--width",
                "64",
                "--height",
                "64",
            ]
        )
        == 0
    )
    import imageio.v3 as iio

    frames = iio.imread(gif)
    # The initial frame, then one per step of the horizon. A GIF merges identical consecutive
    # frames, so the count also shows that every step changed the picture (a frozen or blank
    # video has one frame).
    assert frames.shape[0] == 1 + 20
    assert frames.shape[1] >= 2 * 64 and frames.shape[2] >= 2 * 64  # 2 tasks x (before, after)
    png = tmp_path / "curves.png"
    assert main(["plot", str(run_dir), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "{goal: 1"], "not valid JSON"),
        (["--task", '{"goal": [2.0, 0.0]}'], "goal"),
        (["--task", '{"velocity": 1.0}'], "velocity"),
        (["--out", "video.avi"], ".mp4 or .gif"),
    ],
)
def test_render_bad_input(run_dir, tmp_path, capsys, args, message):
    out = tmp_path / "video.gif"
    full = ["render", str(run_dir), "--out", str(out), *args]
    if "--out" in args:
        full = ["render", str(run_dir), *args]
    assert main(full) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_or_corrupt_checkpoint_and_missing_config(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere")]) != 0
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    (broken / "checkpoints" / "latest.pt").write_bytes(b"\x00garbage")
    assert main(["evaluate", str(broken), "--out", str(tmp_path / "r.json")]) != 0
    assert "corrupt" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    assert main(["render", str(no_config), "--out", str(tmp_path / "v.gif")]) != 0
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("normalize", "inner", "expected"),
    [(True, None, True), (False, None, False), (True, False, False), (False, True, True)],
)
@pytest.mark.parametrize("lr", [0.1, [0.05, 0.02]])
def test_evaluated_step_one_is_the_trained_step_one(tmp_path, normalize, inner, expected, lr):
    """Training and evaluation adapt through one path: same episodes, same step-1 parameters.
    The inner step standardises its advantages as ``adaptation.normalize_advantages`` says,
    the top-level key where that is null."""
    steps = 1 if isinstance(lr, float) else len(lr)
    config = tiny_navigation_config(
        normalize_advantages=normalize,
        adaptation=dataclasses.replace(
            tiny_navigation_config().adaptation, lr=lr, steps=steps, normalize_advantages=inner
        ),
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    tasks = held_out_tasks(gym.make(config.env).unwrapped, config.tasks_per_batch, seed=3)
    with trainer.make_sampler() as sampler:
        episodes = sampler.sample(trainer.policy, None, tasks, seed=step_seed(3, 0))
        # The trainer's adaptation of these episodes (what its post-adaptation sample uses).
        _, trained = adapt_for_sampling(
            trainer.policy,
            dict(trainer.policy.named_parameters()),
            episodes,
            trainer.baseline,
            trainer.adaptation,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            normalize=expected,
        )
        _, history = adaptation_curve(trainer.policy, sampler, tasks, 1, config, seed=3)
    if steps == 1:
        for name, value in trained.items():
            torch.testing.assert_close(history[1][name], value, rtol=0, atol=0)
    else:  # evaluation takes one step per fresh sample, with the first trained step size
        assert trainer.adaptation.evaluation_lr(0) == 0.05
        assert trainer.adaptation.evaluation_lr(1) == 0.02
        assert trainer.adaptation.evaluation_lr(2) == 0.01


def test_step_seeds_never_collide():
    seeds = {step_seed(seed, k) for seed in range(20) for k in range(10)}
    assert len(seeds) == 200


def test_subgroups_are_recomputed_from_the_per_task_values():
    def curve(values):
        return {
            "0": confidence_interval(values),
            "1": confidence_interval([v + 10 for v in values]),
        }

    results = {
        "tasks": [{"direction": d} for d in (1.0, -1.0, 1.0, -1.0)],
        "metarl": curve([10.0, 100.0, 20.0, 120.0]),
        "baselines": {
            "pretrained": curve([0.0, 50.0, 0.0, 50.0]),
            "oracle": {k: confidence_interval([40.0, 110.0, 40.0, 110.0]) for k in ("0", "1")},
        },
    }
    distribution = gym.make("metarl/HalfCheetahDir-v0").unwrapped
    groups = [distribution.task_subgroup(t) for t in results["tasks"]]
    assert groups == ["forward", "backward", "forward", "backward"]
    parts = by_subgroup(results, groups)
    assert list(parts) == ["forward", "backward"]
    assert parts["forward"]["tasks"] == [0, 2]
    assert parts["forward"]["metarl"]["1"]["mean"] == pytest.approx(25.0)
    assert parts["backward"]["metarl"]["0"]["mean"] == pytest.approx(110.0)
    # (25 - 10) / (40 - 10) forward after one step; (120 - 60) / (110 - 60) backward.
    assert parts["forward"]["gap_closed"]["1"] == pytest.approx(0.5)
    assert parts["backward"]["gap_closed"]["1"] == pytest.approx(1.2)
    table = markdown_table({**results, "subgroups": parts})
    assert "| forward (2) | gap closed | 37.5% | 50.0% |" in table
    vel = gym.make("metarl/HalfCheetahVel-v0").unwrapped
    assert vel.task_subgroup({"velocity": 0.3}) == "velocity < 1"
    assert vel.task_subgroup({"velocity": 1.0}) == "velocity >= 1"


def test_a_family_of_one_subgroup_shows_its_gap_row_under_all():
    """AntGoal's tasks form one subgroup ("all"): its table has one block of rows, with the
    gap closed, not a second copy of the same rows."""
    results = {
        "tasks": [{"goal": [1.0, 0.0]}, {"goal": [0.0, -2.0]}],
        "metarl": {
            k: confidence_interval(v) for k, v in (("0", [-50.0, -70.0]), ("1", [-20.0, -40.0]))
        },
        "baselines": {
            "pretrained": {k: confidence_interval([-60.0, -80.0]) for k in ("0", "1")},
            "oracle": {k: confidence_interval([-10.0, -10.0]) for k in ("0", "1")},
        },
    }
    parts = by_subgroup(results, ["all", "all"])
    table = markdown_table({**results, "subgroups": parts})
    # (-30 - -70) / (-10 - -70) after one step; (-60 - -70) / 60 before it.
    assert "| all (2) | gap closed | 16.7% | 66.7% |" in table
    assert table.count("| all (2) | metarl (MAML) |") == 1


def test_inner_lr_probe_is_the_run_trained_with_that_step_size(run_dir, tmp_path):
    """``--inner-lr`` evaluates as if the run's config had that step size, for every policy;
    step 0 is untouched, step 1 moves with it."""
    import shutil

    import yaml

    probe = evaluate(run_dir, 3, 1, 4, seed=6, out=tmp_path / "probe.json", inner_lr=0.37)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    data = yaml.safe_load((copy / "config.yaml").read_text())
    own_lr = data["adaptation"]["lr"]
    assert own_lr != 0.37
    data["adaptation"]["lr"] = 0.37
    (copy / "config.yaml").write_text(yaml.safe_dump(data))
    edited = evaluate(copy, 3, 1, 4, seed=6, out=tmp_path / "edited.json")
    assert probe["inner_lr"] == edited["inner_lr"] == 0.37
    assert probe["metarl"] == edited["metarl"]
    assert probe["baselines"] == edited["baselines"]  # the random policy's steps too
    trained = evaluate(run_dir, 3, 1, 4, seed=6, out=tmp_path / "trained.json")
    assert trained["inner_lr"] == own_lr
    assert trained["metarl"]["0"] == probe["metarl"]["0"]
    assert trained["metarl"]["1"]["per_task"] != probe["metarl"]["1"]["per_task"]


@pytest.mark.parametrize("lr", ["0", "-0.1", "nan"])
def test_inner_lr_must_be_positive(run_dir, tmp_path, capsys, lr):
    out = tmp_path / "r.json"
    assert (
        main(["evaluate", str(run_dir), "--tasks", "2", "--inner-lr", lr, "--out", str(out)]) != 0
    )
    assert "--inner-lr must be positive" in capsys.readouterr().err
    assert not out.exists()


def test_the_random_baseline_sees_the_observation_as_the_run_does(tmp_path, monkeypatch):
    """With ``policy.obs_normalization`` the random baseline is a fresh network with the run's
    observation statistics, not identity ones."""
    import metarl.evaluation as evaluation_module

    config = tiny_navigation_config(
        iterations=1,
        policy=dataclasses.replace(tiny_navigation_config().policy, obs_normalization=True),
    )
    Trainer(config, tmp_path / "run", progress=False).train()
    calls = spy(monkeypatch, evaluation_module, "adaptation_curve")
    evaluate(tmp_path / "run", 2, 0, 2, seed=3, out=tmp_path / "r.json")
    trained, random_policy = (args[0] for args in calls)
    assert trained.obs_count > 0 and not torch.equal(
        trained.obs_mean, torch.zeros_like(trained.obs_mean)
    )
    for name in ("obs_mean", "obs_var", "obs_count"):
        assert torch.equal(getattr(random_policy, name), getattr(trained, name)), name
    assert not torch.equal(random_policy.mean[0].weight, trained.mean[0].weight)  # fresh weights


def test_inner_lr_refuses_a_cavia_run(tmp_path, capsys):
    config = tiny_navigation_config(
        iterations=1,
        meta_learner="cavia",
        policy=dataclasses.replace(tiny_navigation_config().policy, context_dim=2),
    )
    Trainer(config, tmp_path / "run", progress=False).train()
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "run"), "--inner-lr", "0.2", "--out", str(out)]) != 0
    assert "cavia.lr" in capsys.readouterr().err
    assert not out.exists()
    # Evaluated as it is, its rows name the method.
    results = evaluate(tmp_path / "run", 2, 1, 2, seed=3, out=out)
    assert results["meta_learner"] == "cavia"
    assert "| all (2) | metarl (CAVIA) |" in out.with_suffix(".md").read_text()
    from metarl.evaluation import METHOD_LABELS
    from metarl.meta_learners import META_LEARNERS

    assert set(METHOD_LABELS) == set(META_LEARNERS)  # every method's rows are named


def test_inner_lr_refuses_learned_rates(tmp_path, capsys):
    config = tiny_navigation_config(
        iterations=1,
        adaptation=dataclasses.replace(tiny_navigation_config().adaptation, learn_lr=True),
    )
    Trainer(config, tmp_path / "run", progress=False).train()
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "run"), "--inner-lr", "0.2", "--out", str(out)]) != 0
    assert "learned inner rates" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("per_parameter", "label"), [(False, "MAML, learned rates"), (True, "MAML, Meta-SGD rates")]
)
def test_a_run_with_learned_rates_is_named_for_them(tmp_path, per_parameter, label):
    adaptation = dataclasses.replace(
        tiny_navigation_config().adaptation, learn_lr=True, learn_lr_per_parameter=per_parameter
    )
    Trainer(
        tiny_navigation_config(iterations=1, adaptation=adaptation),
        tmp_path / "run",
        progress=False,
    ).train()
    out = tmp_path / "r.json"
    results = evaluate(tmp_path / "run", 2, 1, 2, seed=3, out=out)
    assert results["learned_rates"] == ("per_parameter" if per_parameter else "per_tensor")
    assert f"| all (2) | metarl ({label}) |" in out.with_suffix(".md").read_text()
