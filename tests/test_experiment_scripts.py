"""The analysis scripts under experiments/ that README numbers come from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
