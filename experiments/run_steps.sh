# Sourced by experiments/halfcheetah.sh and experiments/ant.sh: the steps their runs share.
#
# outer_step RESULTS SEED: the outer step a run meta-trains with. The shipped locomotion configs
# use ProMP's; OUTER=trpo gives the paper's MAML-TRPO (its estimator and TRPO, with the
# curvature the configs had before ProMP), whose runs sit beside the shipped ones in
# <results>-trpo/. Sets run (RESULTS/seedS or RESULTS-trpo/seedS) and sets (--set keys).
outer_step() {
  case ${OUTER:-promp} in
    promp) run=$1/seed$2; sets=() ;;
    trpo)
      run=$1-trpo/seed$2
      sets=(--set objective=maml --set meta_optimizer.name=trpo
        --set meta_optimizer.fvp=gauss_newton --set meta_optimizer.cg_subsample=0.25) ;;
    *) echo "OUTER must be promp or trpo, got $OUTER" >&2; exit 2 ;;
  esac
}

# finish_run RUN BASELINES [--task JSON ...]: after meta-training, the held-out evaluation per
# subgroup (against BASELINES when its oracle.zip exists), the learning curves (also per
# subgroup, where the run logged them) and, given tasks, the adapted rollouts of each (a small
# GIF and the full MP4).
finish_run() {
  local run=$1 baselines=$2
  shift 2
  local evaluate=(--tasks 40 --steps 3 --episodes 20 --seed 1
    --out "$run/evaluation/results.json" --force)
  [ -f "$baselines/oracle.zip" ] && evaluate+=(--baselines "$baselines")
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
