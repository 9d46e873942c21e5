#!/usr/bin/env bash
# An Ant id at the paper's scale with its shipped config, end to end: meta-training (resumed
# when the run directory exists: a run spans sessions), the held-out evaluation per subgroup
# (with the baselines of `CONFIG=ant-<id> experiments/baselines.sh` when they exist), the
# learning curves (also per subgroup, where the run logged them) and, for AntDir, the adapted
# rollouts (a small GIF and the full MP4), into experiments/results/ant-<id>/seed<S>. About
# 35 s per AntVel meta-iteration on the project's 2-core machine once episodes run to the
# horizon of 200; AntDir runs ProMP's 20 episodes of 100 steps per task, a quarter of the
# paper's 40 of 200, and AntGoal the paper's 20 of 100 steps.
#   ID=vel SEED=0 ITERATIONS=500 experiments/ant.sh       # ID: vel, dir or goal
# ITERATIONS at or below the iterations the run has re-evaluates it as it is (nothing trained).
set -euo pipefail
cd "$(dirname "$0")/.."
id=${ID:-vel}
seed=${SEED:-0}
case $id in
  vel | goal) tasks=() ;;
  dir) tasks=(--task '{"direction": 1}' --task '{"direction": -1}') ;;
  *) echo "ID must be vel, dir or goal, got $id" >&2; exit 2 ;;
esac
source experiments/run_steps.sh
run=experiments/results/ant-${id}/seed${seed}
iterations=${ITERATIONS:-500}

train_run "experiments/configs/ant-${id}.yaml" "$run" "$seed" "$iterations"
finish_run "$run" "experiments/results/ant-${id}/baselines" "${tasks[@]}"
