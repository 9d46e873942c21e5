"""Every fenced Python block of the README runs as written (from the repository root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_the_api_examples():
    text = "\n".join(BLOCKS)
    for call in ("metarl.train(", "metarl.load_run(", ".adapt(", ".render(", ".rollout("):
        assert call in text, f"the README's Python examples must show {call}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    code = BLOCKS[index]
    # The block sees the repository's experiments/ (for its relative paths) but writes
    # its runs/ into a fresh directory, so it runs as on a fresh clone every time.
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    script = tmp_path / "block.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"README block {index} failed:\n{code}\n{result.stderr[-3000:]}"
