"""What the experiment scripts share: one resumable ``metarl train`` per run directory."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_run(
    config: Path, run_dir: Path, seed: int, iterations: int, overrides: Sequence[str]
) -> Path:
    """``metarl train config`` into ``run_dir`` with ``--set`` overrides, continued with
    ``--resume`` when the directory holds a checkpoint (so a script can be stopped and rerun)."""
    sets = [arg for s in overrides for arg in ("--set", s)]
    resume = ["--resume"] if (run_dir / "checkpoints" / "latest.pt").exists() else []
    command = [
        str(ROOT / ".venv" / "bin" / "metarl"),
        "train",
        str(config),
        "--run-dir",
        str(run_dir),
        "--seed",
        str(seed),
        "--iterations",
        str(iterations),
        "--no-progress",
        *sets,
        *resume,
    ]
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return run_dir
