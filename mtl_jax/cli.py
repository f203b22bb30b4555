"""How the command-line tools report errors: one line for a problem the user can fix, a
traceback for a bug.

``python -m mtl_jax.train``, ``mtl_jax.evaluate``, ``mtl_jax.predict``, ``mtl_jax.export``,
``mtl_jax.ablate`` and ``mtl_jax.data.prepare`` run their ``main`` through :func:`run_absl` or
:func:`run`. A *user error* is printed as one line,
``error: <message>``, on stderr and the command exits with status 2. User errors are:

* :class:`UserError` and its subclasses (a refused resume, no restorable checkpoint, a non-finite
  loss): the message is the whole story;
* :class:`mtl_jax.data.errors.DataError` (``path:line: problem``);
* a ``ValueError`` raised by a ``raise`` statement in this package or in a ``configs/`` file:
  by the house convention these are input checks that name the config key or file;
* path problems: ``FileNotFoundError``, ``FileExistsError``, ``NotADirectoryError``,
  ``IsADirectoryError``, ``PermissionError``;
* bad flags and config overrides (an unknown ``--config.x.y`` key names the closest valid keys).

Anything else (a ``ValueError`` from inside JAX or NumPy, a ``TypeError``, an unpacking error in
our own code) is a bug and keeps its full traceback. ``MTL_JAX_TRACEBACK=1`` in the environment or
``--traceback`` on the command line prints the full traceback of user errors too.

This module imports only the standard library at import time, so every module may use
:class:`UserError`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence

TRACEBACK_ENV = "MTL_JAX_TRACEBACK"
EXIT_USER_ERROR = 2
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class UserError(Exception):
    """A problem with a command's input or its workdir, fully described by its message."""


def traceback_wanted(argv: Sequence[str] | None = None) -> bool:
    """Whether the user asked for full tracebacks (``MTL_JAX_TRACEBACK=1`` or ``--traceback``)."""
    if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
        return True
    return "--traceback" in (sys.argv if argv is None else argv)


def _raised_by_our_check(exc: BaseException) -> bool:
    """True when ``exc`` comes from a ``raise`` statement in mtl_jax or in a configs/ file."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    frame = frames[-1]
    path = os.path.abspath(frame.filename)
    ours = path.startswith(_PACKAGE_DIR + os.sep) or (
        os.path.basename(os.path.dirname(path)) == "configs"
    )
    return ours and (frame.line or "").lstrip().startswith("raise")


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a problem the user can fix from its message alone (module docstring)."""
    if isinstance(exc, (UserError, *_PATH_ERRORS)):
        return True
    from mtl_jax.data.errors import DataError

    if isinstance(exc, DataError):
        return True
    return isinstance(exc, ValueError) and _raised_by_our_check(exc)


def one_line(message: str) -> str:
    """``message`` with its lines joined, so that an error is one line of output."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report(exc: BaseException, argv: Sequence[str] | None = None) -> int:
    """Prints ``exc`` as ``error: ...`` (and its traceback when wanted); returns the status."""
    if traceback_wanted(argv):
        traceback.print_exception(exc, file=sys.stderr)
    message = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, _PATH_ERRORS) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def _caused(message: str, cause: BaseException) -> UserError:
    """A UserError with ``message`` whose traceback (when wanted) is that of ``cause``."""
    error = UserError(message)
    error.__cause__ = cause
    return error


def run(main: Callable[..., int | None], argv: Sequence[str] | None = None) -> int:
    """Calls ``main(argv)`` (an argparse CLI); a user error becomes one line and status 2.

    ``SystemExit`` with a message (``raise SystemExit("--configs: no config file ...")``) is a
    user error too; argparse's own usage errors keep their status 2 and usage line.
    """
    try:
        status = main(argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            return report(_caused(e.code, e), argv)
        raise
    except Exception as e:
        if not is_user_error(e):
            raise
        return report(e, argv)
    return int(status or 0)


def add_traceback_flag(parser) -> None:
    """Adds ``--traceback`` to an argparse parser (:func:`traceback_wanted` reads it)."""
    parser.add_argument(
        "--traceback",
        action="store_true",
        help=f"print the full traceback of every error (or set {TRACEBACK_ENV}=1)",
    )


# absl CLIs (train, evaluate) ----------------------------------------------------------------


def run_absl(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)`` with one-line errors for bad flags, overrides and user errors."""
    from absl import app, flags

    if "traceback" not in flags.FLAGS:
        flags.DEFINE_bool(
            "traceback", False, f"Print the full traceback of every error (or {TRACEBACK_ENV}=1)."
        )

    def guarded(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            sys.exit(report(_caused(str(e), e)))
        except Exception as e:
            if not is_user_error(e):
                raise
            sys.exit(report(e))

    app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]):
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
    except Exception as e:
        message = _flag_error_message(e, argv)
        if message is None:
            raise
        sys.exit(report(_caused(message, e), argv))
    for name in _config_flag_names():
        value = flags.FLAGS[name].value
        if type(value).__name__ == "_ErrorConfig":  # ml_collections defers a failed load
            error = object.__getattribute__(value, "_error")
            last = [line for line in str(error).splitlines() if line.strip()][-1].strip()
            path = _config_path(name, argv)
            message = f"--{name}={path}: cannot load the config file: {last}"
            sys.exit(report(_caused(message, error), argv))
    return rest


def _flag_error_message(exc: Exception, argv: list[str]) -> str | None:
    from absl import flags

    if isinstance(exc, (AttributeError, KeyError)):
        for name in _config_flag_names():
            message = unknown_override_message(name, argv)
            if message:
                return message
        return None
    message = str(exc)
    if isinstance(exc, OSError) and "config file" in message:
        # A config file that does not load, met while applying an override to it.
        last = [line for line in message.splitlines() if line.strip()][-1].strip()
        return f"cannot load the config file: {last}"
    if not (isinstance(exc, flags.Error) or is_user_error(exc)):
        return None
    if "Traceback (most recent call last)" in message:
        # ml_collections puts the config file's traceback into the message; its last line is
        # the error ("ValueError: config argument 'runlcl' is not one of [...]").
        head = message.split("Error whilst parsing config file:")[0]
        last = [line for line in message.splitlines() if line.strip()][-1].strip()
        message = head + last
    return message


def _config_flag_names() -> list[str]:
    from absl import flags

    # Every ml_collections config flag (train has one: --config).
    return [name for name in flags.FLAGS if type(flags.FLAGS[name]).__name__ == "_ConfigFlag"]


def _config_path(name: str, argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def unknown_override_message(name: str, argv: Sequence[str]) -> str | None:
    """Names the first ``--<name>.a.b=v`` whose key the config lacks, with the closest keys."""
    from absl import flags

    path = _config_path(name, argv)
    if path is None:
        return None
    try:
        config = flags.FLAGS[name].parser.parse(path)
    except Exception:
        return None  # the config itself does not load: the original error says why
    for arg in argv:
        match = re.match(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)", arg)
        if match:
            problem = missing_key(config, match.group(1), root=name)
            if problem:
                return f"--{name}.{match.group(1)}: {problem}"
    return None


def _leaf_keys(node, prefix: str = "") -> list[str]:
    if not hasattr(node, "keys"):
        return [prefix]
    return [k for key in node.keys() for k in _leaf_keys(node[key], f"{prefix}{key}.")]


def missing_key(config, dotted: str, *, root: str = "config") -> str | None:
    """Why ``dotted`` is not a key of ``config`` (closest valid keys named), or None if it is.

    The closest keys (at most 3): keys elsewhere with the same last name (``num_experts`` →
    ``model.num_experts``), then keys next to the unknown part (``model.num_expert`` →
    ``model.num_experts``), then the closest full keys; with none close, the keys where the
    unknown part is.
    """
    node, walked = config, root
    for part in dotted.split("."):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            if not keys:
                return f"{walked} is a value, not a group of keys"
            leaves = [k.rstrip(".") for k in _leaf_keys(config)]
            last = dotted.rsplit(".", 1)[-1]
            close = [f"{root}.{k}" for k in leaves if k.rsplit(".", 1)[-1] == last]
            close += [f"{walked}.{k}" for k in difflib.get_close_matches(part, keys, cutoff=0.6)]
            close += [f"{root}.{k}" for k in difflib.get_close_matches(dotted, leaves)]
            close = list(dict.fromkeys(close))[:3]
            hint = (
                "closest: " + ", ".join(close)
                if close
                else f"keys of {walked}: " + ", ".join(sorted(keys))
            )
            return f"unknown config key {walked}.{part}; {hint}"
        node, walked = node[part], f"{walked}.{part}"
    return None
