#!/usr/bin/env bash
# `videoact COMMAND ARGS...` in torchrun ranks, on one machine or several: the launcher
# behind tools/dist_train.sh and tools/dist_extract.sh (see them for what each command
# does across ranks, and for examples).
#
# Environment:
#   NPROC        ranks on this machine: a number, "gpu" (one per GPU) or "cpu" (one per core);
#                default: gpu when an NVIDIA GPU is visible, else 2
#   NNODES       machines in the job (default 1); NODE_RANK this machine's index (0-based)
#   MASTER_ADDR  host of node 0 (needed when NNODES > 1); MASTER_PORT (default 29500)
#   JOB_ID       rendezvous id shared by all machines of one job (default videoact)
#   PYTHON       interpreter (default: python, i.e. the active virtual environment)
set -euo pipefail
cmd="${1:?usage: tools/dist_run.sh COMMAND [ARGS...] (train, extract, ...)}"
shift
PYTHON="${PYTHON:-python}"
if [[ -z "${NPROC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then NPROC=gpu; else NPROC=2; fi
fi
NNODES="${NNODES:-1}"
if [[ "$NPROC" =~ ^[0-9]+$ && -z "${OMP_NUM_THREADS:-}" ]]; then
  # CPU ranks: share this machine's cores (torchrun alone would give each rank 1 thread).
  cores=$(nproc 2>/dev/null || echo 2)
  export OMP_NUM_THREADS=$(( cores / NPROC > 0 ? cores / NPROC : 1 ))
fi
if [[ "$NNODES" == 1 ]]; then
  launch=(--standalone "--nproc_per_node=$NPROC")
else
  : "${MASTER_ADDR:?set MASTER_ADDR to the host of node 0 when NNODES > 1}"
  : "${NODE_RANK:?set NODE_RANK (0..NNODES-1) when NNODES > 1}"
  launch=("--nnodes=$NNODES" "--node_rank=$NODE_RANK" "--nproc_per_node=$NPROC" --rdzv_backend=c10d
          "--rdzv_endpoint=$MASTER_ADDR:${MASTER_PORT:-29500}" "--rdzv_id=${JOB_ID:-videoact}")
fi
echo "+ torchrun ${launch[*]} -m videoact $cmd $*" >&2
exec "$PYTHON" -m torch.distributed.run "${launch[@]}" -m videoact "$cmd" "$@"
