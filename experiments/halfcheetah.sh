#!/usr/bin/env bash
# A cheetah family at the paper's scale with its shipped config, end to end: meta-training
# (resumed when the run directory exists: a run spans sessions), the held-out evaluation per
# subgroup (with the baselines of `CONFIG=halfcheetah-<family> experiments/baselines.sh` when
# they exist), learning curves (also per subgroup, where the run logged them) and the adapted
# rollouts (a small GIF and the full MP4), into experiments/results/halfcheetah-<family>/seed<S>.
# On the project's 2-core machine, shared with other runs, a ProMP iteration took 21-25 s (500
# iterations: 2.9-3.5 hours).
#   FAMILY=dir SEED=0 ITERATIONS=500 experiments/halfcheetah.sh     # FAMILY: dir or vel
# ITERATIONS at or below the iterations the run has re-evaluates it as it is (nothing trained).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${FAMILY:-dir}
seed=${SEED:-0}
source experiments/run_steps.sh
run=experiments/results/halfcheetah-${family}/seed${seed}
baselines=experiments/results/halfcheetah-${family}/baselines
iterations=${ITERATIONS:-500}
case $family in
  dir) tasks=(--task '{"direction": 1}' --task '{"direction": -1}') ;;
  vel) tasks=(--task '{"velocity": 0.5}' --task '{"velocity": 1.5}') ;;
  *) echo "FAMILY must be dir or vel, got $family" >&2; exit 2 ;;
esac

train_run "experiments/configs/halfcheetah-${family}.yaml" "$run" "$seed" "$iterations"
finish_run "$run" "$baselines" "${tasks[@]}"
