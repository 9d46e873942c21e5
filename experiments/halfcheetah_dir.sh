#!/usr/bin/env bash
# The README's HalfCheetahDir results, end to end: meta-training, the two
# stable-baselines3 baselines, the held-out evaluation (table + adaptation-curve
# PNG), the learning curves and a GIF of adapted rollouts. Everything lands in
# experiments/results/halfcheetah-dir/ (and -baselines/). On the project's 2-core
# machine the training takes about 40 minutes (300 iterations), each baseline about ten minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
metarl=.venv/bin/metarl
run=experiments/results/halfcheetah-dir
baselines=experiments/results/halfcheetah-dir-baselines
iterations=${ITERATIONS:-300}

$metarl train experiments/configs/halfcheetah-dir.yaml --run-dir "$run" --iterations "$iterations"
$metarl baseline pretrain experiments/configs/halfcheetah-dir.yaml --timesteps 300000 --out "$baselines/pretrained.zip"
$metarl baseline oracle experiments/configs/halfcheetah-dir.yaml --timesteps 300000 --out "$baselines/oracle.zip"
$metarl evaluate "$run" --tasks 40 --steps 3 --episodes 20 --seed 1 --baselines "$baselines" \
  --out "$run/evaluation/results.json"
$metarl plot "$run" --out "$run/curves.png"
$metarl render "$run" --task '{"direction": 1}' --task '{"direction": -1}' --steps 1 --seed 1 \
  --width 160 --height 120 --fps 20 --max-steps 100 --out "$run/adapted.gif"
