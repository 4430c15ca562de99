#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NPROC [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT on every node.
# Works on GPUs (nccl) and CPUs (gloo), chosen by vlp.engine.dist.
set -euo pipefail

CONFIG=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/_torchrun.sh"  # vlp_torchrun

vlp_torchrun "$NPROC" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
