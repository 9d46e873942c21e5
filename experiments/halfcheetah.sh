#!/usr/bin/env bash
# A cheetah family at the paper's scale with its shipped config, end to end: meta-training
# (resumed when the run directory exists: a run spans sessions), the held-out evaluation per
# subgroup (with the baselines of `CONFIG=halfcheetah-<family> experiments/baselines.sh` when
# they exist), learning curves (also per subgroup, where the run logged them) and the adapted
# rollouts (a small GIF and the full MP4).
# The shipped config meta-trains with ProMP's outer step; OUTER=trpo runs the paper's MAML-TRPO
# instead (the ablation of the README) into experiments/results/halfcheetah-<family>-trpo/.
# On the project's 2-core machine a MAML-TRPO iteration takes about 10.5 s alone (sampling 6 s,
# the meta-step 3.5 s), so 500 iterations are about 90 minutes; ProMP's is a little slower.
#   FAMILY=dir SEED=0 ITERATIONS=500 experiments/halfcheetah.sh     # FAMILY: dir or vel
#   OUTER=trpo FAMILY=dir SEED=0 experiments/halfcheetah.sh
# ITERATIONS at or below the iterations the run has re-evaluates it as it is (nothing trained).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${FAMILY:-dir}
seed=${SEED:-0}
source experiments/run_steps.sh
outer_step experiments/results/halfcheetah-${family} "$seed"
baselines=experiments/results/halfcheetah-${family}-baselines
iterations=${ITERATIONS:-500}
case $family in
  dir) tasks=(--task '{"direction": 1}' --task '{"direction": -1}') ;;
  vel) tasks=(--task '{"velocity": 0.5}' --task '{"velocity": 1.5}') ;;
  *) echo "FAMILY must be dir or vel, got $family" >&2; exit 2 ;;
esac

train_run "experiments/configs/halfcheetah-${family}.yaml" "$run" "$seed" "$iterations" "${sets[@]}"
finish_run "$run" "$baselines" "${tasks[@]}"
