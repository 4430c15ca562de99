#!/usr/bin/env bash
# CapFilt on N processes with torchrun: tools/dist_capfilt.sh CONFIG NPROC [capfilt.py args...]
# Units (shards, or record ranges of a JSON / CSV file) are split across the ranks, rank r
# taking units r, r + N, ...; a gloo group only coordinates. Multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR, MASTER_PORT on every node. docs/capfilt.md.
set -euo pipefail

CONFIG=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/_torchrun.sh"  # vlp_torchrun

vlp_torchrun "$NPROC" "$ROOT/tools/capfilt.py" "$CONFIG" --launcher pytorch "${@:3}"
