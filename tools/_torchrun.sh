# Sourced by tools/dist_{train,test,capfilt}.sh: `vlp_torchrun NPROC SCRIPT ARGS...` runs a
# vlp tool on NPROC processes per node through torchrun, with the repo on PYTHONPATH and
# the interpreter of tools/_python.sh. Multi-node: NNODES, NODE_RANK, MASTER_ADDR and
# MASTER_PORT on every node (defaults: one node, 127.0.0.1:29500). Expects ROOT.
source "$ROOT/tools/_python.sh"  # PYTHON: the repo's .venv, else python3

vlp_torchrun() {
    local nproc=$1
    shift
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${MASTER_PORT:-29500}" \
        --nproc_per_node="$nproc" \
        "$@"
}
