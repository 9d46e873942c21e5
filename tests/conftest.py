"""Shared test helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from metarl.config import Config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def tiny_navigation_config(**changes) -> Config:
    """The shipped Navigation2D config at a size that trains in a second or two."""
    base = load_config(CONFIGS / "navigation2d.yaml")
    small = dataclasses.replace(
        base,
        iterations=2,
        tasks_per_batch=4,
        episodes_per_task=5,
        horizon=20,
        policy=dataclasses.replace(base.policy, hidden_sizes=[16, 16]),
    )
    return dataclasses.replace(small, **changes)


def spy(monkeypatch, owner, name: str) -> list[tuple]:
    """Wrap ``owner.name`` so that it records the positional arguments of every call (for a
    function set on a class, the instance first) and returns what the original returns."""
    calls: list[tuple] = []
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def train_seeing_settings(trainer, monkeypatch) -> list:
    """Train ``trainer`` and return the ``AdaptationSettings`` each meta-step was handed."""
    calls = spy(monkeypatch, trainer.meta_optimizer, "step")  # (policy, batch, settings, ...)
    trainer.train()
    return [args[2] for args in calls]
