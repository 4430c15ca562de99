#!/usr/bin/env bash
# CapFilt on N processes with torchrun: tools/dist_capfilt.sh CONFIG NPROC [capfilt.py args...]
# Units (shards, or record ranges of a JSON / CSV file) are split across the ranks, rank r
# taking units r, r + N, ...; a gloo group only coordinates. Multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR, MASTER_PORT on every node. docs/capfilt.md.
set -euo pipefail

CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/_python.sh"  # PYTHON: the repo's .venv, else python3

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$MASTER_PORT" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/capfilt.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
