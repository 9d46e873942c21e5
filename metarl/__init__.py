"""metarl: meta-reinforcement learning (MAML for RL) on Gymnasium and MuJoCo.

Meta-train a policy that adapts to a new task in one policy-gradient step, adapt
it, roll it out and render it:

- ``load_config(path, **values)``: a checked config from YAML (``Config``).
- ``train(config, run_dir=None, resume=False, progress=True)``: meta-train; returns the run directory.
- ``load_run(run_dir)``: a ``Run`` with ``adapt``, ``rollout``, ``evaluate`` and ``render``.
- ``Adapted``: what ``Run.adapt`` returns (parameters and returns per step).

``import metarl`` also registers the ``metarl/*`` Gymnasium ids.
"""

import envs as _envs  # noqa: F401  (registers the metarl/* Gymnasium ids)

# The components register their config sections and names with metarl.config when imported
# (as envs registers its ids), so every config built after `import metarl` knows them all.
from metarl import meta_learners as _meta_learners  # noqa: F401
from metarl import meta_optimizers as _meta_optimizers  # noqa: F401
from metarl import objectives as _objectives  # noqa: F401
from metarl import sampling as _sampling  # noqa: F401
from metarl.api import Adapted, Run, load_config, load_run
from metarl.config import Config


def __getattr__(name: str):
    # ``metarl.train`` is loaded on first use, so that importing metarl (to evaluate,
    # render or load a run) does not import the training loop.
    if name == "train":
        from metarl.trainer import train

        return train
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["Adapted", "Config", "Run", "__version__", "load_config", "load_run", "train"]
