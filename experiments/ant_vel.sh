#!/usr/bin/env bash
# The README's AntVel training run and its learning curves, written to
# experiments/results/ant-vel/ (paper configuration, about 14 s per meta-iteration
# on the project's 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
metarl=.venv/bin/metarl
run=experiments/results/ant-vel
iterations=${ITERATIONS:-150}

$metarl train experiments/configs/ant-vel.yaml --run-dir "$run" --iterations "$iterations"
$metarl plot "$run" --out "$run/curves.png"
