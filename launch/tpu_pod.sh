#!/usr/bin/env bash
# Run the same training command on every worker of a Cloud TPU pod slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE -- --config configs/ple.py --workdir gs://BUCKET/runs/ple
#
# Needs: gcloud configured for the project; the repo at ~/mtl_jax on every worker (first run
# `launch/tpu_pod.sh TPU_NAME ZONE --setup` to copy it and install it with the `tpu` extra:
# jax[tpu] at the pinned jax version, so flax and orbax stay at the versions pinned against it);
# a workdir every worker can reach (a GCS bucket). config.batch_size is the GLOBAL batch: keep it
# divisible by the number of chips. jax.distributed.initialize() finds the other workers by itself on TPU VMs.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 TPU_NAME ZONE (--setup | -- TRAIN_ARGS...)" >&2
  exit 2
fi
tpu=$1; zone=$2; shift 2
if [ "$1" == "--setup" ]; then
  gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all \
    "$(dirname "$0")/.." "$tpu":~/mtl_jax
  gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
    "cd ~/mtl_jax && pip install -e '.[tpu]'"
  exit 0
fi
[ "$1" == "--" ] || { echo "expected -- before the training arguments" >&2; exit 2; }
shift
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/mtl_jax && MTL_JAX_NO_PROGRESS=0 python -m mtl_jax.train --multihost$args"
