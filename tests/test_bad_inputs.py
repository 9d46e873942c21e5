"""Bad input at the command line: exit code 2, one line naming the problem, no traceback,
nothing overwritten or lost (the catalogue of the "nothing silent" review, as tests)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import CONFIGS, tiny_navigation_config

from metarl.cli import main
from metarl.trainer import Trainer

NAV = str(CONFIGS / "navigation2d.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "run"
    Trainer(tiny_navigation_config(iterations=1), path, progress=False).train()
    return path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _refused(argv: list[str], capsys, *words: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv}: exit code {code}, stderr {err!r}"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--tasks", "0"], ["--tasks", "at least 1"]),
        (["--episodes", "0"], ["--episodes"]),
        (["--steps", "-1"], ["--steps", "at least 0"]),
    ],
)
def test_evaluate_bad_sizes(run_dir, capsys, tmp_path, extra, words):
    before = _snapshot(run_dir)
    _refused(["evaluate", str(run_dir), "--out", str(tmp_path / "r.json"), *extra], capsys, *words)
    assert _snapshot(run_dir) == before and not (tmp_path / "r.json").exists()


def test_evaluate_refuses_to_overwrite_and_force_does(run_dir, capsys, tmp_path):
    out = tmp_path / "results.json"
    args = ["evaluate", str(run_dir), "--tasks", "2", "--steps", "1", "--episodes", "2"]
    assert main([*args, "--out", str(out)]) == 0
    first = out.read_bytes()
    _refused([*args, "--out", str(out), "--seed", "7"], capsys, "exists", "--force")
    assert out.read_bytes() == first
    assert main([*args, "--out", str(out), "--seed", "7", "--force"]) == 0
    assert out.read_bytes() != first


def test_one_task_writes_null_intervals_that_strict_json_reads(run_dir, tmp_path):
    out = tmp_path / "one.json"
    args = ["evaluate", str(run_dir), "--tasks", "1", "--steps", "1", "--episodes", "2"]
    assert main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    results = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert results["metarl"]["1"]["ci95"] == [None, None]
    assert "no interval" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--max-steps", "0"], ["--max-steps", "at least 1"]),
        (["--steps", "-1"], ["--steps", "at least 0"]),
        (["--width", "0"], ["--width"]),
        (["--out", "video.avi"], [".mp4 or .gif"]),
    ],
)
def test_render_bad_arguments(run_dir, capsys, tmp_path, extra, words):
    out = ["--out", str(tmp_path / "v.gif")] if "--out" not in extra else []
    _refused(["render", str(run_dir), *out, *extra], capsys, *words)
    assert not (tmp_path / "v.gif").exists()


def test_render_output_that_is_a_directory(run_dir, capsys, tmp_path):
    (tmp_path / "v.gif").mkdir()
    _refused(["render", str(run_dir), "--out", str(tmp_path / "v.gif")], capsys, "directory")


def test_baseline_out_must_be_a_zip(capsys, tmp_path):
    _refused(
        ["baseline", "oracle", NAV, "--out", str(tmp_path / "oracle.txt"), "--no-progress"],
        capsys,
        ".zip",
    )
    assert not (tmp_path / "oracle.txt").exists()


def test_baseline_zero_timesteps(capsys, tmp_path):
    _refused(
        ["baseline", "oracle", NAV, "--out", str(tmp_path / "o.zip"), "--timesteps", "0"],
        capsys,
        "--timesteps",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algo-kwargs", "[1]"], "--algo-kwargs must be a YAML mapping"),
        (["--algo-kwargs", "{a: [}"], "--algo-kwargs is not valid YAML"),
        (["--algo-kwargs", "{bogus: 1}"], "bogus"),
        (["--n-envs", "0"], "--n-envs"),
    ],
)
def test_baseline_bad_algorithm_arguments(capsys, tmp_path, extra, message):
    out = tmp_path / "o.zip"
    _refused(
        ["baseline", "oracle", NAV, "--out", str(out), "--timesteps", "64", *extra], capsys, message
    )
    assert not out.exists()


def test_baseline_resume_needs_the_zip_and_excludes_force(capsys, tmp_path):
    out = tmp_path / "o.zip"
    _refused(["baseline", "oracle", NAV, "--out", str(out), "--resume"], capsys, "does not exist")
    assert not out.exists() and not list(tmp_path.iterdir())
    out.write_bytes(b"kept")
    _refused(["baseline", "oracle", NAV, "--out", str(out), "--resume", "--force"], capsys, "one")
    _refused(["baseline", "oracle", NAV, "--out", str(out)], capsys, "--resume", "--force")
    _refused(["baseline", "oracle", NAV, "--out", str(out), "--save-every", "-1"], capsys, "save")
    _refused(["baseline", "oracle", NAV, "--out", str(out), "--resume"], capsys, "not a saved")
    assert out.read_bytes() == b"kept"


def test_baseline_sac_is_for_the_oracle(capsys, tmp_path):
    out = tmp_path / "p.zip"
    _refused(["baseline", "pretrain", NAV, "--out", str(out), "--algo", "sac"], capsys, "oracle")
    assert not out.exists()


def test_setting_one_task_on_a_vector_env_is_refused():
    vec = gym.make_vec(
        "metarl/HalfCheetahDir-v0", num_envs=2, vectorization_mode="vector_entry_point"
    )
    with pytest.raises(AttributeError, match=r"set_attr\('task'"):
        vec.unwrapped.task = {"direction": -1.0}
    vec.set_attr("task", [{"direction": -1.0}] * 2)
    assert vec.get_attr("task") == ({"direction": -1.0}, {"direction": -1.0})
    assert np.all(vec.unwrapped._task_arrays["direction"] == -1.0)


def test_evaluate_on_a_missing_run(capsys, tmp_path):
    _refused(["evaluate", str(tmp_path / "nowhere")], capsys, "does not exist")


def test_missing_baselines_directory(run_dir, capsys, tmp_path):
    _refused(
        [
            "evaluate",
            str(run_dir),
            "--out",
            str(tmp_path / "r.json"),
            "--baselines",
            str(tmp_path / "b"),
        ],
        capsys,
        "--baselines",
    )


def test_a_meta_batch_that_cannot_fit_is_refused_before_any_work(capsys, tmp_path):
    run = tmp_path / "run"
    err = _refused(
        ["train", NAV, "--run-dir", str(run), "--set", "tasks_per_batch=100000000"],
        capsys,
        "tasks_per_batch",
        "GiB",
    )
    assert "episodes_per_task" in err and not run.exists()


def test_the_shipped_configs_fit_the_memory_estimate():
    from metarl.config import load_config
    from metarl.trainer import memory_needed

    for name, dims in (("halfcheetah-dir", (17, 6)), ("ant-vel", (105, 8))):
        config = load_config(CONFIGS / f"{name}.yaml")
        assert memory_needed(config, *dims) < 4 * 2**30  # paper scale: well under 4 GiB


@pytest.mark.parametrize(
    "argv",
    [
        ["benchmark", "sampler", "--tasks", "0"],
        ["benchmark", "sampler", "--env", "metarl/Nowhere-v0"],
        ["benchmark", "envs", "--num-envs", "0"],
        ["benchmark", "envs", "--env", "metarl/Nowhere-v0"],
        ["demo", "--steps", "-1"],
    ],
)
def test_benchmark_and_demo_sizes_and_envs(capsys, argv):
    _refused(argv, capsys, "--")
