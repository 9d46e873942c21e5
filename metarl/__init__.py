"""metarl: meta-reinforcement learning (MAML for RL) on Gymnasium and MuJoCo."""

import envs as _envs  # noqa: F401  (registers the metarl/* Gymnasium ids)

__version__ = "0.1.0"
__all__ = ["__version__"]
