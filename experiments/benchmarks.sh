#!/usr/bin/env bash
# Every speed figure in the README's performance section, written as JSON beside this
# script in results/benchmarks/. Run on an otherwise idle machine: each command
# measures its reference (raw physics, the sync sampler) in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=experiments/results/benchmarks
mkdir -p "$out"
metarl=.venv/bin/metarl
$metarl benchmark envs --num-envs 800 --json > "$out/envs.json"
$metarl benchmark sampler --env metarl/HalfCheetahVel-v0 --json > "$out/sampler-halfcheetah-vel.json"
$metarl benchmark sampler --env metarl/AntVel-v0 --json > "$out/sampler-ant-vel.json"
for fvp in adapted_fisher gauss_newton; do
  $metarl benchmark iteration --config experiments/configs/halfcheetah-vel.yaml \
    --set meta_optimizer.fvp=$fvp --json | tail -n 1 > "$out/iteration-halfcheetah-vel-$fvp.json"
done
