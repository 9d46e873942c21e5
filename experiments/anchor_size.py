"""How large ``meta_optimizer.anchor_kl_coeff`` must be: the anchor's pull against the meta-loss's.

Samples one meta-batch of RUN (its config, its policy and learned rates, iteration
``--iteration``'s seeds) and measures, on it, two gradients with respect to the policy's
parameters: the meta-loss's (PPO's clipped surrogate at the sampled policy, as a meta-step's
first epoch sees it; ProMP's inner-KL penalty is at its minimum there and adds nothing) and
the gradient of the pre-step policy's mean KL from ANCHOR (an earlier state of the same run),
at weight 1. A weight ``c`` stops the drift where ``c`` times the anchor's gradient meets the
part of the meta-loss's along it; the anchor's gradient grows about as the square root of the
KL. Writes the KL, both norms, their cosine and the median per-entry sizes as JSON.

    .venv/bin/python experiments/anchor_size.py \\
        experiments/results/halfcheetah-dir-ablations/continue-learn-lr-guard-seed0 \\
        experiments/results/halfcheetah-dir-ablations/continue-learn-lr-guard-seed0/snapshot-150 \\
        --iteration 219 --out experiments/results/halfcheetah-dir-ablations/anchor-size.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metarl.adaptation import AdaptationSettings, policy_stats
from metarl.api import load_config, load_run
from metarl.meta_optimizers.trpo import mean_kl
from metarl.objectives import MetaBatch, clipped_surrogate
from metarl.policies import Params, params_of
from metarl.trainer import Trainer


class GradientProbe:
    """Stands in for the meta-optimizer for one iteration: measures, changes nothing."""

    def __init__(self, anchor: Params, clip: float) -> None:
        self.anchor, self.clip = anchor, clip

    def step(
        self, policy: nn.Module, batch: MetaBatch, adaptation: AdaptationSettings, learner: Any
    ) -> dict[str, float]:
        theta = params_of(policy)
        policy_tensors = list(theta.values())

        def clipped(log_probs: Tensor, old: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
            return clipped_surrogate(log_probs, old, advantages, mask, self.clip)

        trace, mean, std = learner.adapted_stats(
            policy, theta, batch, adaptation, adaptation.first_order
        )
        loss = learner.meta_loss(policy, theta, batch, adaptation, trace, mean, std, clipped)
        params = learner.meta_parameters(policy)
        grads = learner.meta_gradient(policy, loss, params, trace, batch, adaptation)
        meta = torch.cat([g.flatten() for g in grads[: len(policy_tensors)]])

        pre = batch.first_pre
        with torch.no_grad():
            anchor_mean, anchor_std = policy_stats(policy, self.anchor, pre.observations)
        pre_mean, pre_std = policy_stats(policy, theta, pre.observations)
        kl = mean_kl(anchor_mean, anchor_std, pre_mean, pre_std, pre.mask)
        anchor = torch.cat([g.flatten() for g in torch.autograd.grad(kl, policy_tensors)])
        return {
            "anchor_kl": float(kl.detach()),
            "meta_loss_gradient_norm": float(meta.norm()),
            "anchor_gradient_norm": float(anchor.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(meta, anchor, dim=0)),
            "meta_loss_gradient_median_entry": float(meta.abs().median()),
            "anchor_gradient_median_entry": float(anchor.abs().median()),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("anchor", type=Path)
    parser.add_argument("--iteration", type=int, required=True, help="whose seeds to sample")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_config(args.run / "config.yaml", [f"init_from={args.run}", "iterations=1"])
    if config.meta_optimizer.name != "ppo":
        parser.error(f"{args.run} is a {config.meta_optimizer.name} run: anchor_kl_coeff is PPO's")
    anchor = {n: p.detach().clone() for n, p in load_run(args.anchor).policy.named_parameters()}
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(config, Path(scratch) / "run", progress=False)
        trainer.meta_optimizer = GradientProbe(anchor, config.meta_optimizer.clip)
        with trainer.make_sampler() as sampler:
            row = trainer.iteration(sampler, args.iteration)
        trainer.close()
    measured = ("anchor_kl", "meta_loss_gradient_norm", "anchor_gradient_norm", "cosine")
    medians = ("meta_loss_gradient_median_entry", "anchor_gradient_median_entry")
    returns = [k for k in row if k.startswith(("return_pre", "return_post"))]
    result = {
        "run": str(args.run),
        "anchor": str(args.anchor),
        "iteration": args.iteration,
        **{k: row[k] for k in (*returns, *measured, *medians)},
        "anchor_to_meta_loss_ratio": row["anchor_gradient_norm"] / row["meta_loss_gradient_norm"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
