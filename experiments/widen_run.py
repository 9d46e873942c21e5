"""A finished run's policy widened without changing what it does: the source of a warm start.

Each hidden layer of the run's policy grows to the given width (Net2Net-style, Chen et al.
2016, with zero outgoing weights): the old units keep their weights, the new ones get the
policy's own initialisation for their incoming weights and zero for their outgoing ones, so
the widened network computes the same actions (checked to 1e-5 here) while its meta-gradient
reaches the new units. Writes OUT/config.yaml (the run's config with the new widths) and
OUT/checkpoints/latest.pt (the run's checkpoint with the widened policy); pass OUT as
``init_from`` of a run with the same ``policy.hidden_sizes``.

    .venv/bin/python experiments/widen_run.py experiments/results/halfcheetah-dir/seed1 \\
        experiments/results/halfcheetah-dir-ablations/widened-source-seed1 --hidden 256 256
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from metarl.checkpoint import load_policy, make_policy, save_checkpoint
from metarl.config import save_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--new-scale",
        type=float,
        default=1.0,
        help="the new units' incoming weights are the initialisation's times this",
    )
    args = parser.parse_args(argv)
    config, old, state = load_policy(args.run)
    if len(args.hidden) != len(config.policy.hidden_sizes) or any(
        new < was for new, was in zip(args.hidden, config.policy.hidden_sizes, strict=True)
    ):
        raise SystemExit(
            f"--hidden {args.hidden}: give one width per hidden layer of the run's "
            f"{config.policy.hidden_sizes}, none narrower"
        )
    wide_config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, hidden_sizes=list(args.hidden))
    )
    torch.manual_seed(args.seed)
    wide = make_policy(wide_config, old.obs_dim, old.act_dim)
    theirs, mine = old.state_dict(), wide.state_dict()
    with torch.no_grad():
        for name, value in theirs.items():
            target = mine[name]
            if name.endswith(".weight"):
                target[value.shape[0] :] *= args.new_scale
                # new inputs (the output layer's included): no say in any unit
                target[:, value.shape[1] :] = 0.0
                target[: value.shape[0], : value.shape[1]] = value
            else:
                target[: value.shape[0]] = value
    wide.load_state_dict(mine)
    obs = torch.randn(256, old.obs_dim) * 3
    with torch.no_grad():
        gap = (wide(obs, stats=True)[0] - old(obs, stats=True)[0]).abs().max().item()
    if gap > 1e-5:
        raise SystemExit(f"the widened policy differs from the run's by {gap}: not widened")
    args.out.joinpath("checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(wide_config, args.out / "config.yaml")
    save_checkpoint({**state, "policy": wide.state_dict()}, args.out / "checkpoints" / "latest.pt")
    print(
        f"wrote {args.out} ({config.policy.hidden_sizes} -> {args.hidden}; max |action gap| {gap:.1e})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
