#!/usr/bin/env bash
# Feature extraction over several processes and machines with torchrun.
# Each rank takes every WORLD_SIZE-th video; the cache is the same as from one process,
# and a rerun skips what is already there (resume). Extra arguments go to `videoact extract`.
#
# One machine, one rank per GPU (NCCL):
#   tools/dist_extract.sh VIDEOS/ FEATURES/ --batch-size 256
# One machine, CPU only (gloo), 4 ranks sharing the cores:
#   NPROC=4 tools/dist_extract.sh VIDEOS/ FEATURES/ --device cpu
# Several machines (the same VIDEOS/ and FEATURES/ on a shared filesystem), run on each:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 tools/dist_extract.sh VIDEOS/ FEATURES/   # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 tools/dist_extract.sh VIDEOS/ FEATURES/   # on node1
#
# The torchrun lines this prints and runs are the plain forms, e.g. on one machine:
#   torchrun --standalone --nproc_per_node=gpu -m videoact extract VIDEOS/ FEATURES/
# and on node 1 of 2:
#   torchrun --nnodes=2 --node_rank=1 --nproc_per_node=gpu --rdzv_backend=c10d \
#            --rdzv_endpoint=node0:29500 --rdzv_id=videoact -m videoact extract VIDEOS/ FEATURES/
#
# Environment: as tools/dist_run.sh says (NPROC, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT,
# JOB_ID, PYTHON).
exec "$(dirname "$0")/dist_run.sh" extract "$@"
