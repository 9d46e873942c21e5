"""The analysis scripts under experiments/ that README numbers come from."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from metarl.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_breakdown_groups_goals_by_angle(tmp_path, capsys):
    script = load_script("task_breakdown")
    # Goals at 10, 20 (sector 0-45), 100 (90-135) and 350 degrees (315-360).
    goals = [[1.0, 0.176], [1.0, 0.364], [-0.174, 0.985], [1.0, -0.176]]
    results = {
        "env": "metarl/AntGoal-v0",
        "iteration": 7,
        "tasks": [{"goal": g} for g in goals],
        "metarl": {
            "0": {"per_task": [-100.0, -200.0, -300.0, -400.0]},
            "1": {"per_task": [-90.0, -150.0, -300.0, -300.0]},
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert script.main([str(path)]) == 0
    table = (tmp_path / "breakdown.md").read_text()
    assert "| 0-45 | 2 | -150.0 | 30.0 |" in table  # gains 10 and 50
    assert "| 90-135 | 1 | -300.0 | 0.0 |" in table
    assert "| 315-360 | 1 | -400.0 | 100.0 |" in table
    assert "| all | 4 | -250.0 | 40.0 |" in table
    assert "45-90" not in table  # no goal there
    assert "gap closed" not in table  # no baselines in this evaluation
    assert table.splitlines()[2] in capsys.readouterr().out


def test_task_breakdown_bins_target_velocities_with_the_gap_closed(tmp_path):
    script = load_script("task_breakdown")
    results = {
        "env": "metarl/HalfCheetahVel-v0",
        "iteration": 3,
        "tasks": [{"velocity": v} for v in (0.1, 0.4, 0.45, 1.9)],
        "metarl": {
            "0": {"per_task": [-100.0, -50.0, -60.0, -200.0]},
            "1": {"per_task": [-40.0, -70.0, -40.0, -100.0]},
        },
        "baselines": {  # the oracle is not adapted: the same returns at every step
            "pretrained": {
                "0": {"per_task": [-110.0, -90.0, -90.0, -210.0]},
                "1": {"per_task": [-100.0, -80.0, -80.0, -200.0]},
            },
            "oracle": {k: {"per_task": [-10.0, -10.0, -10.0, -50.0]} for k in ("0", "1")},
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert script.main([str(path), "--width", "0.5"]) == 0
    lines = (tmp_path / "breakdown.md").read_text().splitlines()
    # Gap closed: (step 1 - pretrained) / (oracle - pretrained) on the bin's means.
    assert "| 0-0.5 | 3 | -70.0 | 20.0 | 48% |" in lines  # (-50 + 86.7) / (-10 + 86.7)
    assert "| 1.5-2 | 1 | -200.0 | 100.0 | 67% |" in lines
    assert lines.index("| 0-0.5 | 3 | -70.0 | 20.0 | 48% |") < lines.index(
        "| 1.5-2 | 1 | -200.0 | 100.0 | 67% |"
    )


def test_task_breakdown_refuses_results_it_cannot_split(tmp_path, capsys):
    script = load_script("task_breakdown")
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"env": "x", "tasks": [{"direction": 1}], "metarl": {}}))
    assert script.main([str(path)]) == 2
    assert "neither a goal nor a velocity" in capsys.readouterr().err
    assert not (tmp_path / "breakdown.md").exists()


def test_blocks_of_a_progress_csv_average_each_return_column(tmp_path, capsys):
    script = load_script("blocks")
    path = tmp_path / "progress.csv"
    rows = ["iteration,return_pre,return_post,return_post/forward,kl"]
    rows += [f"{i},{i},{10 * i},{'' if i == 1 else 100 * i},0.1" for i in range(5)]
    path.write_text("\n".join(rows) + "\n")
    assert script.main([str(path), "--every", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| iterations | return_pre | return_post | return_post/forward |"
    # The blank forward return of iteration 1 is skipped, not read as 0.
    assert out[2:] == [
        "| 0-1 | 0.5 | 5.0 | 0.0 |",
        "| 2-3 | 2.5 | 25.0 | 250.0 |",
        "| 4-4 | 4.0 | 40.0 | 400.0 |",
    ]
    assert script.main([str(path), "--columns", "kl"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| 0-4 | 0.1 |"
    assert script.main([str(path), "--columns", "return"]) == 2
    assert "no column return" in capsys.readouterr().err


def test_blocks_of_a_monitor_csv_cut_by_env_steps(tmp_path, capsys):
    script = load_script("blocks")
    path = tmp_path / "oracle.monitor.csv"
    # Episodes of 100 steps ending at 100, 200, ..., 500 steps.
    path.write_text('#{"t_start": 0}\nr,l,t\n' + "".join(f"{r},100,{r}\n" for r in (1, 2, 3, 4, 5)))
    assert script.main([str(path), "--every", "200"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == ["| 0-200 | 2 | 1.5 |", "| 200-400 | 2 | 3.5 |", "| 400-600 | 1 | 5.0 |"]


def test_goal_endpoints_takes_each_episodes_last_step():
    import torch

    from metarl.episodes import Episodes

    script = load_script("goal_endpoints")
    # One task, two episodes of 3 and 5 steps in a horizon of 5; x = 10 * step + episode.
    steps = torch.arange(5, dtype=torch.float32)[:, None]
    obs = torch.zeros(1, 5, 2, 3)
    obs[0, :, :, 0] = 10 * steps + torch.tensor([0.0, 1.0])
    obs[0, :, :, 1] = -obs[0, :, :, 0]
    mask = torch.ones(1, 5, 2)
    mask[0, 3:, 0] = 0
    obs[0, 3:, 0] = 0  # the sampler's zeros after an episode ended
    episodes = Episodes(
        obs, torch.zeros(1, 5, 2, 2), torch.zeros(1, 5, 2), mask, torch.zeros(1, 5, 2)
    )
    assert script.end_positions(episodes).tolist() == [[[20.0, -20.0], [41.0, -41.0]]]


def test_goal_endpoints_of_a_navigation_run(tmp_path, capsys):
    from conftest import tiny_navigation_config

    from metarl.trainer import Trainer

    script = load_script("goal_endpoints")
    run = tmp_path / "nav"
    Trainer(tiny_navigation_config(iterations=1), run, progress=False).train()
    out = tmp_path / "endpoints.md"
    args = [str(run), "--radius", "0.4", "--angles", "4", "--episodes", "3", "--out", str(out)]
    assert script.main(args) == 0
    rows = [r.split("|")[1:-1] for r in out.read_text().splitlines() if r.startswith("| ")][1:]
    assert [(float(r[0]), int(r[1])) for r in rows] == [
        (a, k) for a in (0, 90, 180, 270) for k in (0, 1)
    ]
    for r in rows:
        # A point that starts at the origin ends at most its end distance plus spread from the
        # start, so its distance to a goal 0.4 away is 0.4 give or take that much.
        end, spread, to_goal = float(r[3]), float(r[5]), float(r[6])
        assert abs(to_goal - 0.4) <= end + spread + 0.01, r
    assert out.read_text() in capsys.readouterr().out


def test_goal_endpoints_refuses_a_run_without_goals(tmp_path, capsys):
    from conftest import tiny_navigation_config

    from metarl.trainer import Trainer

    script = load_script("goal_endpoints")
    run = tmp_path / "vel"
    config = tiny_navigation_config(iterations=1, env="metarl/HalfCheetahVel-v0", horizon=3)
    Trainer(config, run, progress=False).train()
    assert script.main([str(run)]) == 2
    assert "no goal position" in capsys.readouterr().err
    assert script.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_mean_action_gap_repeats_the_evaluation_and_scores_the_mean_action(tmp_path, capsys):
    from conftest import CONFIGS, tiny_navigation_config

    from metarl.cli import main
    from metarl.evaluation import evaluate
    from metarl.trainer import Trainer

    script = load_script("mean_action_gap")
    run = tmp_path / "nav"
    Trainer(tiny_navigation_config(iterations=2), run, progress=False).train()
    assert script.main([str(run), str(tmp_path / "none"), "--tasks", "3"]) == 2
    assert "pretrained.zip" in capsys.readouterr().err
    assert not (run / "evaluation").exists()
    baselines = tmp_path / "baselines"
    config = str(CONFIGS / "navigation2d.yaml")
    small = ["--set", "policy.hidden_sizes=[16,16]", "--timesteps", "256", "--no-progress"]
    for kind in ("pretrain", "oracle"):
        name = "pretrained" if kind == "pretrain" else "oracle"
        assert (
            main(["baseline", kind, config, "--out", str(baselines / f"{name}.zip"), *small]) == 0
        )
    args = [str(run), str(baselines), "--tasks", "3", "--episodes", "4", "--seed", "5"]
    assert script.main(args) == 0
    result = json.loads((run / "evaluation" / "mean-action.json").read_text())
    evaluated = evaluate(
        run, 3, 1, 4, seed=5, baselines_dir=baselines, out=tmp_path / "e" / "results.json"
    )
    for name, curve in (
        ("metarl", evaluated["metarl"]),
        ("pretrained", evaluated["baselines"]["pretrained"]),
    ):
        assert result[name]["sampled"] == [curve[k]["per_task"] for k in ("0", "1")]
        assert result[name]["mean_action"] != result[name]["sampled"]
    assert result["oracle"]["mean_action"] == evaluated["baselines"]["oracle"]["0"]["per_task"]
    rows = [
        r.split("|")[1:-1]
        for r in (run / "evaluation" / "mean-action.md").read_text().splitlines()
        if r.startswith("| all")
    ]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        (m, o) for m in ("sampled", "mean_action") for o in ("sampled", "mean_action")
    ]
    m1 = sum(result["metarl"]["mean_action"][1]) / 3
    p1 = sum(result["pretrained"]["mean_action"][1]) / 3
    o = sum(result["oracle"]["mean_action"]) / 3
    assert rows[3][6].strip() == f"{100 * (m1 - p1) / (o - p1):.0f}%"


def test_widen_run_keeps_the_policys_actions_and_is_a_warm_start_source(tmp_path):
    """The widened policy acts as the run's did (every parameter of the old units kept), its
    new units can learn (their incoming weights are not zero), and init_from accepts it."""
    import dataclasses

    import pytest
    import torch
    from conftest import tiny_navigation_config

    from metarl.checkpoint import load_policy
    from metarl.trainer import Trainer

    script = load_script("widen_run")
    run, out = tmp_path / "nav", tmp_path / "wide"
    Trainer(tiny_navigation_config(iterations=1), run, progress=False).train()
    assert script.main([str(run), str(out), "--hidden", "24", "20"]) == 0
    _, old, _ = load_policy(run)
    config, wide, _ = load_policy(out)
    assert config.policy.hidden_sizes == [24, 20]
    obs = torch.randn(64, old.obs_dim)
    with torch.no_grad():
        torch.testing.assert_close(wide(obs, stats=True), old(obs, stats=True))
    first = wide.state_dict()["mean.0.weight"]
    assert first.shape == (24, old.obs_dim) and first[16:].abs().sum() > 0
    warm = Trainer(
        dataclasses.replace(
            tiny_navigation_config(iterations=1), policy=config.policy, init_from=str(out)
        ),
        tmp_path / "warm",
        progress=False,
    )
    torch.testing.assert_close(warm.policy.state_dict()["mean.0.weight"], first)
    warm.close()
    with pytest.raises(SystemExit, match="none narrower"):
        script.main([str(run), str(tmp_path / "narrow"), "--hidden", "8", "20"])


def test_every_cheetah_ablation_is_a_valid_config():
    """Each key of halfcheetah_ablations.sh's table, with its source run, loads on both cheetah
    configs: a misspelt or out-of-range override fails here, not an hour into a session."""
    text = (EXPERIMENTS / "halfcheetah_ablations.sh").read_text()
    table = dict(re.findall(r'^  \[([\w.-]+)\]="([^"]*)"', text, flags=re.MULTILINE))
    assert {"learn-lr", "continue-learn-lr", "continue-meta-sgd", "continue-restart"} <= set(table)
    results = "experiments/results/halfcheetah-dir-ablations"
    for family in ("dir", "vel"):
        shipped = f"experiments/results/halfcheetah-{family}/seed0"
        guarded = f"{results}/continue-learn-lr-guard-seed0/snapshot-150"
        held = f"{results}/continue-guard-anchor-0.05-tail-kl-0.1-seed1/snapshot-400"
        sources = (shipped, guarded, held)
        for name, sets in table.items():
            overrides = (
                sets.replace("$shipped", shipped)
                .replace("$guarded", guarded)
                .replace("$held", held)
                .split()
            )
            config = load_config(EXPERIMENTS / "configs" / f"halfcheetah-{family}.yaml", overrides)
            assert (config.init_from in sources) == ("init_from" in sets), name
    # the continuations' sources, one per seed, are committed where the script looks for them
    (at,) = re.findall(r"^declare -A guarded_at=\((.*)\)$", text, flags=re.MULTILINE)
    snapshots = {
        seed: f"continue-learn-lr-guard-seed{seed}/snapshot-{iteration}"
        for seed, iteration in re.findall(r"\[(\d+)\]=(\d+)", at)
    }
    (table_text,) = re.findall(r"^declare -A held_from=\(([^)]*)\)$", text, flags=re.MULTILINE)
    held_from = re.findall(r"\[(\d+)\]=(\S+)", table_text)
    assert {seed for seed, _ in held_from} == set(snapshots) == {"0", "1"}
    for path in [*snapshots.values(), *(path for _, path in held_from)]:
        snapshot = EXPERIMENTS.parent / results / path
        assert (snapshot / "checkpoints" / "latest.pt").exists(), snapshot
        rows = (snapshot / "progress.csv").read_text().splitlines()
        iteration = int(path.rsplit("-", 1)[1])
        assert len(rows) - 1 == iteration, snapshot  # the state the script names


def test_anchor_size_measures_the_anchors_pull_on_the_runs_own_meta_batch(tmp_path):
    """From the run's own state the anchor's KL and gradient vanish; from an earlier state both
    are positive, while the meta-loss's gradient, which does not depend on the anchor, is the
    same. A TRPO run is refused by name."""
    import dataclasses

    import pytest
    from conftest import tiny_navigation_config

    from metarl.config import PPOConfig
    from metarl.trainer import Trainer

    script = load_script("anchor_size")
    config = tiny_navigation_config(iterations=3, meta_optimizer=PPOConfig(lr=3e-2, epochs=2))
    early, late = tmp_path / "early", tmp_path / "late"
    Trainer(dataclasses.replace(config, iterations=1), early, progress=False).train()
    Trainer(config, late, progress=False).train()
    results = {}
    for name, anchor in (("self", late), ("early", early)):
        out = tmp_path / f"{name}.json"
        assert script.main([str(late), str(anchor), "--iteration", "3", "--out", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    assert results["self"]["anchor_kl"] == 0 and results["self"]["anchor_gradient_norm"] < 1e-6
    assert results["early"]["anchor_kl"] > 1e-4 and results["early"]["anchor_gradient_norm"] > 1e-3
    meta = [r["meta_loss_gradient_norm"] for r in results.values()]
    assert meta[0] == meta[1] > 0
    trpo = tmp_path / "trpo"
    Trainer(tiny_navigation_config(iterations=1), trpo, progress=False).train()
    with pytest.raises(SystemExit):
        script.main([str(trpo), str(trpo), "--iteration", "1", "--out", str(tmp_path / "t.json")])
