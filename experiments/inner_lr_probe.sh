#!/usr/bin/env bash
# The inner step size of a trained run, probed without retraining: `metarl evaluate --inner-lr`
# for each LR on 40 tasks of the evaluation's seed 2 (a validation stream: the held-out
# results use seed 1), one step, against the baselines in BASELINES (adapted with the same
# step). Writes OUT/lr-<LR>/results.{json,md,png}, OUT being RUN/lr-probe unless set (set it
# for a committed run: experiments/results/ holds only the canonical evaluations).
#   OUT=runs/lr-probe/ant-goal experiments/inner_lr_probe.sh experiments/results/ant-goal/seed0 \
#     experiments/results/ant-goal/baselines 0.1 0.15 0.2 0.3
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
  echo "usage: experiments/inner_lr_probe.sh RUN BASELINES LR [LR ...]" >&2
  exit 2
fi
run=$1 baselines=$2
out=${OUT:-$run/lr-probe}
shift 2
for lr in "$@"; do
  .venv/bin/metarl evaluate "$run" --tasks 40 --steps 1 --episodes 20 --seed 2 --inner-lr "$lr" \
    --baselines "$baselines" --out "$out/lr-$lr/results.json" --force
done
