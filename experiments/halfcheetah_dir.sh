#!/usr/bin/env bash
# HalfCheetahDir at the paper's scale with the shipped config, end to end: meta-training
# (resumed when the run directory exists: a run spans sessions), the held-out evaluation
# per direction (with the baselines found in experiments/results/halfcheetah-dir-baselines/),
# learning curves and the adapted rollouts (a small GIF and the full MP4).
# On the project's 2-core machine an iteration takes about 10.5 s alone (sampling 6 s,
# the meta-step 3.5 s), so 500 iterations are about 90 minutes.
#   SEED=0 ITERATIONS=500 experiments/halfcheetah_dir.sh
set -euo pipefail
cd "$(dirname "$0")/.."
metarl=.venv/bin/metarl
seed=${SEED:-0}
run=experiments/results/halfcheetah-dir/seed${seed}
baselines=experiments/results/halfcheetah-dir-baselines
iterations=${ITERATIONS:-500}

resume=()
[ -f "$run/checkpoints/latest.pt" ] && resume=(--resume)
$metarl train experiments/configs/halfcheetah-dir.yaml --run-dir "$run" --seed "$seed" \
  --iterations "$iterations" "${resume[@]}"
evaluate=(--tasks 40 --steps 3 --episodes 20 --seed 1 --out "$run/evaluation/results.json" --force)
[ -d "$baselines" ] && evaluate+=(--baselines "$baselines")
$metarl evaluate "$run" "${evaluate[@]}"
$metarl plot "$run" --out "$run/curves.png"
$metarl render "$run" --task '{"direction": 1}' --task '{"direction": -1}' --steps 1 --seed 1 \
  --max-steps 80 --stride 4 --fps 20 --out "$run/adapted.gif" --force
$metarl render "$run" --task '{"direction": 1}' --task '{"direction": -1}' --steps 1 --seed 1 \
  --max-steps 200 --out "$run/adapted.mp4" --force
