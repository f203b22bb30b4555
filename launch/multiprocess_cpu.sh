#!/usr/bin/env bash
# Rehearse a multi-host run on one machine: N processes × M CPU devices each, the same command
# in every process (as on a TPU pod), coordinated by jax.distributed over localhost.
#
#   launch/multiprocess_cpu.sh NUM_PROCESSES DEVICES_PER_PROCESS -- --config configs/mmoe.py:runlocal --workdir runs/mp
#
# Every process reads its own slice of each global batch; process 0 writes logs; all processes
# write and restore checkpoints. Exits non-zero if any process fails. PYTHON names the
# interpreter (default: python on PATH), e.g. PYTHON=.venv/bin/python.
set -euo pipefail
if [ $# -lt 3 ] || [ "$3" != "--" ]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS -- TRAIN_ARGS..." >&2
  exit 2
fi
python=${PYTHON:-python}
nproc=$1; ndev=$2; shift 3
port=${MTL_JAX_PORT:-$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < nproc; i++)); do
  JAX_NUM_CPU_DEVICES=$ndev JAX_PLATFORMS=cpu "$python" -m mtl_jax.train "$@" \
    --coordinator_address="127.0.0.1:$port" --num_processes="$nproc" --process_id="$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit $status
