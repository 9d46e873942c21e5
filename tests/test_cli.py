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


def test_benchmark_envs_json(capsys):
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
    r = result["envs"]["metarl/Navigation2D-v0"]
    assert r["batched_steps_per_s"] > 0 and r["sync_steps_per_s"] > 0


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code != 0
