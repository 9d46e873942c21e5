"""Task distributions: the protocol every metarl environment follows, and task validation.

A task is a plain JSON-able dict such as ``{"velocity": 1.3}``. Each family
declares its task fields once (:class:`TaskField`); sampling, validation and
the array form that the reward formulas read all come from that declaration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "ArrayDefinitions",
    "Arrays",
    "TaskDistribution",
    "TaskField",
    "task_arrays",
    "validate_task",
    "validate_tasks",
]


@dataclass(frozen=True)
class TaskField:
    """One entry of a task dict and its distribution.

    Attributes:
        name: the key in the task dict.
        kind: ``"uniform"`` (a float in ``[low, high]``), ``"sign"`` (-1 or +1 with
            probability 1/2 each), ``"box"`` (a point uniform in ``[low, high]^dim``)
            or ``"disk"`` (a point uniform in the disk of radius ``high`` around 0).
        low, high: the support's bounds (``high`` is the radius for ``"disk"``).
        dim: the length of a point for ``"box"`` and ``"disk"``.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    dim: int = 1

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        if self.kind == "uniform":
            return [float(v) for v in rng.uniform(self.low, self.high, size=n)]
        if self.kind == "sign":
            return [float(v) for v in rng.choice([-1.0, 1.0], size=n)]
        if self.kind == "box":
            return [[float(x) for x in p] for p in rng.uniform(self.low, self.high, (n, self.dim))]
        if self.kind == "disk":
            # Uniform in area: radius from the square root of a uniform draw.
            radius = self.high * np.sqrt(rng.uniform(0.0, 1.0, size=n))
            angle = rng.uniform(0.0, 2 * np.pi, size=n)
            return [
                [float(r * np.cos(a)), float(r * np.sin(a))]
                for r, a in zip(radius, angle, strict=True)
            ]
        raise AssertionError(f"unknown task field kind {self.kind!r}")

    def support(self) -> str:
        return {
            "uniform": f"a number in [{self.low}, {self.high}]",
            "sign": "-1 or 1",
            "box": f"a list of {self.dim} numbers, each in [{self.low}, {self.high}]",
            "disk": f"a list of {self.dim} numbers within distance {self.high} of the origin",
        }[self.kind]

    def validate(self, value: Any) -> Any:
        """The value in canonical form, or ``ValueError`` naming the key and its support."""
        problem = f"task key {self.name!r} must be {self.support()}, got {value!r}"
        if self.kind in ("uniform", "sign"):
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(problem)
            value = float(value)
            inside = value in (-1.0, 1.0) if self.kind == "sign" else self.low <= value <= self.high
            if not inside:
                raise ValueError(problem)
            return value
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(
            value, (Sequence, np.ndarray)
        ):
            raise ValueError(problem)
        if len(value) != self.dim or any(
            isinstance(v, bool) or not isinstance(v, Real) for v in value
        ):
            raise ValueError(problem)
        point = [float(v) for v in value]
        if self.kind == "box":
            inside = all(self.low <= v <= self.high for v in point)
        else:
            inside = float(np.hypot(*point)) <= self.high + 1e-12
        if not inside or not all(np.isfinite(point)):
            raise ValueError(problem)
        return point


def validate_task(fields: Sequence[TaskField], task: Any) -> dict[str, Any]:
    """Check a task dict against its fields; return it in canonical form (floats, lists)."""
    names = [f.name for f in fields]
    if not isinstance(task, Mapping):
        raise ValueError(f"a task must be a dict with keys {names}, got {type(task).__name__}")
    unknown = [k for k in task if k not in names]
    if unknown:
        raise ValueError(
            f"unknown task key {unknown[0]!r}; this task distribution has keys {names}"
        )
    missing = [n for n in names if n not in task]
    if missing:
        raise ValueError(
            f"task is missing key {missing[0]!r}; this task distribution has keys {names}"
        )
    return {f.name: f.validate(task[f.name]) for f in fields}


def validate_tasks(fields: Sequence[TaskField], tasks: Any, num_envs: int) -> list[dict[str, Any]]:
    """Check one task per sub-env; a list of the wrong length names both lengths."""
    if isinstance(tasks, Mapping) or not isinstance(tasks, Sequence):
        raise ValueError(
            f"expected a list of {num_envs} task dicts (one per sub-env), got {type(tasks).__name__}"
        )
    if len(tasks) != num_envs:
        raise ValueError(
            f"expected a list of {num_envs} tasks (one per sub-env), got a list of length {len(tasks)}"
        )
    return [validate_task(fields, t) for t in tasks]


def task_arrays(
    fields: Sequence[TaskField], tasks: Sequence[Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """The tasks as float64 arrays with a leading task axis, for the array reward formulas."""
    return {f.name: np.asarray([t[f.name] for t in tasks], dtype=np.float64) for f in fields}


class TaskDistribution:
    """Mixin for a single env with a task: ``sample_tasks``, the ``task`` property, ``set_task``.

    A subclass sets ``task_fields`` and calls :meth:`_init_task` in its constructor.
    """

    task_fields: tuple[TaskField, ...] = ()

    def _init_task(self, task: Mapping[str, Any] | None) -> None:
        if task is None:
            task = self.sample_tasks(1, rng=np.random.default_rng(0))[0]
        self.task = task

    @classmethod
    def sample_tasks(cls, n: int, rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
        """``n`` tasks drawn from the distribution; pass a seeded ``rng`` to reproduce them."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rng = np.random.default_rng() if rng is None else rng
        columns = {f.name: f.sample(rng, n) for f in cls.task_fields}
        return [{name: values[i] for name, values in columns.items()} for i in range(n)]

    @property
    def task(self) -> dict[str, Any]:
        return dict(self._task)

    @task.setter
    def task(self, task: Mapping[str, Any]) -> None:
        self._task = validate_task(self.task_fields, task)
        self._task_arrays = task_arrays(self.task_fields, [self._task])

    def set_task(self, task: Mapping[str, Any]) -> None:
        """Set the task the next steps are rewarded for (same as assigning ``task``)."""
        self.task = task

    @classmethod
    def subgroups(cls) -> tuple[str, ...]:
        """The parts of the distribution that results are reported for, in order.

        A direction splits into ``forward`` and ``backward``; a uniform scalar into
        the lower and the upper half of its support (``velocity < 1``,
        ``velocity >= 1``); anything else is one group, ``all``.
        """
        if len(cls.task_fields) != 1:
            return ("all",)
        (f,) = cls.task_fields
        if f.kind == "sign":
            return ("forward", "backward")
        if f.kind == "uniform":
            middle = (f.low + f.high) / 2
            return (f"{f.name} < {middle:g}", f"{f.name} >= {middle:g}")
        return ("all",)

    @classmethod
    def task_subgroup(cls, task: Mapping[str, Any]) -> str:
        """The one of :meth:`subgroups` that ``task`` belongs to."""
        groups = cls.subgroups()
        if len(groups) == 1:
            return groups[0]
        (f,) = cls.task_fields
        value = task[f.name]
        if f.kind == "sign":
            return groups[0] if value > 0 else groups[1]
        return groups[0] if value < (f.low + f.high) / 2 else groups[1]


Arrays = dict[str, np.ndarray]


class ArrayDefinitions(TaskDistribution):
    """A family's observation, reward and termination, written once over arrays.

    Every method takes arrays with a leading batch axis ``N``: the single env
    calls them with ``N = 1`` and the batched engine with ``N = num_envs``, so
    there is one copy of each formula. ``state`` is the family's physical state
    as named arrays (``qpos``/``qvel``/``cfrc_ext`` for MuJoCo, ``position``
    for navigation); ``before`` is the state at the start of the step.

    A family's settings are class attributes; those named in ``options`` can be
    changed per env with constructor keywords in Gymnasium v5 style
    (``gym.make(id, ctrl_cost_weight=0.1)``, ``gym.make_vec(id, ..., **kwargs)``):
    :meth:`with_options` gives the family with them changed, and both engines
    evaluate the formulas on it.
    """

    options: ClassVar[tuple[str, ...]] = ()

    # What the family can do, asked by code outside envs/ (which never names a class):
    engine_takes_threads: ClassVar[bool] = False
    """Its batched engine (``vector_env``) takes ``num_threads``."""
    render_needs_opengl: ClassVar[bool] = False
    """``render_mode="rgb_array"`` draws through MuJoCo's OpenGL (a backend must work)."""
    render_kwargs: ClassVar[dict[str, Any]] = {}
    """Constructor keywords for rendering videos (a camera), beside ``render_mode``, ``width``, ``height``."""

    @classmethod
    def physics_model(cls) -> Any:
        """The MuJoCo model its engine steps (``None`` for a family without MuJoCo physics)."""
        return None

    @classmethod
    def with_options(cls, **options: Any) -> type[ArrayDefinitions]:
        """This family with the settings ``options`` changed (itself when there are none).

        Raises:
            TypeError: an unknown option (naming the valid ones).
            ValueError: a value of the wrong type or out of range, naming the option.
        """
        if not options:
            return cls
        unknown = [name for name in options if name not in cls.options]
        if unknown:
            valid = ", ".join(cls.options) or "none"
            raise TypeError(
                f"{cls.__name__} got an unknown option {unknown[0]!r} (options: {valid})"
            )
        values = {
            name: _check_option(name, value, getattr(cls, name)) for name, value in options.items()
        }
        return type(cls.__name__, (cls,), {"__module__": cls.__module__, **values})

    @classmethod
    def observation(cls, state: Arrays) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def reward(
        cls, before: Arrays, state: Arrays, action: np.ndarray, tasks: Arrays
    ) -> tuple[np.ndarray, Arrays]:
        """``(reward, parts)``: the reward is the sum of the parts, each ``[N]``."""
        raise NotImplementedError

    @classmethod
    def terminated(cls, state: Arrays) -> np.ndarray:
        return np.zeros(len(next(iter(state.values()))), dtype=bool)

    @classmethod
    def step_info(cls, before: Arrays, state: Arrays) -> Arrays:
        return {}

    @classmethod
    def reset_info(cls, state: Arrays) -> Arrays:
        return {}

    @classmethod
    def step_arrays(
        cls, before: Arrays, state: Arrays, action: np.ndarray, tasks: Arrays
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Arrays]:
        """Observation, reward, termination and info (reward parts included) of a step."""
        reward, parts = cls.reward(before, state, action, tasks)
        info = {**cls.step_info(before, state), **parts}
        return cls.observation(state), reward, cls.terminated(state), info


def _check_option(name: str, value: Any, default: Any) -> Any:
    """``value`` in the form of the option's default (bool, number or (low, high) range)."""
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"option {name!r} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
            raise ValueError(f"option {name!r} must be a finite number, got {value!r}")
        if value < 0:
            raise ValueError(f"option {name!r} must be non-negative, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        ok = (
            isinstance(value, (Sequence, np.ndarray))
            and not isinstance(value, str)
            and len(value) == 2
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
            and value[0] < value[1]
        )
        if not ok:
            raise ValueError(
                f"option {name!r} must be a range [low, high] with low < high, got {value!r}"
            )
        return (float(value[0]), float(value[1]))
    raise AssertionError(f"option {name!r} has an unsupported default {default!r}")


def first(arrays: Arrays) -> dict[str, Any]:
    """Row 0 of each array, as the scalar infos a single env returns."""
    return {k: v[0] for k, v in arrays.items()}
