"""CLI: ``python -m mtl_jax.train --config configs/mmoe.py[:runlocal] --workdir runs/mmoe``.

Any config key can be overridden, e.g. ``--config.model.num_experts=4 --config.num_epochs=1``.
Re-running with the same workdir resumes from its newest complete checkpoint; a config that
changes what is trained is refused there unless ``--allow_config_change`` (``mtl_jax/resume.py``
lists what may change). Bad input prints one ``error: ...`` line and exits 2 (``--traceback`` or
``MTL_JAX_TRACEBACK=1`` for the traceback; ``mtl_jax/cli.py``). When launched as one of
several processes (TPU pod, SLURM, or ``--coordinator_address/--num_processes/--process_id``),
``jax.distributed.initialize`` joins them; on a single machine it is skipped.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys


def _config_root_on_path(argv: list[str]) -> None:
    """Lets ``configs/x.py`` import ``configs.common`` from wherever the command is run."""
    for i, a in enumerate(argv):
        path = None
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        if path:
            root = os.path.dirname(os.path.dirname(os.path.abspath(path.split(":", 1)[0])))
            if root not in sys.path:
                sys.path.insert(0, root)


_config_root_on_path(sys.argv)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PID = flags.DEFINE_integer("process_id", None, "This process's id (multi-process).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Join a multi-process run found from the environment (TPU pod, SLURM)."
)
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a workdir under a config that changes what is trained (outside the allow-list of "
    "mtl_jax/resume.py); the change is recorded in config_history.jsonl.",
)
flags.mark_flags_as_required(["config", "workdir"])


def maybe_initialize_distributed() -> None:
    """Joins a multi-process run when one is configured; a no-op on a single machine.

    Explicit ``--coordinator_address/--num_processes/--process_id`` (the localhost rehearsal),
    or ``--multihost`` to let JAX detect the cluster (Cloud TPU VMs, SLURM), or a SLURM job with
    more than one task.
    """
    import jax

    if _COORD.value is not None:
        if _NPROC.value is None or _PID.value is None:
            raise app.UsageError("--coordinator_address needs --num_processes and --process_id")
        jax.distributed.initialize(
            coordinator_address=_COORD.value,
            num_processes=_NPROC.value,
            process_id=_PID.value,
        )
    elif _MULTIHOST.value or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _own_info_only(record) -> bool:
    """Below WARNING, only mtl_jax's own log lines (Orbax logs every file it writes at INFO)."""
    return record.levelno >= py_logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.get_absl_handler().addFilter(_own_info_only)
    maybe_initialize_distributed()
    from mtl_jax import loop

    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)


if __name__ == "__main__":
    from mtl_jax import cli

    cli.run_absl(main)
