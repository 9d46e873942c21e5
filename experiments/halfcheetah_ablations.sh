#!/usr/bin/env bash
# One difference at a time on top of a shipped cheetah config (ProMP's outer step), same seed
# and tasks as experiments/results/halfcheetah-<family>/seed<SEED> (SEED=0 unless set),
# ITERATIONS (150 unless set) each, then the held-out evaluation at step 1 against the
# family's baselines (compare with that run's first 150 iterations and, for Dir, its
# evaluation-150/). The keys that set init_from (`anneal`, `continue-*`, `reward-step*`,
# `tail-*`) instead continue the finished shipped run of that seed (`continue-guard-*`: a
# committed snapshot of a continuation, `guarded_at` or `held_from` below) for ITERATIONS with
# the one change their comment names (compare with that run's evaluation and its last
# iterations). Resumable: a run directory that exists is continued, up to ITERATIONS.
#   experiments/halfcheetah_ablations.sh                          # every ablation, Dir
#   experiments/halfcheetah_ablations.sh inner-lr-0.2             # one
#   FAMILY=vel experiments/halfcheetah_ablations.sh inner-lr-0.2  # on HalfCheetahVel
#   FAMILY=vel SEED=1 ITERATIONS=104 experiments/halfcheetah_ablations.sh anneal
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/run_steps.sh
family=${FAMILY:-dir}
case $family in
  dir | vel) ;;
  *) echo "FAMILY must be dir or vel, got $family" >&2; exit 2 ;;
esac
seed=${SEED:-0}
iterations=${ITERATIONS:-150}
results=experiments/results/halfcheetah-${family}-ablations
shipped=experiments/results/halfcheetah-${family}/seed${seed}  # what the continuations start from
# the KL-guarded learned-rate continuations' committed states (HalfCheetahDir): seed 0 at 150
# iterations, its best; seed 1 at 266, where it stopped (forward at its best, backward falling)
declare -A guarded_at=([0]=150 [1]=266)
guarded=$results/continue-learn-lr-guard-seed${seed}/snapshot-${guarded_at[$seed]:-none}
# the `-half-` key's starts, each seed's best held anchored state: seed 0's 0.05-anchor
# continuation at 420 (held out forward 63%), seed 1's with the meta-step's KL held to 0.1 at
# 400 (59.5%; that run went on to 600)
declare -A held_from=([0]=continue-guard-anchor-0.05-tail-seed0/snapshot-420
  [1]=continue-guard-anchor-0.05-tail-kl-0.1-seed1/snapshot-400)
held=$results/${held_from[$seed]:-none}
declare -A keys=(
  [learn-lr]="adaptation.learn_lr=true"  # MAML++'s learned per-tensor inner rates
  [inner-lr-0.2]="adaptation.lr=0.2"     # twice the paper's inner step
  [wide]="policy.hidden_sizes=[256,256]"  # the SAC oracle's width; its meta-step takes ~6x the shipped one
  # the observation standardised inside the policy (running mean and std, VecNormalize's): raw,
  # joint velocities (std up to ~11) hold half the shipped policy's first-layer tanh units past 2
  [obs-norm]="policy.obs_normalization=true"
  [no-inner-kl]="meta_optimizer.inner_kl_coeff=0"  # nothing holds the adapted policy near the pre-step one
  [inner-kl-5e-3]="meta_optimizer.inner_kl_coeff=5e-3"  # 10x ProMP's (removing it hurt both directions)
  # the inner step's advantages in reward units: its size follows how far off the task is
  [inner-raw-advantages]="adaptation.normalize_advantages=false"
  # GAE lambda 0.95 in place of 1 (inner and outer): less noise in the 20-episode inner gradient,
  # where a target near the pre-step speed leaves it little signal
  [gae-0.95]="gae_lambda=0.95"
  # the shipped run's plateau is the meta-step's noise: a third of ProMP's Adam step from there
  [anneal]="init_from=$shipped meta_optimizer.lr=3e-4"
  # GAE lambda 0.95 from the finished shipped run (what made AntGoal's step separate)
  [continue-gae-0.95]="init_from=$shipped gae_lambda=0.95"
  # from the finished shipped run, each task's inner step sized by its mean reward per step
  # (HalfCheetahVel's: no step at -0.1, about the control cost of meeting the target; one step
  # of lr per 0.4 short of it, at most 1.5), so a target the policy nearly meets is not overshot
  [reward-step]="init_from=$shipped adaptation.reward_scaled_step.zero_reward=-0.1 adaptation.reward_scaled_step.unit=0.4"
  # HalfCheetahDir's form of it: no step at 6 per step (about the SAC oracle's 5.5 forward and
  # 6.5 backward), one step of lr per 4 short of it, at most 1.5: the direction the pre-step
  # policy already runs takes a smaller step than the other, which breaks the symmetry of
  # theta +- lr * g that one shared step size imposes on the two tasks
  [reward-step-dir]="init_from=$shipped adaptation.reward_scaled_step.zero_reward=6 adaptation.reward_scaled_step.unit=4"
  # from the finished shipped run, MAML++'s learned per-tensor inner rates (starting at the
  # shipped 0.1, so the first iteration adapts as the shipped run does)
  [continue-learn-lr]="init_from=$shipped adaptation.learn_lr=true"
  # the same with Meta-SGD's rates, one per parameter entry: the step is theta - alpha * g with
  # alpha meta-trained entry by entry, so meta-training picks the step's direction as well as
  # its size in each tensor
  [continue-meta-sgd]="init_from=$shipped adaptation.learn_lr=true adaptation.learn_lr_per_parameter=true"
  # the continuations above start Adam afresh (as they ran): its first meta-step moves every
  # coordinate by the meta lr at once and shocked the converged policy (mean KL 900 to 4e10 on
  # iteration 0). These carry the source run's Adam moments (init_from_optimizer): the shipped
  # run continued as it was, and with MAML++'s learned per-tensor rates
  [continue-warm]="init_from=$shipped init_from_optimizer=true"
  # the control of the fresh-Adam continuations: the shipped run restarted with nothing changed
  [continue-restart]="init_from=$shipped"
  [continue-learn-lr-warm]="init_from=$shipped init_from_optimizer=true adaptation.learn_lr=true"
  # MAML++'s learned rates (fresh Adam) with each meta-step held to a mean KL of 0.3 between the
  # post-adaptation policies before and after it (about the shipped seed-1 run's 99th
  # percentile): without it two steps of KL 85 and 188 turned continue-learn-lr around at 298
  [continue-learn-lr-guard]="init_from=$shipped adaptation.learn_lr=true meta_optimizer.max_kl=0.3"
  # from that run's 150-iteration state (its learned rates carried), a third of ProMP's meta lr:
  # whether smaller steps slow the pre-step policy's drift toward the direction it runs, which
  # then cost the other half (seed 0: forward 696 -> 582 between iterations 175 and 219)
  [continue-guard-anneal]="init_from=$guarded adaptation.learn_lr=true meta_optimizer.max_kl=0.3 meta_optimizer.lr=3e-4"
  # from the same state at ProMP's meta lr (its Adam moments carried), the pre-step policy held
  # near where it started (anchor_kl_coeff): the full-lr run fell once its pre-step policy had
  # moved a KL of 2.4 from there (iteration 219), the anneal held at 0.66 (103); at 219 the
  # anchor's gradient with weight 1 is 109x the meta-loss's (experiments/anchor_size.py,
  # anchor-size.json), so with 0.005 it is half the meta-loss's there and, growing as the
  # KL's root, a third of it near 0.66, the drift the anneal bore
  [continue-guard-anchor]="init_from=$guarded init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.3 meta_optimizer.anchor_kl_coeff=0.005"
  # the same with the meta-loss over each meta-batch's worse 75% of tasks (every forward one):
  # the anchor is to keep the pre-step policy from turning, as it did when the forward tasks
  # were weighted before (tail-0.5), so the weight can only reshape the step (at 0.005 it did
  # not hold seed 0's: the next key)
  [continue-guard-anchor-tail]="init_from=$guarded init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.3 meta_optimizer.anchor_kl_coeff=0.005 tail_fraction=0.75"
  # with 10x the anchor's weight: at 0.005 seed 0's pre-step policy still turned from running
  # backward to forward (KL 1.2 from the anchor by iteration 50) and both halves then fell
  [continue-guard-anchor-0.05-tail]="init_from=$guarded init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.3 meta_optimizer.anchor_kl_coeff=0.05 tail_fraction=0.75"
  # the same with each meta-step held to a mean KL of 0.1, then 0.05, in place of 0.3: seed 1's
  # falls (this key at 150-178, anchor-tail at 300-324) came in blocks where the median
  # meta-step's KL rose to 0.13-0.14, where seed 0's stayed near 0.01 (at most 0.21 in 420)
  [continue-guard-anchor-0.05-tail-kl-0.1]="init_from=$guarded init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.1 meta_optimizer.anchor_kl_coeff=0.05 tail_fraction=0.75"
  [continue-guard-anchor-0.05-tail-kl-0.05]="init_from=$guarded init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.05 meta_optimizer.anchor_kl_coeff=0.05 tail_fraction=0.75"
  # from that 0.1 run at 400 (seed 1; seed 0: from its 0.05-anchor run at 420), the meta-loss
  # over the worse half of each meta-batch, every forward task, in place of 75%: its forward
  # rose 685 to 703 per 25 over 400 iterations, seed 1's forward stalls near 700 whatever
  # else changes, and backward had 150 to spare over its 60% mark (the anchor: the start
  # state, where this run's first step is)
  [continue-guard-anchor-0.05-half-kl-0.1]="init_from=$held init_from_optimizer=true adaptation.learn_lr=true meta_optimizer.max_kl=0.1 meta_optimizer.anchor_kl_coeff=0.05 tail_fraction=0.5"
  # from the finished shipped run, the meta-loss over the 75% of each meta-batch's tasks that
  # adapt worst (DR-MAML's tail-task risk): on HalfCheetahDir every forward task and the worst
  # backward ones, so the meta-step serves the direction that adapts worse
  [tail-0.75]="init_from=$shipped tail_fraction=0.75"
  # the same over the worse half of each meta-batch: on HalfCheetahDir the forward tasks alone
  [tail-0.5]="init_from=$shipped tail_fraction=0.5"
  # CAVIA: the inner step adapts 50 context inputs alone (CAVIA's HalfCheetah count and step
  # size, 10), so the network maps the adapted context to either gait, where MAML's two
  # adapted policies are theta +- lr * g along one direction
  [cavia]="meta_learner=cavia policy.context_dim=50 cavia.lr=10"
)
names=("$@")
# No name: every ablation of the table, in the order of their names.
[ ${#names[@]} -eq 0 ] && mapfile -t names < <(printf '%s\n' "${!keys[@]}" | sort)
for name in "${names[@]}"; do
  if [ -z "${keys[$name]+set}" ]; then
    echo "unknown ablation '$name'; choose from: ${!keys[*]}" >&2
    exit 2
  fi
done
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for name in "${names[@]}"; do
  run=$results/$name-seed$seed
  sets=()
  for key in ${keys[$name]}; do sets+=(--set "$key"); done
  train_run "experiments/configs/halfcheetah-${family}.yaml" "$run" "$seed" "$iterations" "${sets[@]}"
  .venv/bin/metarl evaluate "$run" --tasks 40 --steps 1 --episodes 20 --seed 1 \
    --baselines "experiments/results/halfcheetah-${family}-baselines" \
    --out "$run/evaluation/results.json" --force
done
