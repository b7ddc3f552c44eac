"""The CLI's error paths (no Ray needed) and the purity of the core package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labelmill.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_core_never_imports_ray() -> None:
    modules = sorted(p.stem for p in (REPO / "labelmill").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('labelmill.' + m)\n"
        "bad = [m for m in ('ray', 'vllm', 'torch', 'transformers') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_missing_config_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["label", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_override_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs" / "demo.yaml")
    assert main(["label", config, "--set", "teachers.0.mode=vote"]) == 2
    assert "teachers.0.mode" in capsys.readouterr().err
    assert main(["label", config, "--set", "corpus.limit"]) == 2
    assert "not of the form key=value" in capsys.readouterr().err


def test_models_list_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.split() == [
        "all-minilm-l6-v2",
        "smollm2-135m-instruct",
        "tiny-random-llama",
    ]
    assert main(["models", "prepare", "gpt-17"]) == 2
    assert "unknown model 'gpt-17'" in capsys.readouterr().err


def test_prepare_tiny_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELMILL_HOME", str(tmp_path))
    assert main(["models", "prepare", "tiny-random-llama"]) == 0
    path = tmp_path / "models" / "tiny-random-llama"
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    stamp = (path / "labelmill-prepared.json").stat().st_mtime_ns
    assert main(["models", "prepare", "tiny-random-llama"]) == 0  # already there: not rebuilt
    assert (path / "labelmill-prepared.json").stat().st_mtime_ns == stamp


def test_verbose_and_quiet_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from labelmill.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["run", "c.yaml", "--quiet"])
    assert (args.quiet, args.verbose) == (True, False)
    args = parser.parse_args(["label", "c.yaml", "-v", "--set", "corpus.limit=5"])
    assert (args.quiet, args.verbose, args.overrides) == (False, True, ["corpus.limit=5"])
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["run", "c.yaml", "--quiet", "--verbose"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_job_error_names_the_log_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labelmill.cli as cli

    def fail(command: str, config: object, console: object, dry_run: bool = False) -> None:
        raise ValueError("corpus.uri 'x.parquet' does not exist")

    monkeypatch.setattr(cli, "_run_job", fail)
    config = str(REPO / "configs" / "demo.yaml")
    out = tmp_path / "run"
    assert main(["label", config, "--set", f"output_uri={out}"]) == 2
    err = capsys.readouterr().err
    assert "labelmill: corpus.uri 'x.parquet' does not exist" in err
    logs = list((out / "logs").glob("label-*.log"))
    assert len(logs) == 1 and f"engine logs: {logs[0]}" in err
