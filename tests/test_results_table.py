"""experiments/results_table.py: the committed results table is what the committed runs give."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metarl.evaluation import _cell, _share, by_subgroup, confidence_interval

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "results_table.py"
CONFIGS = ROOT / "experiments" / "configs"


def _script():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table = _script()


def test_committed_table_is_generated_from_committed_results():
    readme = table.RESULTS / "README.md"
    assert readme.is_file(), f"{readme} is missing: run `{table.REGENERATE}`"
    assert readme.read_text(encoding="utf-8") == table.generate(), (
        f"{readme} is stale: run `{table.REGENERATE}` and commit it"
    )


# A synthetic HalfCheetahDir run written the way `metarl train` and `metarl evaluate` write
# theirs: config.yaml the shipped config's keys (the script reads it as plain YAML),
# results.json by the evaluation's own functions.
DIRECTIONS = [1, -1, 1, 1, -1]


def _curve(per_step: list[list[float]]) -> dict:
    return {str(k): confidence_interval(values) for k, values in enumerate(per_step)}


def _results(offset: float) -> dict:
    tasks = [{"direction": d} for d in DIRECTIONS]
    n = len(tasks)
    metarl = [[10.0 * k + i + offset for i in range(n)] for k in range(4)]
    results = {
        "env": "metarl/HalfCheetahDir-v0",
        "iteration": 2,
        "env_steps": 640,
        "tasks": tasks,
        "seed": 7,
        "episodes": 3,
        "meta_learner": "maml",
        "learned_rates": None,
        "inner_lr": 0.1,
        "reward_scaled_step": None,
        "metarl": _curve(metarl),
        "baselines": {
            "random": _curve([[-5.0 - i for i in range(n)]] * 4),
            "pretrained": _curve([[1.0 + k + 0.5 * i for i in range(n)] for k in range(4)]),
            "oracle": _curve([[100.0 + i for i in range(n)]] * 4),
        },
    }
    groups = ["forward" if d > 0 else "backward" for d in DIRECTIONS]
    results["subgroups"] = by_subgroup(results, groups)
    return results


def _write_run(results_dir: Path, seed: int) -> Path:
    run = results_dir / "halfcheetah-dir" / f"seed{seed}"
    (run / "evaluation").mkdir(parents=True)
    config = yaml.safe_load((CONFIGS / "halfcheetah-dir.yaml").read_text(encoding="utf-8"))
    config.update(seed=seed, iterations=2)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with (run / "progress.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["iteration", "return_pre", "return_post", "env_steps", "time_s"])
        out.writerows([[0, 1.0, 2.0, 320, 3600.0], [1, 2.0, 3.0, 640, 7200.0 + seed]])
    path = run / "evaluation" / "results.json"
    path.write_text(json.dumps(_results(offset=seed), indent=1), encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for seed in (0, 1):
        _write_run(results, seed)
    (results / "halfcheetah-dir" / "baselines").mkdir()
    (results / "halfcheetah-dir" / "baselines" / "pretrained.zip").write_bytes(b"")
    return results


def _rows(text: str, family: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {family} |")
    ]


def test_table_of_a_synthetic_tree(tree: Path):
    text = table.generate(tree, CONFIGS)
    rows = _rows(text, "halfcheetah-dir")
    labels = [(r[1], r[2]) for r in rows]
    assert labels == [
        ("backward (2)", "0"),
        ("backward (2)", "1"),
        ("backward (2)", "mean of 2"),
        ("forward (3)", "0"),
        ("forward (3)", "1"),
        ("forward (3)", "mean of 2"),
    ]
    results = json.loads((tree / "halfcheetah-dir/seed0/evaluation/results.json").read_text())
    forward = results["subgroups"]["forward"]
    seed0 = rows[3]
    assert seed0[3:10] == [
        _cell(forward["metarl"]["0"]),
        _cell(forward["metarl"]["1"]),
        _cell(forward["metarl"]["3"]),
        _cell(forward["baselines"]["pretrained"]["1"]),
        _cell(forward["baselines"]["oracle"]["1"]),
        _share(forward["gap_closed"]["1"]),
        "-",
    ]
    assert seed0[10:13] == ["2", "0.0M", "2.00 h"]
    assert seed0[13] == (
        "`metarl train experiments/configs/halfcheetah-dir.yaml --seed 0 --iterations 2 "
        "--run-dir experiments/results/halfcheetah-dir/seed0 && metarl evaluate "
        "experiments/results/halfcheetah-dir/seed0 --tasks 5 --episodes 3 --seed 7 --steps 3 "
        "--baselines experiments/results/halfcheetah-dir/baselines`"
    )
    # Seed 1's returns are seed 0's plus one: their mean is seed 0's plus a half.
    mean = confidence_interval([forward["metarl"]["1"]["mean"] + s for s in (0, 1)])
    assert rows[5][4] == _cell(mean)
    for family in ("navigation2d", "halfcheetah-vel", "ant-vel", "ant-dir", "ant-goal"):
        (row,) = _rows(text, family)
        assert row[3] == "no run yet"


def test_a_changed_result_changes_the_table_and_fails_the_check(tree: Path, capsys):
    assert table.main(["--results", str(tree), "--configs", str(CONFIGS)]) == 0
    assert table.main(["--check", "--results", str(tree), "--configs", str(CONFIGS)]) == 0
    before = (tree / "README.md").read_text(encoding="utf-8")

    path = tree / "halfcheetah-dir/seed1/evaluation/results.json"
    results = json.loads(path.read_text())
    step = results["subgroups"]["backward"]["metarl"]["3"]
    step["mean"] += 123.4
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    after = table.generate(tree, CONFIGS)
    assert after != before
    assert _cell(step) in after and _cell(step) not in before

    capsys.readouterr()
    assert table.main(["--check", "--results", str(tree), "--configs", str(CONFIGS)]) == 1
    err = capsys.readouterr().err
    assert "README.md is out of date" in err
    assert any(
        line.startswith("+| halfcheetah-dir | backward (2) | 1 |") for line in err.splitlines()
    )
    assert (tree / "README.md").read_text(encoding="utf-8") == before  # --check writes nothing

    # The command line exits 1 as well.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--results", str(tree)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert "out of date" in done.stderr


def test_a_run_of_another_config_is_flagged(tree: Path, tmp_path: Path):
    assert "differs from" not in table.generate(tree, CONFIGS)
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    shipped = configs / "halfcheetah-dir.yaml"
    shipped.write_text(
        shipped.read_text(encoding="utf-8").replace("  lr: 0.1 ", "  lr: 0.2 "), encoding="utf-8"
    )
    text = table.generate(tree, configs)
    for seed in (0, 1):
        assert (
            f"- halfcheetah-dir seed {seed}: config.yaml differs from "
            "experiments/configs/halfcheetah-dir.yaml in `adaptation.lr`" in text
        )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_inside_git_only_tracked_runs_count(tree: Path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "halfcheetah-dir/seed0", "halfcheetah-dir/baselines")
    rows = _rows(table.generate(tree, CONFIGS), "halfcheetah-dir")
    assert [(r[1], r[2]) for r in rows] == [("backward (2)", "0"), ("forward (3)", "0")]
    # A run whose evaluation is not tracked yet is listed as not evaluated.
    git("add", "halfcheetah-dir/seed1/config.yaml", "halfcheetah-dir/seed1/progress.csv")
    rows = _rows(table.generate(tree, CONFIGS), "halfcheetah-dir")
    assert rows[-1][2:4] == ["1", "not evaluated yet (no evaluation/results.json)"]
    assert rows[-1][-1].endswith("--run-dir experiments/results/halfcheetah-dir/seed1`")


# The project README shows the compact table between its markers.


def _block(text: str) -> str:
    start = text.index(table.START_PREFIX)
    return text[text.index("\n", start) + 1 : text.index(table.END)]


def test_readme_table_is_generated_from_committed_results():
    text = table.README.read_text(encoding="utf-8")
    assert text.count(table.START_PREFIX) == 1 and text.count(table.END) == 1
    assert _block(text) == table.readme_block(), (
        f"README.md's results table is stale: run `{table.REGENERATE}` and commit it"
    )


def test_a_changed_cell_of_the_readme_fails_the_check(tmp_path: Path, capsys):
    copy = tmp_path / "README.md"
    text = table.README.read_text(encoding="utf-8")
    copy.write_text(text, encoding="utf-8")
    assert table.main(["--check", "--readme", str(copy)]) == 0
    # One cell of the first evaluated row, as a hand edit would change it.
    block = _block(text)
    row = next(line for line in block.splitlines() if line.startswith("| ") and "%" in line)
    cells = row.split(" | ")
    cells[4] = "999.9 [999.0, 1000.0]"
    copy.write_text(text.replace(row, " | ".join(cells)), encoding="utf-8")
    capsys.readouterr()
    assert table.main(["--check", "--readme", str(copy)]) == 1
    err = capsys.readouterr().err
    assert f"{copy} is out of date" in err
    assert "+" + row in err.splitlines()
    # Without the markers the README cannot hold the table: the check says so.
    copy.write_text(text.replace(table.END, ""), encoding="utf-8")
    with pytest.raises(SystemExit, match="results-table:end"):
        table.main(["--check", "--readme", str(copy)])


def test_readme_block_of_a_synthetic_tree(tree: Path, tmp_path: Path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{table.START}\nstale\n{table.END}\n\nafter\n")
    args = ["--results", str(tree), "--configs", str(CONFIGS), "--readme", str(readme)]
    assert table.main(args) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# title\n\nbefore\n\n{table.START}\n")
    assert text.endswith(f"{table.END}\n\nafter\n") and "stale" not in text
    assert table.main(["--check", *args]) == 0

    # The compact rows are the full table's rows, cut to the compact columns.
    full = _rows(table.generate(tree, CONFIGS), "halfcheetah-dir")
    keep = [table.COLUMNS.index(name) for name in table.COMPACT]
    assert _rows(text, "halfcheetah-dir") == [[row[i] for i in keep] for row in full]
    # The status sentence gives the mean rows' shares of the gap.
    backward, forward = full[2][8], full[5][8]
    assert (
        "- **halfcheetah-dir** (mean of seeds 0, 1; 2 iterations): one adaptation step closes "
        "this share of the gap from the pretrained policy to the oracle: "
        f"backward (2 tasks) {backward}, forward (3 tasks) {forward}." in text
    )
    assert "metarl train experiments/configs/halfcheetah-dir.yaml --seed 1" in text

    # A changed result makes the README stale as well as the results README.
    path = tree / "halfcheetah-dir/seed0/evaluation/results.json"
    results = json.loads(path.read_text())
    results["subgroups"]["forward"]["metarl"]["1"]["mean"] -= 50.0
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    capsys.readouterr()
    assert table.main(["--check", *args]) == 1
    err = capsys.readouterr().err
    assert f"{readme} is out of date" in err
    assert f"{tree / 'README.md'} is out of date" in err
    assert readme.read_text(encoding="utf-8") == text  # --check writes nothing


def test_another_results_folder_leaves_the_project_readme_alone(tree: Path):
    before = table.README.read_text(encoding="utf-8")
    assert table.main(["--results", str(tree), "--configs", str(CONFIGS)]) == 0
    assert table.README.read_text(encoding="utf-8") == before
