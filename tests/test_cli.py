"""The command line."""

from __future__ import annotations

import json

import pytest

from metarl.cli import main


def test_demo_steps_every_env(capsys):
    assert main(["demo", "--num-envs", "4", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    import envs

    for env_id in envs.ENV_IDS:
        assert env_id in out


def test_smoke_benchmark_envs_json(capsys):
    """Runs and reports a consistent JSON (the rates themselves are timings, not checked)."""
    assert (
        main(
            [
                "benchmark",
                "envs",
                "--env",
                "metarl/Navigation2D-v0",
                "--num-envs",
                "4",
                "--steps",
                "3",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_envs"] == 4 and list(result["envs"]) == ["metarl/Navigation2D-v0"]
    r = result["envs"]["metarl/Navigation2D-v0"]
    assert r["batched_over_sync"] == pytest.approx(r["batched_steps_per_s"] / r["sync_steps_per_s"])


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code != 0


def test_smoke_benchmark_sampler_json_schema(capsys):
    """Runs and reports a consistent JSON (the rates themselves are timings, not checked)."""
    args = ["benchmark", "sampler", "--env", "metarl/Navigation2D-v0", "--tasks", "2"]
    args += ["--episodes", "2", "--horizon", "5", "--repeats", "1", "--async-envs", "2", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["env"] == "metarl/Navigation2D-v0" and result["env_steps"] == 20
    assert result["raw_physics_steps_per_s"] is None  # navigation has no MuJoCo physics
    samplers = result["samplers"]
    assert sorted(samplers) == ["async", "batched", "sync"] and samplers["async"]["num_envs"] == 2
    assert result["ratios"]["batched_over_sync"] == pytest.approx(
        samplers["batched"]["steps_per_s"] / samplers["sync"]["steps_per_s"]
    )


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    import metarl.cli as cli

    code = main(["evaluate", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err

    def bug(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(cli, "_plot", bug)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["plot", str(tmp_path)])
