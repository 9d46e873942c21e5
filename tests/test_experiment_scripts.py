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


def test_goal_directions_groups_tasks_by_the_goal_angle(tmp_path, capsys):
    script = load_script("goal_directions")
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
    table = (tmp_path / "directions.md").read_text()
    assert "| 0-45 | 2 | -150.0 | 30.0 |" in table  # gains 10 and 50
    assert "| 90-135 | 1 | -300.0 | 0.0 |" in table
    assert "| 315-360 | 1 | -400.0 | 100.0 |" in table
    assert "| all | 4 | -250.0 | 40.0 |" in table
    assert "45-90" not in table  # no goal there
    assert table.splitlines()[2] in capsys.readouterr().out


def test_goal_directions_refuses_results_without_goals(tmp_path, capsys):
    script = load_script("goal_directions")
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"env": "x", "tasks": [{"velocity": 1.0}], "metarl": {}}))
    assert script.main([str(path)]) == 2
    assert "not an AntGoal results.json" in capsys.readouterr().err
    assert not (tmp_path / "directions.md").exists()
