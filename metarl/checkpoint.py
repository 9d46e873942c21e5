"""Run-directory I/O: the policy a config describes, checkpoints written atomically and
loaded without executing code, and the meta-trained policy of a run.

Training, evaluation, rendering and the CLI all read and write run directories
through this module. A checkpoint holds only tensors, numbers, strings, lists
and dicts, so it is read with ``torch.load(weights_only=True)``: a
``latest.pt`` from someone else cannot run code on load (a plain pickle could).
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.config import Config, load_config
from metarl.policies import GaussianMLPPolicy

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "RunLock",
    "get_rng_states",
    "load_checkpoint",
    "load_policy",
    "make_policy",
    "save_checkpoint",
    "set_rng_states",
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
    config = load_config(config_path)
    spec = state["policy_spec"]
    policy = make_policy(config, spec["obs_dim"], spec["act_dim"])
    policy.load_state_dict(state["policy"])
    return config, policy, state


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
