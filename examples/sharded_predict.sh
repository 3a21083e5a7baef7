#!/usr/bin/env bash
# Sharded prediction on one machine: split the cases of IN into PARTS parts, predict every part, then ask
# `nnseg predict --status` which cases (if any) are still missing.
#
#   examples/sharded_predict.sh IN OUT MODEL [PARTS [OPTION ...]]
#
#   IN     folder of input images (<case>_<XXXX><ending>, e.g. raw/Dataset001_X/imagesTs)
#   OUT    output folder (shared by all parts)
#   MODEL  an nnseg run folder (WORK/runs/<plans>__<config>__<run>/fold_0) or an nnU-Net v2 trained model
#          folder (.../nnUNetTrainer__nnUNetPlans__3d_fullres)
#   PARTS  number of parts (default 4)
#   OPTION further `nnseg predict` options for every part, e.g. --no-tta, -f 0 1 2 3 4, --plans PLANS_JSON
#
# Environment (read by this script only; nnseg itself reads no environment variable):
#   DEVICES  space-separated devices, one process per device at a time, e.g. "cuda:0 cuda:1"
#            (default "cpu": the parts run one after another)
#   NNSEG    the nnseg command (default: nnseg)
#
# Part K owns the sorted case ids K, K+PARTS, K+2*PARTS, ... (nnU-Net's -num_parts/-part_id split). Each part
# skips the outputs it already finished, so rerunning this script after a crash only predicts what is
# missing. Exit status: 0 when every case of every part is written, 1 otherwise, 2 on bad arguments.
set -euo pipefail

if [[ $# -lt 3 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && exit 0
    exit 2
fi

IN=$1
OUT=$2
MODEL=$3
PARTS=${4:-4}
EXTRA=("${@:5}")
NNSEG=${NNSEG:-nnseg}
read -r -a DEVICE_LIST <<< "${DEVICES:-cpu}"

if ! [[ "$PARTS" =~ ^[1-9][0-9]*$ ]]; then
    echo "sharded_predict.sh: error: PARTS must be a positive integer; got '$PARTS'" >&2
    exit 2
fi

predict_part() {  # predict_part K DEVICE
    "$NNSEG" predict -i "$IN" -o "$OUT" -m "$MODEL" --num-parts "$PARTS" --part-id "$1" --device "$2" \
        ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT.part_$1.log" 2>&1
}

mkdir -p "$(dirname "$OUT")"
failed=0
num_devices=${#DEVICE_LIST[@]}
# run up to one part per device at the same time; part K goes to device K mod (number of devices)
for ((start = 0; start < PARTS; start += num_devices)); do
    pids=()
    for ((k = start; k < start + num_devices && k < PARTS; k++)); do
        device=${DEVICE_LIST[$((k % num_devices))]}
        echo "part $k of $PARTS on $device (log: $OUT.part_$k.log)"
        predict_part "$k" "$device" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
done
if [[ $failed -ne 0 ]]; then
    echo "some parts failed; see $OUT.part_*.log and rerun this script to redo only what is missing" >&2
fi

# exit 0 when complete, 1 when a case of some part is missing (it names the part and the cases)
"$NNSEG" predict --status -o "$OUT"
