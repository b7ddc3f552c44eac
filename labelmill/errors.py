"""The error hierarchy that the CLI maps to exit codes.

Three kinds, so a caller (the CLI, a test, a notebook) can tell whose fault a failure is:

- :class:`ConfigError` (exit 2): a configuration file, override or field that does not validate.
  The message names the dotted field and carries the received value.
- :class:`InputError` (exit 2): the data a valid config points at is unusable: a corpus that does
  not exist, a column that is missing, a model directory without ``labelmill.json``.
- :class:`JobError` (exit 1): a job that started and could not finish: an engine that died, a
  Ray task that failed, rows-in != rows-out.

Every class derives from :class:`LabelmillError`; ``ConfigError`` and ``InputError`` also derive
from ``ValueError`` and ``JobError`` from ``RuntimeError``, so code written against the built-in
types keeps working. Internal failures (bugs) are none of these and surface as tracebacks.
"""

from __future__ import annotations


class LabelmillError(Exception):
    """Base of every error labelmill raises on purpose."""

    exit_code = 1


class ConfigError(LabelmillError, ValueError):
    """A configuration file, override or field that does not validate (exit 2)."""

    exit_code = 2


class InputError(LabelmillError, ValueError):
    """Input data that a valid config points at is missing or unusable (exit 2)."""

    exit_code = 2


class JobError(LabelmillError, RuntimeError):
    """A job that started and could not finish (exit 1)."""

    exit_code = 1


def with_context(error: LabelmillError, context: str) -> LabelmillError:
    """The same kind of error with ``context`` in front of its message (chained by the caller).

    Example:
        >>> str(with_context(JobError("engine died"), "stage 'label' failed"))
        "stage 'label' failed: engine died"
    """
    kind = type(error) if isinstance(error, LabelmillError) else JobError
    return kind(f"{context}: {error}")
