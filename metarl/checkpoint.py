"""Run-directory I/O: the policy a config describes, checkpoints written atomically and
loaded without executing code, ``progress.csv``, warm starts, and the meta-trained policy
of a run.

Training, evaluation, rendering and the CLI all read and write run directories
through this module. A checkpoint holds only tensors, numbers, strings, lists
and dicts, so it is read with ``torch.load(weights_only=True)``: a
``latest.pt`` from someone else cannot run code on load (a plain pickle could).
"""

from __future__ import annotations

import csv
import os
import pickle
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.config import Config, ConfigError, read_run_config, upgrade_config_data
from metarl.policies import GaussianMLPPolicy

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "RunLock",
    "WarmStart",
    "append_progress",
    "checkpoint_config",
    "get_rng_states",
    "load_checkpoint",
    "load_policy",
    "load_warm_start",
    "make_policy",
    "progress_rows",
    "save_checkpoint",
    "set_rng_states",
    "truncate_progress",
]

CHECKPOINT_FORMAT = "metarl-checkpoint-v2"
"""v2: loadable with ``weights_only=True`` (v1 held numpy and Python RNG states as pickles)."""


class CheckpointError(RuntimeError):
    """A checkpoint or run directory is missing, corrupt or of another format."""


def make_policy(config: Config, obs_dim: int, act_dim: int) -> GaussianMLPPolicy:
    """The (freshly initialised) policy that ``config.policy`` describes."""
    return GaussianMLPPolicy(
        obs_dim,
        act_dim,
        hidden_sizes=tuple(config.policy.hidden_sizes),
        activation=config.policy.activation,
        init_std=config.policy.init_std,
        init=config.policy.init,
        action_scale=config.policy.action_scale,
        obs_normalization=config.policy.obs_normalization,
        context_dim=config.policy.context_dim,
    )


# --- random-number-generator states as plain data ---------------------------------------------


def get_rng_states() -> dict[str, Any]:
    """The torch, numpy and Python global RNG states as tensors, numbers and lists."""
    return _rng_data(torch.get_rng_state(), np.random.get_state(), random.getstate())


def _rng_data(torch_state: torch.Tensor, numpy_state: tuple, python_state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = numpy_state
    version, internal, gauss_next = python_state
    return {
        "torch": torch_state,
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# --- one process per run directory ------------------------------------------------------------


class RunLock:
    """``RUN_DIR/.lock``: the pid of the process writing the run; a second writer is refused.

    A lock whose process no longer runs (a run killed with SIGKILL, a machine
    that rebooted) is stale and taken over. Use as a context manager or call
    :meth:`release`.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / ".lock"
        self.held = False
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise CheckpointError(
                        f"run directory {self.path.parent} is in use by process {owner} "
                        f"(its {self.path}); wait for it to finish or stop it. If no such "
                        "process runs any more, delete the lock file"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale (or our own): take it over
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return
        raise CheckpointError(f"could not take the lock {self.path}; another process races for it")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self.held and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


# --- checkpoints ----------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (with the format tag) to ``path`` atomically: a temp file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file is never loaded: leave none behind
        raise
    return path


def load_checkpoint(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The state in ``RUN_DIR/checkpoints/latest.pt``, or a :class:`CheckpointError` saying what to do.

    The file is read with ``weights_only=True``: anything but tensors and plain
    data (a pickle that would import or call code) is refused, not executed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist; pass the --run-dir of a training run"
        )
    path = run_dir / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: the run in {run_dir} has not finished an iteration yet, or this is "
            "not a run directory; start it with `metarl train CONFIG --run-dir DIR`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # not a refused import: bytes that are no pickle at all
            raise CheckpointError(
                f"{path} is corrupt or unreadable (not a torch file); restore it from a backup "
                "or retrain"
            ) from None
        raise CheckpointError(
            f"{path} was refused: it holds objects that would run code when loaded, so it is not "
            f"a {CHECKPOINT_FORMAT} file. A checkpoint of metarl before format v2 holds numpy RNG "
            "states this way; only if you trust the file, convert it once with "
            f"`python -m metarl.checkpoint upgrade {run_dir}`"
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"{path} is corrupt or unreadable ({type(err).__name__}: {err}); restore it from a "
            "backup or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a metarl checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})"
        )
    return state


def load_policy(
    run_dir: str | os.PathLike[str],
) -> tuple[Config, GaussianMLPPolicy, dict[str, Any]]:
    """The config, the meta-trained policy and the raw checkpoint state of a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist; pass the directory of a training run"
        )
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} is missing: {run_dir} is not a metarl run directory")
    state = load_checkpoint(run_dir)
    config = read_run_config(config_path)
    spec = state["policy_spec"]
    policy = make_policy(config, spec["obs_dim"], spec["act_dim"])
    policy.load_state_dict(state["policy"])
    return config, policy, state


def checkpoint_config(state: dict[str, Any], path: str | os.PathLike[str]) -> Config:
    """The config a checkpoint's ``state`` was trained with (written by this or an earlier
    metarl; see :func:`metarl.config.upgrade_config_data`)."""
    try:
        return Config.from_dict(upgrade_config_data(state["config"], f"{path} (its config)"))
    except ConfigError as err:
        raise ConfigError(err.reason, key=err.key, source=f"{path} (its config)") from None


# --- warm starts (init_from) ------------------------------------------------------------------


@dataclass(frozen=True)
class WarmStart:
    """What a run started with ``init_from`` takes from its source run."""

    policy: dict[str, Any]
    """The source's policy state (its learned std and observation statistics included)."""
    meta_learner: dict[str, Any]
    """The source's meta-learner state (learned inner rates, say)."""
    info: dict[str, Any]
    """Where the run started: ``run``, ``iteration``, ``env_steps`` (kept in its checkpoints)."""


def load_warm_start(source: str, config: Config, obs_dim: int, act_dim: int) -> WarmStart:
    """The policy of the run in ``source``, checked to fit ``config`` and the env's sizes.

    Raises:
        ConfigError: (key ``init_from``) the source is no run, or its policy does not fit.
    """
    try:
        their_config, theirs, their_state = load_policy(source)
    except (CheckpointError, ConfigError) as err:
        raise ConfigError(f"cannot warm-start from it: {err}", key="init_from") from None
    mine, there = config.policy, their_config.policy
    differing = [
        f"{name} {b!r} there, {a!r} here"
        for name, a, b in (
            ("observation size", obs_dim, theirs.obs_dim),
            ("action size", act_dim, theirs.act_dim),
            ("policy.hidden_sizes", mine.hidden_sizes, there.hidden_sizes),
            ("policy.activation", mine.activation, there.activation),
            ("policy.action_scale", mine.action_scale, there.action_scale),
            ("policy.obs_normalization", mine.obs_normalization, there.obs_normalization),
            ("policy.context_dim", mine.context_dim, there.context_dim),
        )
        if a != b
    ]
    if differing:
        raise ConfigError(
            f"the policy of {source} does not fit this config ({'; '.join(differing)}): "
            "warm-start from a run of the same env and policy, or set init_from: null",
            key="init_from",
        )
    info = {
        "run": source,
        "iteration": int(their_state["iteration"]),
        "env_steps": int(their_state["env_steps"]),
    }
    return WarmStart(theirs.state_dict(), their_state.get("meta_learner", {}), info)


# --- progress.csv -----------------------------------------------------------------------------


def progress_header(path: Path) -> list[str] | None:
    """The columns of a ``progress.csv`` (``None``: no file, or an empty one)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None)


def progress_rows(path: Path) -> int:
    """The number of rows below the header of a ``progress.csv`` (0 without a file)."""
    if not path.exists():
        return 0
    with path.open(newline="", encoding="utf-8") as f:
        return max(sum(1 for row in csv.reader(f) if row) - 1, 0)


def append_progress(path: Path, row: dict[str, float]) -> None:
    """Append one iteration's ``row`` to ``progress.csv`` (a header first for a new file).

    A column that appeared (or moved) since the file was started, e.g. a run resumed by a
    newer metarl, rewrites it under the union of the columns, blanks for the old rows.
    """
    fields = list(row)
    existing = progress_header(path)
    if existing is not None and existing != fields:
        fields = existing + [f for f in fields if f not in existing]
        with path.open(newline="", encoding="utf-8") as f:
            old_rows = list(csv.DictReader(f))
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.DictWriter(f, fieldnames=fields, restval="")
            out.writeheader()
            out.writerows(old_rows)
    with path.open("a", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=fields, restval="")
        if existing is None:
            out.writeheader()
        out.writerow(row)


def truncate_progress(path: Path, iterations_done: int) -> None:
    """Make ``progress.csv`` the history of the checkpoint's ``iterations_done`` iterations.

    Rows logged after the checkpoint (a run stopped between the two writes) and a
    row cut short (a run killed mid-write) are dropped; rows that are missing (a
    deleted or edited file) cannot be recovered and are reported.
    """
    rows: list[list[str]] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    header, kept = (rows[0], []) if rows else (None, [])
    for row in rows[1:]:
        if header is None or len(row) != len(header) or not _parses(row):
            continue
        if int(row[0]) < iterations_done:
            kept.append(row)
    dropped = len(rows) - 1 - len(kept) if rows else 0
    seen = {int(r[0]) for r in kept}
    missing = [i for i in range(iterations_done) if i not in seen]
    if missing:
        warnings.warn(
            f"{path} lacks the rows of iteration(s) {_ranges(missing)} of the "
            f"{iterations_done} in the checkpoint; they cannot be recovered. Training goes on; "
            "the curve has a gap there",
            RuntimeWarning,
            stacklevel=4,
        )
    if header is not None and dropped:
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *sorted(kept, key=lambda r: int(r[0]))])


def _parses(row: list[str]) -> bool:
    """Whether every cell of a progress row is a number (blank cells allowed but the first)."""
    try:
        int(row[0])
        for cell in row[1:]:
            if cell:
                float(cell)
    except ValueError:
        return False
    return True


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts, start = [], numbers[0]
    for previous, current in zip(numbers, [*numbers[1:], None], strict=True):
        if current != previous + 1 if current is not None else True:
            parts.append(f"{start}-{previous}" if previous != start else f"{start}")
            start = current
    return ", ".join(parts)


def upgrade(run_dir: str | os.PathLike[str]) -> Path:
    """Rewrite a format-v1 ``latest.pt`` as v2. It unpickles the old file: trusted files only."""
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != "metarl-checkpoint-v1":
        raise CheckpointError(f"{path} is not a metarl-checkpoint-v1 file")
    rng = state["rng"]
    state["rng"] = _rng_data(rng["torch"], rng["numpy"], rng["python"])
    del state["format"]
    return save_checkpoint(state, path)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "upgrade":
        sys.exit("usage: python -m metarl.checkpoint upgrade RUN_DIR   (trusted files only)")
    print(f"wrote {upgrade(sys.argv[2])}")
