#!/usr/bin/env bash
# ns-eval on every checkpoint a run kept (for instance with KEEP_EVERY in train_in_slices.sh), to see
# where along training the held-out error turns. ns-eval reads the newest checkpoint unless the
# config's load_step names another, so each step gets a copy of config.yml that names it; the run
# folder is left as it is.
#
#   bash scripts/eval_checkpoints.sh RUN/config.yml OUT_DIR [ns-eval args]
#
# Writes OUT_DIR/config_step-N.yml and OUT_DIR/eval_step-N.json (N zero-padded as the checkpoints
# are), and prints one line per step: PSNR (square crops), MPJPE, RA-MPJPE, Acc Err where present.
# hand4dgs infer, export, render and tto read those config copies too: each loads its step.
set -uo pipefail
CONFIG=$1; OUT=$2; shift 2
MODELS=$(dirname "$CONFIG")/nerfstudio_models
ls "$MODELS"/step-*.ckpt > /dev/null 2>&1 || { echo "$MODELS holds no checkpoints: train the run first." >&2; exit 1; }
grep -q "^load_step: null$" "$CONFIG" || { echo "$CONFIG has no 'load_step: null' line: is it an ns-train config.yml?" >&2; exit 1; }
mkdir -p "$OUT"
# The copies find their checkpoints beside them, wherever the command that reads them is started.
if [ -L "$OUT/nerfstudio_models" ] || [ ! -e "$OUT/nerfstudio_models" ]; then
  ln -sfn "$(cd "$MODELS" && pwd)" "$OUT/nerfstudio_models"
fi
for ckpt in "$MODELS"/step-*.ckpt; do
  name=${ckpt##*/}; padded=${name#step-}; padded=${padded%.ckpt}
  sed "s/^load_step: null$/load_step: $((10#$padded))/" "$CONFIG" > "$OUT/config_step-$padded.yml"
  ns-eval --load-config "$OUT/config_step-$padded.yml" --output-path "$OUT/eval_step-$padded.json" "$@" \
    > "$OUT/eval_step-$padded.log" 2>&1 || { echo "ns-eval failed on $name; the end of its log:" >&2; tail -5 "$OUT/eval_step-$padded.log" >&2; exit 1; }
  python - "$OUT/eval_step-$padded.json" "$((10#$padded))" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
keys = ("psnr_square", "mpjpe_mm", "ra_mpjpe_mm", "acc_err_mm")
print(f"step {sys.argv[2]}: " + ", ".join(f"{k} {results[k]:.2f}" for k in keys if k in results))
PY
done
