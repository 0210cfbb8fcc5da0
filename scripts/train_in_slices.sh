#!/usr/bin/env bash
# One ns-train run cut into slices that each end within a time budget: every call trains until the
# budget is spent, and the next call resumes from the run's latest checkpoint (nerfstudio's
# --load-dir restores the step, the optimisers and the schedulers; the trainer seeds the resumed
# part's random draws by its first step, so no slice replays the first one's). For machines that limit how long
# one command may run. The schedule flags (image-loss-from, vertex-decay-steps, the schedulers'
# max-steps) must be given for TOTAL_STEPS, and the same on every call.
#
#   bash scripts/train_in_slices.sh BUDGET_S TOTAL_STEPS OUTPUT_DIR EXPERIMENT METHOD [ns-train args]
#   bash scripts/train_in_slices.sh 540 30000 /tmp/g96/runs g30k hand4dgs-generalized --data /tmp/g96/set
#
# The run lies in OUTPUT_DIR/EXPERIMENT/METHOD/run. Exits 0 once the run has trained TOTAL_STEPS
# steps (its last checkpoint is step TOTAL_STEPS - 1), 75 when the budget ran out first (call again),
# and ns-train's status when it failed. SAVE_EVERY (default 1000) is the checkpoint interval: at
# most that many steps are trained again after a slice is cut. KEEP_EVERY (default: none) also keeps
# the checkpoints of the steps it divides, to evaluate the run along the way; the others go. Give it
# on every call: a call without it keeps only the newest checkpoint, as ns-train does.
set -uo pipefail
BUDGET=$1; TOTAL=$2; OUT=$3; EXP=$4; METHOD=$5; shift 5
SAVE_EVERY=${SAVE_EVERY:-1000}
KEEP_EVERY=${KEEP_EVERY:-}
if [ -n "$KEEP_EVERY" ] && ! [ "$KEEP_EVERY" -gt 0 ] 2>/dev/null; then
  echo "KEEP_EVERY must be a positive step count, got '$KEEP_EVERY'." >&2; exit 2
fi
RUN=$OUT/$EXP/$METHOD/run; MODELS=$RUN/nerfstudio_models
last_step() {  # the step of the newest checkpoint, or -1
  local f; f=$(ls "$MODELS"/step-*.ckpt 2>/dev/null | sort | tail -1)
  if [ -z "$f" ]; then echo -1; else f=${f##*/step-}; echo $((10#${f%.ckpt})); fi
}
done_step=$(last_step)
if [ "$done_step" -ge $((TOTAL - 1)) ]; then echo "$RUN: trained to step $done_step already"; exit 0; fi
resume=()
[ "$done_step" -ge 0 ] && resume=(--load-dir "$MODELS")
keep=()
[ -n "$KEEP_EVERY" ] && keep=(--save-only-latest-checkpoint False)
remaining=$((TOTAL - 1 - done_step))
echo "$RUN: from step $((done_step + 1)), $remaining steps left, at most ${BUDGET} s this call"
mkdir -p "$OUT"
timeout --signal=INT --kill-after=30 "$BUDGET" ns-train "$METHOD" --output-dir "$OUT" --experiment-name "$EXP" \
  --timestamp run --max-num-iterations "$remaining" --steps-per-save "$SAVE_EVERY" "${resume[@]}" "${keep[@]}" "$@" \
  >> "$OUT/$EXP.train.log" 2>&1
status=$?
done_step=$(last_step)
if [ -n "$KEEP_EVERY" ]; then  # the newest (to resume from) and every KEEP_EVERY-th step stay
  for f in "$MODELS"/step-*.ckpt; do
    [ -e "$f" ] || continue  # no checkpoint yet
    step=${f##*/step-}; step=$((10#${step%.ckpt}))
    [ "$step" -ne "$done_step" ] && [ $((step % KEEP_EVERY)) -ne 0 ] && rm -f "$f"
  done
fi
if [ "$done_step" -ge $((TOTAL - 1)) ]; then echo "$RUN: trained to step $done_step"; exit 0; fi
if [ "$status" -eq 124 ] || [ "$status" -eq 130 ] || [ "$status" -eq 137 ]; then
  echo "$RUN: budget spent at checkpoint step $done_step; call again to go on"; exit 75
fi
echo "$RUN: ns-train failed (exit $status); the end of $OUT/$EXP.train.log:"; tail -20 "$OUT/$EXP.train.log"; exit "$status"
