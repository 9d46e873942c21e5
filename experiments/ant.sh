#!/usr/bin/env bash
# An Ant id at the paper's scale with its shipped config, end to end: meta-training (resumed
# when the run directory exists: a run spans sessions), the held-out evaluation per subgroup
# (with the baselines of `CONFIG=ant-<id> experiments/baselines.sh` when they exist), the
# learning curves (also per subgroup, where the run logged them) and, for AntDir, the adapted
# rollouts (a small GIF and the full MP4). About 35 s per AntVel meta-iteration on the project's
# 2-core machine once episodes run to the horizon of 200; AntDir runs ProMP's 20 episodes of 100
# steps per task, a quarter of the paper's 40 of 200, and AntGoal the paper's 20 of 100 steps.
#   ID=vel SEED=0 ITERATIONS=500 experiments/ant.sh       # ID: vel, dir or goal
# ID=goal-h200 runs experiments/configs/ant-goal-h200.yaml (AntGoal at horizon 200, warm-started
# from the goal run; ITERATIONS=200 there), and its continuations ID=goal-h200-gae0.95 (GAE
# lambda 0.95: the AntGoal result, ITERATIONS=42), ID=goal-h200-lr0.2 (twice the inner step,
# ITERATIONS=60) and ID=goal-h200-anneal (a third of the meta step, ITERATIONS=54); all are
# evaluated against ant-goal-baselines.
# ITERATIONS at or below the iterations the run has re-evaluates it as it is (nothing trained).
# The shipped configs meta-train with ProMP's outer step; OUTER=trpo runs the paper's MAML-TRPO
# instead into experiments/results/ant-<id>-trpo/ (the first AntVel run of this config).
# The first AntVel run (the paper's configuration, 150 iterations) is reproduced with
#   .venv/bin/metarl train experiments/results/ant-vel-v1/config.yaml --iterations 150
set -euo pipefail
cd "$(dirname "$0")/.."
id=${ID:-vel}
seed=${SEED:-0}
source experiments/run_steps.sh
outer_step experiments/results/ant-${id} "$seed"
iterations=${ITERATIONS:-500}

train_run "experiments/configs/ant-${id}.yaml" "$run" "$seed" "$iterations" "${sets[@]}"
tasks=()
[ "$id" = dir ] && tasks=(--task '{"direction": 1}' --task '{"direction": -1}')
# the goal-h200 runs are evaluated against AntGoal's baselines (the same tasks, to horizon 200)
finish_run "$run" "experiments/results/ant-${id%%-*}-baselines" "${tasks[@]}"
