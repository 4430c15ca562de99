#!/usr/bin/env bash
# Training on a Slurm cluster (OpenMMLab's form): one task per GPU through srun; vlp sets up
# the process group from the SLURM_* variables (--launcher slurm).
#
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
#
# GPUS: tasks in all (default 8); GPUS_PER_NODE: tasks and GPUs per node (default 8, or GPUS
# if smaller); CPUS_PER_TASK: CPU cores per task (default 5, DataLoader workers + 1);
# SRUN_ARGS: more srun options (e.g. "--quotatype=auto" or "--time=72:00:00"); PYTHON: the
# interpreter (default: the repo's .venv when there is one).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/_python.sh"  # PYTHON: the repo's .venv, else python3
ARGS=("${@:5}")
if [ -n "$WORK_DIR" ]; then ARGS=(--work-dir "$WORK_DIR" "${ARGS[@]}"); fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm "${ARGS[@]}"
