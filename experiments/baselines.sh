#!/usr/bin/env bash
# The baselines a meta-training run is evaluated against (`metarl evaluate --baselines`),
# trained with the run's own config (horizon, env options, architecture) through the batched
# engine, into experiments/results/<config>/baselines/ (beside the family's seed<N>/ runs):
#   pretrained: PPO of metarl's architecture on the whole task distribution, the task never
#               observed (adapted by metarl's own inner steps at evaluation);
#   oracle:     SAC that observes the task (not adapted; scored with its mean action).
#               PPO was tried first: on HalfCheetahDir it peaked at 565 per 200-step episode
#               after 420,000 steps and fell to 264 by 720,000 (ppo-oracle-attempt.monitor.csv).
# Each zip gets its learning curve beside it (<name>.monitor.csv, <name>.png); the command
# prints whether the last 10% of the episodes still gain on the 10% before. A zip that exists
# is trained on (`metarl baseline --resume`) to its budget, PRETRAIN_STEPS or ORACLE_STEPS
# environment steps in all (nothing to do once it has them; FORCE=1 retrains from scratch):
# raise the budgets until the curves are flat. Each saves every 100,000 steps, so a budget
# may span sessions: rerun the same command.
#   CONFIG=halfcheetah-dir experiments/baselines.sh    # any experiments/configs/<CONFIG>.yaml
#   CONFIG=ant-vel ORACLE_STEPS=1000000 experiments/baselines.sh
#   CONFIG=navigation2d PRETRAIN_STEPS=200000 ORACLE_STEPS=50000 \
#     ORACLE_KWARGS='{gradient_steps: 2, policy_kwargs: {net_arch: [64, 64]}}' experiments/baselines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
name=${CONFIG:-}
config=experiments/configs/${name}.yaml
if [ -z "$name" ] || [ ! -f "$config" ]; then
  echo "CONFIG must name a config in experiments/configs (got '${name}'), one of:" \
    $(cd experiments/configs && ls *.yaml | sed 's/\.yaml$//') >&2
  exit 2
fi
out=experiments/results/${name}/baselines
pretrain_steps=${PRETRAIN_STEPS:-1000000}
oracle_steps=${ORACLE_STEPS:-300000}
# Small networks gain little from a second torch thread here, and the runs share 2 cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# baseline NAME KIND STEPS [ARG ...]: trains $out/NAME.zip to STEPS environment steps in all.
baseline() {
  local zip=$out/$1.zip kind=$2 steps=$3
  shift 3
  local how=()
  if [ "${FORCE:-0}" = 1 ]; then
    how=(--force)
  elif [ -f "$zip" ]; then
    how=(--resume)
  fi
  .venv/bin/metarl baseline "$kind" "$config" --timesteps "$steps" --out "$zip" --no-progress \
    "$@" "${how[@]}"
}
baseline pretrained pretrain "$pretrain_steps" --n-envs 8
# SAC with 4 sub-envs and 2 gradient steps per 4 env steps (half of SAC's usual update ratio:
# the gradient steps dominate the time on a CPU); ORACLE_KWARGS replaces those keyword arguments
# (Navigation2D's oracle: 64x64 networks, a tenth of the 256x256 default's zip).
oracle_kwargs=${ORACLE_KWARGS:-'{gradient_steps: 2}'}
baseline oracle oracle "$oracle_steps" --algo sac --n-envs 4 --algo-kwargs "$oracle_kwargs"
