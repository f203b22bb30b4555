#!/usr/bin/env bash
# One process on this machine (all local devices):  launch/local.sh --config configs/mmoe.py --workdir runs/mmoe
set -euo pipefail
exec "${PYTHON:-python}" -m mtl_jax.train "$@"
