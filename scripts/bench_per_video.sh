#!/usr/bin/env bash
# Per-video quality of one synthetic clip at the full schedule, the way docs/benchmarks.md
# reports it ("Per-video quality on the harder presets"): synthesise the clip, train the default
# 30,000-step `ns-train hand4dgs` keeping the end-of-vertex-phase checkpoint (step 20,000), and
# run `ns-eval` on the last checkpoint and on step 20,000.
#
#   bash scripts/bench_per_video.sh OUT NAME PRESET SEED [more ns-train arguments]
#   bash scripts/bench_per_video.sh /tmp/q harsh harsh 12 --pipeline.model.color-gain True
#
# CLIP=<sequence folder> trains on that clip instead of synthesising one (PRESET and SEED are then
# only labels), so several variants share one clip, or a held-out video of a synth-set is used:
#   CLIP=/tmp/set/test_000 bash scripts/bench_per_video.sh /tmp/q test_000 set 0
# VERTEX_STEP (default 20000, where the default schedule turns the image loss on) names the checkpoint of
# the vertex-phase row; give another schedule with the ns-train arguments (later flags win);
# VERTEX_STEP=0 skips that row (one evaluation less).
# Writes OUT/NAME/{eval_final,eval_vertex}.json, the logs, and three evaluation renders
# (frame | render) of the last checkpoint; prints the times and both result rows.
set -uo pipefail
OUT=$1; NAME=$2; PRESET=$3; SEED=$4; shift 4
VERTEX_STEP=${VERTEX_STEP:-20000}; SAVE_EVERY=$VERTEX_STEP; [ "$VERTEX_STEP" = 0 ] && SAVE_EVERY=30000; R=$OUT/$NAME; WORK=${WORK:-/tmp/bench_per_video}; mkdir -p "$R" "$WORK"
DEVICE=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
t0=$(date +%s)
if [ -z "${CLIP:-}" ]; then
  CLIP=$WORK/$NAME
  hand4dgs synth "$CLIP" --seed "$SEED" --preset "$PRESET" --no-static-views --overwrite > "$R/synth.log" 2>&1 \
    || { tail -20 "$R/synth.log"; exit 1; }
fi
t1=$(date +%s); echo "synthesis $((t1 - t0)) s"
rm -rf "$WORK/runs/$NAME"
ns-train hand4dgs --data "$CLIP" --output-dir "$WORK/runs" --experiment-name "$NAME" --timestamp run \
  --vis tensorboard --machine.device-type "$DEVICE" --max-num-iterations 30000 --steps-per-eval-all-images 30001 \
  --steps-per-save "$SAVE_EVERY" --save-only-latest-checkpoint False "$@" > "$R/train.log" 2>&1 \
  || { tail -30 "$R/train.log"; exit 1; }
t2=$(date +%s); echo "training $((t2 - t1)) s"
RUN=$WORK/runs/$NAME/hand4dgs/run
ns-eval --load-config "$RUN/config.yml" --output-path "$R/eval_final.json" --render-output-path "$WORK/renders_$NAME" \
  > "$R/eval_final.log" 2>&1 || { tail -20 "$R/eval_final.log"; exit 1; }
t3=$(date +%s); echo "evaluation (last checkpoint) $((t3 - t2)) s"
for i in 0000 0010 0020; do cp "$WORK/renders_$NAME/eval_img_$i.png" "$R/final_img_$i.png" 2>/dev/null; done
ROWS="vertex final"
if [ "$VERTEX_STEP" = 0 ]; then ROWS=final; echo "total $((t3 - t0)) s"; else
  # ns-eval loads the newest checkpoint of the folder: set the later ones aside for the vertex-phase row.
  mkdir -p "$WORK/aside_$NAME"
  for f in "$RUN"/nerfstudio_models/*.ckpt; do
    case $f in *"step-$(printf %09d "$VERTEX_STEP").ckpt") ;; *) mv "$f" "$WORK/aside_$NAME/" ;; esac
  done
  ns-eval --load-config "$RUN/config.yml" --output-path "$R/eval_vertex.json" > "$R/eval_vertex.log" 2>&1 \
    || { tail -20 "$R/eval_vertex.log"; exit 1; }
  t4=$(date +%s); echo "evaluation (step $VERTEX_STEP) $((t4 - t3)) s; total $((t4 - t0)) s"
fi
python - "$R" $ROWS <<'PY'
import json, sys
for row in sys.argv[2:]:
    results = json.load(open(f"{sys.argv[1]}/eval_{row}.json"))["results"]
    print(row, {k: round(v, 3) for k, v in results.items() if not k.endswith("_std") and not k.startswith("nvs")})
PY
