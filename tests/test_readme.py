"""The README as written: every fenced Python block runs (from a fresh directory beside the
repository's experiments/), and its config table names real keys with their defaults."""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def _config_rows() -> list[tuple[list[str], str, str, str]]:
    """The README's config-key table: (keys, defaults cell, class name, its module's path)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        match = re.fullmatch(
            r"\| (`.*?`) \| (.*?) \| .* \| \[`(\w+)`\]\((metarl/[\w/]+\.py)\) \|", line
        )
        if match:
            keys = re.findall(r"`([^`]+)`", match.group(1))
            rows.append((keys, match.group(2), match.group(3), match.group(4)))
    return rows


def _yaml_value(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string; metarl's loader does not
        try:
            return float(value)
        except ValueError:
            pass
    return value


SECTIONS = {
    "Config": "",
    "PolicyConfig": "policy.",
    "AdaptationConfig": "adaptation.",
    "TRPOConfig": "meta_optimizer.",
    "PPOConfig": "meta_optimizer.",
    "BatchedSamplerConfig": "sampler.",
    "SyncSamplerConfig": "sampler.",
    "AsyncSamplerConfig": "sampler.",
    "RaySamplerConfig": "sampler.",
    "ReptileConfig": "reptile.",
    "IMAMLConfig": "imaml.",
    "CAVIAConfig": "cavia.",
}
"""Each config dataclass the table may link to, and where its keys sit in a config file."""


def test_the_config_table_names_real_keys_and_their_defaults():
    """Every key of the README's config table is a field of the dataclass its row links to,
    with the default the row gives, so the table cannot outlive a renamed or removed key."""
    rows = _config_rows()
    assert len(rows) >= 30, "the README's config table was not found"
    for keys, defaults, name, path in rows:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        fields = {f.name: f for f in dataclasses.fields(getattr(module, name))}
        values = re.findall(r"`([^`]*)`", defaults)
        assert values or defaults == "required", f"{keys}: no default in {defaults!r}"
        assert not values or len(values) == len(keys), f"{keys}: defaults {defaults!r}"
        for i, key in enumerate(keys):
            prefix, _, leaf = key.rpartition(".")
            assert prefix + "." * bool(prefix) == SECTIONS[name], f"{key} is not a key of {name}"
            field = fields.get(leaf)
            assert field is not None, f"the README's config table names {key}, not in {name}"
            if not values:
                assert field.default is dataclasses.MISSING
                assert field.default_factory is dataclasses.MISSING
                continue
            default = (
                field.default_factory()
                if field.default_factory is not dataclasses.MISSING
                else field.default
            )
            assert _yaml_value(values[i]) == default, (
                f"{key}: README {values[i]}, {name} {default!r}"
            )
