"""Weak scaling on CPU devices: examples/s with 1, 2, 4 and 8 devices at a fixed per-device batch.

    python bench/scaling.py [--per-device-batch 500] [--steps 40] [--devices 1,2,4,8]

Each device count runs in a fresh process (JAX_NUM_CPU_DEVICES is read at import). Efficiency is
(examples/s with n devices) / (n × examples/s with 1 device).

What it can and cannot predict for a pod: on one CPU host the "devices" share the same cores and
memory bandwidth, so efficiency here falls with n by construction (2 cores cannot run 8 devices'
work in parallel); it does exercise the real data-parallel program — per-device batch slices,
gradient all-reduce, sharded gathers — and shows its fixed per-step overheads. On a TPU pod or a
GPU cluster each device has its own compute, so the step time stays near the 1-device step plus
the all-reduce of the dense gradients (a few MB for the paper's MMoE) and of the touched
embedding rows; this benchmark cannot measure interconnect bandwidth.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(n: int, per_device_batch: int, steps: int) -> float:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(n), JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable,
        os.path.join(HERE, "throughput.py"),
        "--batch",
        str(per_device_batch * n),
        "--steps",
        str(steps),
        "--rows",
        str(max(200_000, per_device_batch * n * (steps + 30))),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"train examples/s: ([\d,]+)", out)
    if m is None:
        raise RuntimeError(f"no throughput in output of {cmd}:\n{out}")
    return float(m.group(1).replace(",", ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--per-device-batch", type=int, default=500)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--devices", default="1,2,4,8")
    args = ap.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    print(f"weak scaling, per-device batch {args.per_device_batch}, {os.cpu_count()} CPU cores")
    print(f"{'devices':>8} {'global batch':>13} {'examples/s':>12} {'efficiency':>11}")
    base = None
    for n in counts:
        eps = run(n, args.per_device_batch, args.steps)
        base = base or eps / n
        print(f"{n:>8} {n * args.per_device_batch:>13} {eps:>12,.0f} {eps / (n * base):>11.2f}")


if __name__ == "__main__":
    main()
