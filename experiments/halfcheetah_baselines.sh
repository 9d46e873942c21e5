#!/usr/bin/env bash
# The baselines a cheetah run is evaluated against (`metarl evaluate --baselines`), trained
# with the run's own config (horizon, env options, architecture) through the batched engine:
#   pretrained: PPO on the whole task distribution, the task never observed (adapted by
#               metarl's own inner steps at evaluation);
#   oracle:     PPO that observes the task (not adapted; scored with its mean action).
# Each zip gets its learning curve beside it (<name>.monitor.csv, <name>.png); the command
# prints whether the last 10% of the episodes still gain on the 10% before. Budgets are
# environment steps; raise them (with --force) until the curves are flat.
#   FAMILY=dir experiments/halfcheetah_baselines.sh        # or FAMILY=vel
set -euo pipefail
cd "$(dirname "$0")/.."
family=${FAMILY:-dir}
config=experiments/configs/halfcheetah-${family}.yaml
out=experiments/results/halfcheetah-${family}-baselines
pretrain_steps=${PRETRAIN_STEPS:-1000000}
oracle_steps=${ORACLE_STEPS:-3000000}
# PPO's small networks gain nothing from a second torch thread here; the engine is batched.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/metarl baseline pretrain "$config" --timesteps "$pretrain_steps" --n-envs 8 \
  --out "$out/pretrained.zip" --no-progress --force
.venv/bin/metarl baseline oracle "$config" --timesteps "$oracle_steps" --n-envs 8 \
  --out "$out/oracle.zip" --no-progress --force
