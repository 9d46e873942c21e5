"""The scripts under experiments/: the analysis tools, and the end-to-end scripts that train,
evaluate and draw a family's canonical runs into experiments/results/<family>/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from metarl.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FAMILIES = ("navigation2d", "halfcheetah-vel", "halfcheetah-dir", "ant-vel", "ant-dir", "ant-goal")
# What experiments/results/ holds: a folder per family, the two comparisons, the benchmarks.
RESULTS = {*FAMILIES, "peer-config", "variants", "benchmarks", "README.md"}


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


def test_every_shell_script_parses():
    scripts = sorted(EXPERIMENTS.glob("*.sh"))
    assert {p.name for p in scripts} >= {"ant.sh", "halfcheetah.sh", "baselines.sh", "run_steps.sh"}
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_scripts_write_only_where_experiments_results_has_a_folder():
    """Every experiments/results/<name> that a script names is a family, a comparison or the
    benchmarks (no <family>-baselines/, ablation or probe folder), and every file under
    experiments/ that a script names by a literal path exists."""
    for script in sorted([*EXPERIMENTS.glob("*.sh"), *EXPERIMENTS.glob("*.py")]):
        text = script.read_text()
        for name in re.findall(r"experiments/results/((?:[\w.+-]|\$\{?\w+\}?|<\w+>)+)", text):
            # a shell variable or a <placeholder> stands for any part of a folder's name
            wild = r"\\\$\\\{?\w+\\\}?|<\w+>"
            pattern = re.sub(wild, lambda _: r"[\w.-]+", re.escape(name))
            assert any(re.fullmatch(pattern, folder) for folder in RESULTS), (
                f"{script.name} names experiments/results/{name}"
            )
        for quoted in re.findall(r'"results"\s*/\s*"([\w.+-]+)"', text):
            assert quoted in RESULTS, f"{script.name} names results/{quoted}"
        for path in re.findall(r"experiments/((?:configs/)?[\w-]+\.(?:sh|py|yaml))\b", text):
            assert (EXPERIMENTS / path).exists(), f"{script.name} names experiments/{path}"


def _scripted_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of experiments/'s shell scripts and configs with a stand-in ``.venv/bin/metarl``
    that logs each call and, for ``train``, leaves a run directory with a progress.csv."""
    root = tmp_path / "repo"
    (root / "experiments").mkdir(parents=True)
    for script in EXPERIMENTS.glob("*.sh"):
        shutil.copy(script, root / "experiments" / script.name)
    shutil.copytree(EXPERIMENTS / "configs", root / "experiments" / "configs")
    log = tmp_path / "calls.txt"
    fake = root / ".venv" / "bin" / "metarl"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'if [ "$1" = train ]; then\n'
        "  while [ $# -gt 0 ]; do\n"
        '    if [ "$1" = --run-dir ]; then mkdir -p "$2"\n'
        '      echo "iteration,return_pre,return_post,return_post/forward" > "$2/progress.csv"; fi\n'
        "    shift\n"
        "  done\n"
        "fi\n"
    )
    fake.chmod(0o755)
    return root, log


def _run(root: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / "experiments" / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("script", "env", "family", "renders"),
    [
        ("ant.sh", {"ID": "dir"}, "ant-dir", True),
        ("ant.sh", {"ID": "goal"}, "ant-goal", False),
        ("halfcheetah.sh", {"FAMILY": "vel"}, "halfcheetah-vel", True),
    ],
)
def test_a_family_script_trains_evaluates_and_draws_the_canonical_run(
    tmp_path, script, env, family, renders
):
    root, log = _scripted_repo(tmp_path)
    run = f"experiments/results/{family}/seed3"
    baselines = root / "experiments" / "results" / family / "baselines"
    baselines.mkdir(parents=True)
    (baselines / "pretrained.zip").write_bytes(b"")
    result = _run(root, script, SEED="3", ITERATIONS="7", **env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == (
        f"train experiments/configs/{family}.yaml --run-dir {run} --seed 3 --iterations 7"
    )
    assert calls[1] == (
        f"evaluate {run} --tasks 40 --steps 3 --episodes 20 --seed 1 "
        f"--out {run}/evaluation/results.json --force "
        f"--baselines experiments/results/{family}/baselines"
    )
    assert calls[2:4] == [
        f"plot {run} --out {run}/curves.png",
        f"plot {run} --subgroups --out {run}/curves-subgroups.png",
    ]
    assert [c.split()[0] for c in calls[4:]] == (["render", "render"] if renders else [])
    # Run again: the checkpoint makes it a resume; without baselines none are passed.
    (root / run / "checkpoints").mkdir()
    (root / run / "checkpoints" / "latest.pt").write_bytes(b"")
    shutil.rmtree(baselines)
    log.unlink()
    assert _run(root, script, SEED="3", ITERATIONS="7", **env).returncode == 0
    calls = log.read_text().splitlines()
    assert calls[0].endswith("--iterations 7 --resume")
    assert "--baselines" not in calls[1]


@pytest.mark.parametrize(
    ("script", "env", "words"),
    [
        ("ant.sh", {"ID": "goal-h200"}, "ID must be vel, dir or goal"),
        ("halfcheetah.sh", {"FAMILY": "dir-ablations"}, "FAMILY must be dir or vel"),
        ("baselines.sh", {"CONFIG": "ant-goal-h200"}, "CONFIG must name a config"),
    ],
)
def test_a_family_script_refuses_what_is_not_a_family(tmp_path, script, env, words):
    root, log = _scripted_repo(tmp_path)
    result = _run(root, script, **env)
    assert result.returncode == 2
    assert words in result.stderr
    assert not log.exists()  # nothing trained


def test_baselines_go_beside_the_familys_runs(tmp_path):
    root, log = _scripted_repo(tmp_path)
    result = _run(root, "baselines.sh", CONFIG="navigation2d", PRETRAIN_STEPS="5")
    assert result.returncode == 0, result.stderr
    out = "experiments/results/navigation2d/baselines"
    pretrain, oracle = log.read_text().splitlines()
    assert pretrain.startswith(
        f"baseline pretrain experiments/configs/navigation2d.yaml --timesteps 5 "
        f"--out {out}/pretrained.zip"
    )
    assert oracle.startswith(
        f"baseline oracle experiments/configs/navigation2d.yaml --timesteps 300000 "
        f"--out {out}/oracle.zip"
    )
    assert "--algo sac" in oracle
    assert oracle.endswith("--algo sac --n-envs 4 --algo-kwargs {gradient_steps: 2}")
    log.unlink()
    kwargs = "{gradient_steps: 2, policy_kwargs: {net_arch: [64, 64]}}"
    result = _run(root, "baselines.sh", CONFIG="navigation2d", ORACLE_KWARGS=kwargs)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[1].endswith(f"--algo-kwargs {kwargs}")


def test_the_maml_family_comparison_finds_every_methods_config(monkeypatch):
    """experiments/compare_variants.py trains each method from its config on each env: every
    one exists, loads, starts from scratch, and gets the env steps of its one-step budget."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))  # as a script, it imports runs.py beside it
    script = load_script("compare_variants")
    for env, (shipped, budget) in script.ENVS.items():
        assert shipped.exists()
        for name in script.METHODS:
            path = script.method_config(env, name)
            config = load_config(path)
            assert config.init_from is None, path
            steps = config.adaptation.steps
            iterations = script.method_iterations(env, name, budget)
            assert iterations * (steps + 1) <= 2 * budget < (iterations + 1) * (steps + 1), name
    assert script.RESULTS == EXPERIMENTS / "results" / "variants"
