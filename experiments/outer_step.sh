# Sourced by experiments/halfcheetah.sh and experiments/ant.sh: the outer step a run meta-trains
# with. The shipped locomotion configs use ProMP's; OUTER=trpo gives the paper's MAML-TRPO (its
# estimator and TRPO, with the curvature the configs had before ProMP), whose runs sit beside
# the shipped ones in <results>-trpo/.
#   outer_step RESULTS SEED   # sets run (RESULTS/seedS or RESULTS-trpo/seedS) and sets (--set keys)
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
