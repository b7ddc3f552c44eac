"""Send everything the engines print to a log file under the run directory.

Ray (its driver logs, and worker and actor output it forwards to the driver), vLLM and
transformers write to the process's file descriptors 1 and 2 from Python and from C++. Their
loggers are configured by each library, often before labelmill could touch them, so the only
place that catches all of it is the descriptors themselves: :func:`capture_output` points fd 1
and 2 at ``<output_uri>/logs/<name>.log`` for the block and hands back a stream on the
*original* stdout, which the :class:`~labelmill.console.Console` writes to. With ``tee`` (the
``--verbose`` flag) the captured output is also copied to the original stderr. Child processes
started inside the block (Ray's raylet and workers on an embedded Ray) inherit the redirect.

A remote ``output_uri`` (``s3://...``) gets a local log file under the system temp dir, copied
to ``<output_uri>/logs/`` when the block ends.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from labelmill.layout import logs_dir, run_path


@dataclass
class Captured:
    """The console stream (original stdout), its error twin, and where the logs go."""

    stdout: TextIO
    stderr: TextIO
    log_path: str  # local file being written
    log_uri: str  # where it ends up (== log_path for a local run directory)


def log_location(output_uri: str, command: str, now: datetime | None = None) -> tuple[str, str]:
    """(local path to write, final URI) of a command's log file under ``<output_uri>/logs/``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    name = f"{command}-{stamp}-{os.getpid()}.log"
    uri = run_path(logs_dir(output_uri), name)
    if "://" in output_uri and not output_uri.startswith("file://"):
        local = os.path.join(tempfile.mkdtemp(prefix="labelmill-logs-"), name)
        return local, uri
    path = uri.removeprefix("file://")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path, path


def _pump(read_fd: int, log_fd: int, echo_fd: int) -> None:
    """Copy the pipe to the log file and to the original stderr until the write end closes."""
    try:
        while chunk := os.read(read_fd, 65536):
            os.write(log_fd, chunk)
            with suppress(OSError):  # the terminal went away: the log file still gets it all
                os.write(echo_fd, chunk)
    except OSError:  # the log file was closed under us (a child outlived the block)
        pass
    finally:
        os.close(read_fd)
        os.close(echo_fd)


def _console_stream(stream: TextIO, fd: int, saved: int) -> tuple[TextIO, bool]:
    """Where the console writes: the original descriptor when ``stream`` (sys.stdout or
    sys.stderr) writes to ``fd``; else ``stream`` itself, which the redirect does not touch
    (a stream an embedding program or a test harness put there). Returns (stream, owned)."""
    try:
        on_fd = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: no descriptor
        on_fd = False
    if not on_fd:
        return stream, False
    return os.fdopen(os.dup(saved), "w", buffering=1, errors="replace"), True


@contextmanager
def capture_output(output_uri: str, command: str, tee: bool = False) -> Iterator[Captured]:
    """Redirect fd 1 and 2 to the command's log file for the block (see the module docstring).

    The descriptors are restored when the block ends, also on an exception, so a traceback
    printed after it reaches the terminal.
    """
    log_path, log_uri = log_location(output_uri, command)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pump: threading.Thread | None = None
    write_end = None
    if tee:
        read_end, write_end = os.pipe()
        pump = threading.Thread(
            target=_pump, args=(read_end, log_fd, os.dup(saved_err)), daemon=True, name="log tee"
        )
        pump.start()
        target = write_end
    else:
        target = log_fd
    os.dup2(target, 1)
    os.dup2(target, 2)
    console_out, own_out = _console_stream(sys.stdout, 1, saved_out)
    console_err, own_err = _console_stream(sys.stderr, 2, saved_err)
    try:
        yield Captured(console_out, console_err, log_path, log_uri)
    finally:
        for stream in (sys.stdout, sys.stderr, console_out, console_err):
            with suppress(OSError, ValueError):
                stream.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        if write_end is not None:
            os.close(write_end)  # the pump sees EOF once no descriptor holds the write end
        if pump is not None:
            pump.join(timeout=5.0)
        os.close(saved_out)
        os.close(saved_err)
        # A child that outlived the block still holds the pipe; the pump keeps the log file
        # until it exits rather than write into a reused descriptor number.
        if pump is None or not pump.is_alive():
            os.close(log_fd)
        for stream, owned in ((console_out, own_out), (console_err, own_err)):
            if owned:
                stream.close()
        if log_uri != log_path:
            _upload(log_path, log_uri)


def _upload(local: str, uri: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.put_file(local, path)
