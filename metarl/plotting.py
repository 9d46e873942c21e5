"""Learning curves of meta-training runs: pre- and post-adaptation return per iteration.

Runs are grouped into one curve when their ``config.yaml`` files agree on every
key except ``seed`` and ``iterations`` (the same experiment, other seeds or a
shorter run). A group is drawn as the mean over its runs with a min–max band;
at each iteration only the runs that reached it count. A run without
``config.yaml`` is a group of its own. Labels name the env and, where groups
share an env, the keys in which their configs differ.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metarl.errors import InputError

__all__ = ["REQUIRED_COLUMNS", "group_runs", "plot_runs", "read_progress"]

REQUIRED_COLUMNS = ("iteration", "return_pre", "return_post", "env_steps", "time_s")
# Keys that vary between runs of one experiment and so do not split a group.
_PER_RUN_KEYS = ("seed", "iterations")


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The columns of ``run_dir/progress.csv`` as float arrays (empty cells are NaN).

    Raises:
        FileNotFoundError: the run dir or its ``progress.csv`` does not exist.
        ValueError: a required column is missing, there are no rows, or a cell
            is not a number; the message names the file.
    """
    path = Path(run_dir) / "progress.csv"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run dir {run_dir} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no progress.csv in run dir {run_dir}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {missing}; found {header}, need {list(REQUIRED_COLUMNS)}"
            )
        rows = list(reader)
    if not rows:
        raise InputError(f"{path}: has a header but no rows")
    columns = {}
    for name in header:
        values = []
        for line, row in enumerate(rows, start=2):
            cell = (row.get(name) or "").strip()
            try:
                values.append(float(cell) if cell else math.nan)
            except ValueError:
                if name in REQUIRED_COLUMNS:
                    raise InputError(
                        f"{path}:{line}: column {name!r} holds {cell!r}, not a number"
                    ) from None
                break  # a non-numeric extra column is not ours to plot
        else:
            columns[name] = np.asarray(values)
    return columns


def _config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: expected a mapping of config keys")
    return dict(data)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def group_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[tuple[str, list[Path]]]:
    """``(label, runs)`` per experiment, in the order groups first appear (module docstring)."""
    run_dirs = [Path(r) for r in run_dirs]
    keyed: dict[str, tuple[dict[str, Any] | None, list[Path]]] = {}
    for run in run_dirs:
        config = _config(run)
        if config is None:
            key = f"dir:{run.resolve()}"
        else:
            shared = {k: v for k, v in _flatten(config).items() if k not in _PER_RUN_KEYS}
            key = yaml.safe_dump(shared, sort_keys=True)
        keyed.setdefault(key, (None if config is None else _flatten(config), []))[1].append(run)

    # Where several groups share an env, the keys that tell them apart go in the label.
    configs = [c for c, _ in keyed.values() if c is not None]
    labelled = []
    for config, runs in keyed.values():
        if config is None:
            labelled.append((runs[0].name, runs))
            continue
        env = str(config.get("env", "?"))
        siblings = [c for c in configs if c.get("env") == env]
        differing = sorted(
            k
            for k in set().union(*siblings)
            if k not in _PER_RUN_KEYS and len({repr(c.get(k)) for c in siblings}) > 1
        )
        label = env.split("/")[-1] + "".join(f" {k}={config.get(k)}" for k in differing)
        labelled.append((label, runs))
    return labelled


def _aggregate(curves: Sequence[tuple[np.ndarray, np.ndarray]]):
    """Mean, min and max over runs at every iteration any run reached (NaNs ignored)."""
    iterations = np.unique(np.concatenate([it for it, _ in curves]))
    table = np.full((len(curves), len(iterations)), np.nan)
    for row, (it, values) in enumerate(curves):
        table[row, np.searchsorted(iterations, it)] = values
    present = ~np.isnan(table)
    keep = present.any(axis=0)
    table, iterations = table[:, keep], iterations[keep]
    return iterations, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def plot_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
    x: str = "iteration",
    phases: Sequence[str] = ("pre", "post"),
    labels: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None,
    subgroups: bool = False,
) -> Path:
    """Draw pre- (dashed) and post-adaptation (solid) return vs iteration for the runs.

    Runs of one experiment (see the module docstring) share a colour: the mean
    over seeds with a min–max band. The figure is written with matplotlib's Agg
    backend (no pyplot), in the format of ``out``'s suffix (``.png``, ``.pdf``, ``.svg``).

    ``x`` is the horizontal axis, a ``progress.csv`` column (``iteration`` or
    ``env_steps``, which compares methods that sample differently per iteration);
    ``phases`` picks the curves (``pre``, ``post``); ``labels`` (label -> runs) names
    the groups instead of grouping by config; ``subgroups`` draws each subgroup of the
    task distribution (forward/backward, slow/fast: the ``return_<phase>/<subgroup>``
    columns meta-training logs) as a curve of its own instead of their mean.

    Raises:
        ValueError: no run dirs, or a run's ``progress.csv`` is malformed.
        FileNotFoundError: a run dir or its ``progress.csv`` is missing.
    """
    if isinstance(run_dirs, str | os.PathLike) or not run_dirs:
        raise InputError("plot_runs needs a non-empty list of run dirs")
    if x not in ("iteration", "env_steps"):
        raise InputError(f"x must be 'iteration' or 'env_steps', got {x!r}")
    unknown = [p for p in phases if p not in ("pre", "post")]
    if unknown or not phases:
        raise InputError(f"phases must be some of 'pre', 'post', got {list(phases)!r}")
    runs = [Path(r) for r in run_dirs]
    progress = {run: read_progress(run) for run in runs}  # every error before any drawing
    if labels is None:
        groups = group_runs(runs)
    else:
        groups = [(label, [Path(r) for r in group]) for label, group in labels.items()]
        outside = [r for _, group in groups for r in group if r not in progress]
        if outside:
            raise InputError(f"labels name {outside[0]}, which is not among run_dirs")

    # A bare Figure renders through Agg without pyplot: no display, no global
    # backend switch, nothing left open in the caller's pyplot state.
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = itertools.cycle(rcParams["axes.prop_cycle"].by_key()["color"])
    for label, group in groups:
        seeds = f" ({len(group)} runs)" if len(group) > 1 else ""
        parts = _subgroups([progress[r] for r in group]) if subgroups else []
        if subgroups and not parts:
            raise InputError(
                f"{group[0]}/progress.csv has no per-subgroup columns (return_post/<subgroup>): "
                "its task distribution has one group, or the run predates them; plot without "
                "subgroups"
            )
        for part in parts or [""]:
            colour, name = next(colours), f"{label} {part}" if part else label
            for phase in phases:
                column = f"return_{phase}/{part}" if part else f"return_{phase}"
                style = "--" if phase == "pre" else "-"
                curves = [(progress[r][x], progress[r][column]) for r in group]
                it, mean, low, high = _aggregate(curves)
                ax.plot(it, mean, style, color=colour, label=f"{name}{seeds}, {phase}")
                if len(group) > 1:
                    ax.fill_between(it, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("meta-iteration" if x == "iteration" else "environment steps")
    ax.set_ylabel("average return")
    ax.set_title(title or "pre- (dashed) and post-adaptation (solid) return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def _subgroups(progress: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """The subgroups whose pre- and post-adaptation columns every run of a group has."""
    names = [c.split("/", 1)[1] for c in progress[0] if c.startswith("return_post/")]
    return [
        n
        for n in names
        if all(f"return_{p}/{n}" in run for run in progress for p in ("pre", "post"))
    ]


def read_curve(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps, episode_return)`` per finished episode of an SB3 monitor CSV.

    ``env_steps`` counts environment steps over all sub-envs up to each episode's end
    (episodes in the order they finished), as ``metarl baseline`` writes them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no learning curve at {path}")
    with path.open(newline="") as f:
        lines = f.read().splitlines()
    rows = list(csv.DictReader(lines[1:]))  # line 1 is SB3's JSON header
    if not lines or not lines[0].startswith("#") or (rows and not {"r", "l"} <= rows[0].keys()):
        raise InputError(f"{path} is not an SB3 monitor file (a '#' header, then columns r, l)")
    try:
        returns = np.array([float(row["r"]) for row in rows])
        lengths = np.array([int(row["l"]) for row in rows])
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: a row does not parse ({error})") from None
    return np.cumsum(lengths), returns


def plot_curve(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Draw a baseline's learning curve: every episode's return (faint) and the mean of
    each 1% of the episodes (solid) against environment steps."""
    steps, returns = read_curve(path)
    if len(returns) == 0:
        raise InputError(f"{path} holds no finished episode")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(steps, returns, ".", markersize=1, alpha=0.2, color="grey")
    chunks = np.array_split(np.arange(len(returns)), min(100, len(returns)))
    ax.plot([steps[c[-1]] for c in chunks], [returns[c].mean() for c in chunks], "-")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or Path(path).name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
