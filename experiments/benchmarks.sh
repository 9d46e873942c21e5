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
# The iteration benchmark is MAML-TRPO's (the peer's algorithm), with each curvature product on
# every task, as measured (the shipped cheetah config meta-trains with ProMP's outer step).
for fvp in adapted_fisher gauss_newton; do
  $metarl benchmark iteration --config experiments/configs/halfcheetah-vel.yaml \
    --set objective=maml --set meta_optimizer.name=trpo --set meta_optimizer.fvp=$fvp \
    --set meta_optimizer.cg_subsample=1.0 --json | tail -n 1 > "$out/iteration-halfcheetah-vel-$fvp.json"
done
