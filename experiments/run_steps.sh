# Sourced by experiments/halfcheetah.sh and experiments/ant.sh: the steps their runs share.
# A family's canonical runs are experiments/results/<family>/seed<S>/, evaluated against the
# baselines in experiments/results/<family>/baselines/ (experiments/baselines.sh).

# train_run CONFIG RUN SEED ITERATIONS [ARG ...]: meta-trains CONFIG into RUN up to ITERATIONS,
# continuing it (--resume) when RUN has a checkpoint, so a run spans sessions; the ARGs (--set
# KEY=VALUE ...) go to `metarl train` as they are.
train_run() {
  local config=$1 run=$2 seed=$3 iterations=$4
  shift 4
  local resume=()
  [ -f "$run/checkpoints/latest.pt" ] && resume=(--resume)
  .venv/bin/metarl train "$config" --run-dir "$run" --seed "$seed" --iterations "$iterations" \
    "$@" "${resume[@]}"
}

# finish_run RUN BASELINES [--task JSON ...]: after meta-training, the held-out evaluation per
# subgroup (against those of pretrained.zip and oracle.zip that BASELINES holds), the learning
# curves (also per subgroup, where the run logged them) and, given tasks, the adapted rollouts
# of each (a small GIF and the full MP4; not committed with the canonical runs, for size).
finish_run() {
  local run=$1 baselines=$2
  shift 2
  local evaluate=(--tasks 40 --steps 3 --episodes 20 --seed 1
    --out "$run/evaluation/results.json" --force)
  if [ -f "$baselines/pretrained.zip" ] || [ -f "$baselines/oracle.zip" ]; then
    evaluate+=(--baselines "$baselines")
  fi
  .venv/bin/metarl evaluate "$run" "${evaluate[@]}"
  .venv/bin/metarl plot "$run" --out "$run/curves.png"
  if head -n1 "$run/progress.csv" | grep -q "return_post/"; then
    .venv/bin/metarl plot "$run" --subgroups --out "$run/curves-subgroups.png"
  fi
  if [ $# -gt 0 ]; then
    .venv/bin/metarl render "$run" "$@" --steps 1 --seed 1 --max-steps 80 --stride 4 --fps 20 \
      --out "$run/adapted.gif" --force
    .venv/bin/metarl render "$run" "$@" --steps 1 --seed 1 --max-steps 200 \
      --out "$run/adapted.mp4" --force
  fi
}
