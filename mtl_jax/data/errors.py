"""Bad input: one exception that names file, line and problem, and skip-bad bookkeeping.

Every reader and ``prepare`` either raise :class:`DataError` at the first bad line or, with
``--skip-bad`` / ``config.data.skip_bad``, skip it and count it under a short reason. The counts
are printed and stored (``metadata.json`` or the reader's stats): nothing is dropped silently.
"""

from __future__ import annotations

import collections
import os


class DataError(ValueError):
    """A problem in an input file, reported as ``"{path}:{line}: {problem}"``.

    Attributes:
      file: path of the file.
      line: 1-based line number (the line a problem is on; 1 for a whole-file problem such as
        an empty file).
      problem: what is wrong, in words.
    """

    def __init__(self, file, line: int, problem: str):
        self.file = os.fspath(file)
        self.line = int(line)
        self.problem = problem
        super().__init__(f"{self.file}:{self.line}: {problem}")

    def __reduce__(self):  # picklable across processes with its three fields
        return (DataError, (self.file, self.line, self.problem))


class BadLines:
    """Raises :class:`DataError`, or (``skip=True``) counts skipped lines per reason.

    Args:
      skip: count and continue instead of raising.
    """

    def __init__(self, skip: bool = False):
        self.skip = bool(skip)
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def bad(self, file, line: int, problem: str, reason: str | None = None) -> None:
        """Reports one bad line: raises unless skipping; ``reason`` groups the counts."""
        err = DataError(file, line, problem)
        if not self.skip:
            raise err
        key = reason or problem
        self.counts[key] += 1
        self.examples.setdefault(key, str(err))

    def add(self, reason: str, count: int, example: str) -> None:
        """Counts ``count`` lines skipped for ``reason`` (already decided to be skipped)."""
        if count:
            self.counts[reason] += int(count)
            self.examples.setdefault(reason, example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "skipped_lines": self.total,
            "by_reason": dict(self.counts),
            "first_example": dict(self.examples),
        }

    def summary(self) -> str:
        """One line per reason, or a line saying nothing was skipped."""
        if not self.counts:
            return "bad lines skipped: 0"
        lines = [f"bad lines skipped: {self.total}"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {n:>10}  {reason}   (first: {self.examples[reason]})")
        return "\n".join(lines)
