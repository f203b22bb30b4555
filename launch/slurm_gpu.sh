#!/usr/bin/env bash
# Submit a GPU-cluster run: launch/slurm_gpu.sh --config configs/ple.py --workdir /shared/runs/ple
# One process per GPU (see slurm_gpu.sbatch for the resources); for one process per node with
# all its GPUs, set --ntasks-per-node=1 and drop --gpus-per-task in the sbatch file.
# Install on the cluster with the `cuda` extra (jax with CUDA 12 at the pinned jax version):
#   pip install -e '.[cuda]'
set -euo pipefail
exec sbatch "$(dirname "$0")/slurm_gpu.sbatch" "$@"
