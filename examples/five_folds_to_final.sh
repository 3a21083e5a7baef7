#!/usr/bin/env bash
# The whole path from a raw dataset to the final model, as nnU-Net does it, on a tiny synthetic dataset:
# synth -> fingerprint -> plan -> preprocess -> train (2d and 3d_fullres, folds 0 and 1, with --npz so that
# pairwise ensembles can be evaluated) -> find-best, which prints the ranked candidates and the chosen model.
#
#   examples/five_folds_to_final.sh DIR [STEPS]
#
#   DIR    an empty (or earlier) folder for the raw dataset and the work folder; rerunning resumes
#   STEPS  optimiser steps per training (default 4: a smoke run; nnU-Net trains 250 x 1000)
#
# Environment (read by this script only; nnseg itself reads no environment variable):
#   NNSEG    the nnseg command (default: nnseg)
#   DEVICE   the training device (default: cpu)
#
# For a real dataset, replace the synth step by your raw dataset, drop the budget options of `nnseg train`
# and train folds 0 1 2 3 4. Exit status: 0 on success, 2 on bad arguments, 1 if a step fails.
set -euo pipefail

if [[ $# -lt 1 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && exit 0
    exit 2
fi
DIR=$1
STEPS=${2:-4}
if ! [[ "$STEPS" =~ ^[1-9][0-9]*$ ]]; then
    echo "examples/five_folds_to_final.sh: STEPS must be a positive integer; got '$STEPS'" >&2
    exit 2
fi
read -r -a NNSEG_CMD <<< "${NNSEG:-nnseg}"
DEVICE=${DEVICE:-cpu}
RAW=$DIR/raw/Dataset001_Synth
WORK=$DIR/work

"${NNSEG_CMD[@]}" synth "$DIR/raw" --name Dataset001_Synth --num-cases 5 --shape 16 24 24 --seed 0
"${NNSEG_CMD[@]}" fingerprint "$RAW" -o "$WORK"
"${NNSEG_CMD[@]}" plan "$WORK" --no-measure
for c in 2d 3d_fullres; do
    "${NNSEG_CMD[@]}" preprocess "$WORK" -c "$c"
    for f in 0 1; do
        # a tiny budget: STEPS steps in one epoch, one validation batch, no loader processes
        "${NNSEG_CMD[@]}" train "$WORK" -c "$c" -f "$f" --npz --device "$DEVICE" --num-workers 0 \
            --iterations-per-epoch "$STEPS" --num-epochs 1 --val-iterations 1
    done
done
"${NNSEG_CMD[@]}" find-best "$WORK" -c 2d 3d_fullres -f 0 1
echo "chosen model: $(sed -n 's/.*"winner": *"\([^"]*\)".*/\1/p' "$WORK/best.json" | head -n 1)"
echo "instructions: $WORK/inference_instructions.txt"
