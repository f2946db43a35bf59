#!/usr/bin/env bash
# Temporal-model training with DistributedDataParallel through torchrun. Each rank takes
# train.batch_size / WORLD_SIZE of every global batch, metrics are reduced over ranks and
# rank 0 alone writes config.yaml, metrics.jsonl, last.pt and best.pt (same format as one
# process). Missing features are extracted first, sharded the same way. Extra arguments go
# to `videoact train`.
#
# One machine, one rank per GPU (NCCL):
#   tools/dist_train.sh configs/synthetic.yaml --data data/train --work-dir runs/ddp
# One machine, CPU only (gloo), 2 ranks:
#   NPROC=2 tools/dist_train.sh --data data/train --set train.device=cpu --set feature.device=cpu
# Several machines (shared filesystem for data and work dir), run on each:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 tools/dist_train.sh configs/synthetic.yaml --data ...  # node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 tools/dist_train.sh configs/synthetic.yaml --data ...  # node1
#
# Plain forms: torchrun --standalone --nproc_per_node=gpu -m videoact train ...
#              torchrun --nnodes=2 --node_rank=1 --nproc_per_node=gpu --rdzv_backend=c10d \
#                       --rdzv_endpoint=node0:29500 --rdzv_id=videoact -m videoact train ...
#
# Environment:
#   NPROC        ranks on this machine: a number, "gpu" (one per GPU) or "cpu" (one per core);
#                default: gpu when an NVIDIA GPU is visible, else 2
#   NNODES       machines in the job (default 1); NODE_RANK this machine's index (0-based)
#   MASTER_ADDR  host of node 0 (needed when NNODES > 1); MASTER_PORT (default 29500)
#   JOB_ID       rendezvous id shared by all machines of one job (default videoact)
#   PYTHON       interpreter (default: python, i.e. the active virtual environment)
set -euo pipefail
cmd=train
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
