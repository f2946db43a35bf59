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
# Environment: as tools/dist_run.sh says (NPROC, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT,
# JOB_ID, PYTHON).
exec "$(dirname "$0")/dist_run.sh" train "$@"
