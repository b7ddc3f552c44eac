"""Everything written to fd 1/2 (Python, C-level, child processes) lands in the run directory's
log file; the console still reaches the original stdout (no Ray)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from labelmill.logcapture import log_location

SCRIPT = textwrap.dedent(
    """
    import logging, os, subprocess, sys
    from labelmill.logcapture import capture_output

    logging.basicConfig(level=logging.INFO)  # a library's handler bound to sys.stderr
    with capture_output(sys.argv[1], "run", tee=sys.argv[2] == "tee") as captured:
        print("python print INFO")
        logging.getLogger("ray.data").info("Starting execution of Dataset dataset_0")
        os.write(1, b"raw fd 1\\n")
        os.write(2, b"raw fd 2\\n")
        subprocess.run(["sh", "-c", "echo child stdout; echo child stderr >&2"], check=True)
        captured.stdout.write("CONSOLE LINE\\n")
        print(captured.log_uri, file=captured.stderr)
    print("after the block")
    """
)
ENGINE = [
    "python print INFO",
    "Starting execution of Dataset dataset_0",
    "raw fd 1",
    "raw fd 2",
    "child stdout",
    "child stderr",
]


def run(out: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), mode], capture_output=True, text=True, check=True
    )
    # the console's line: with tee the pump may echo engine lines after it, so not always last
    log_uri = next(line for line in result.stderr.splitlines() if line.endswith(".log"))
    return result, Path(log_uri).read_text(encoding="utf-8")


def test_engine_output_goes_to_the_log_and_only_the_console_to_stdout(tmp_path: Path) -> None:
    result, log = run(tmp_path / "run", "quiet")
    assert result.stdout == "CONSOLE LINE\nafter the block\n"
    assert all(line in log for line in ENGINE)
    assert "CONSOLE LINE" not in log
    logs = list((tmp_path / "run" / "logs").glob("run-*.log"))
    assert len(logs) == 1 and result.stderr.strip() == str(logs[0])  # nothing else on stderr


def test_verbose_tees_the_engine_output_to_stderr(tmp_path: Path) -> None:
    result, log = run(tmp_path / "run", "tee")
    assert result.stdout == "CONSOLE LINE\nafter the block\n"
    assert all(line in log for line in ENGINE)
    assert all(line in result.stderr for line in ENGINE)


def test_remote_run_directory_gets_the_log_uploaded() -> None:
    code = textwrap.dedent(
        """
        import fsspec, os
        from labelmill.logcapture import capture_output
        with capture_output("memory://bucket/run", "label") as captured:
            os.write(2, b"engine says hi\\n")
        fs, path = fsspec.core.url_to_fs(captured.log_uri)
        print(captured.log_uri.startswith("memory://bucket/run/logs/label-"))
        print(fs.cat_file(path).decode().strip())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["True", "engine says hi"]


def test_log_location(tmp_path: Path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    local, uri = log_location(str(tmp_path / "out"), "run", now)
    assert local == uri and Path(local).parent == tmp_path / "out" / "logs"
    assert Path(local).name.startswith("run-20260102T030405-") and local.endswith(".log")
    local, uri = log_location("s3://bucket/run", "distill", now)
    assert uri.startswith("s3://bucket/run/logs/distill-20260102T030405-")
    assert not local.startswith("s3://") and Path(local).parent.is_dir()
