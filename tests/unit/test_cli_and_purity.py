"""The CLI's error paths (no Ray needed) and the purity of the core package."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from labelmill.errors import ConfigError, InputError, JobError, LabelmillError
from labelmill.pipelines.cli import main

REPO = Path(__file__).resolve().parents[2]


# What the pure core must never import, lazily or not: Ray and the edges built on it.
_EDGE_ROOTS = {"ray", "pipelines", "serve"}
_EDGE_PACKAGES = ("labelmill.pipelines", "labelmill.serve")


def _forbidden_imports(source: str, module: str) -> list[str]:
    """Every import in ``source`` (module-level, in functions, under ``if``) of Ray or an edge.

    Relative imports are resolved against ``module`` (the dotted name of the file), so
    ``from ..pipelines import x`` is caught as well as ``import ray``.
    """
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            edge = any(name == pkg or name.startswith(pkg + ".") for pkg in _EDGE_PACKAGES)
            if edge or name.split(".")[0] in _EDGE_ROOTS:
                bad.append(f"{module}:{node.lineno}: {name}")
                break
    return sorted(bad, key=lambda entry: int(entry.split(":")[1]))


def test_core_never_imports_ray_or_the_edges() -> None:
    files = sorted((REPO / "labelmill").rglob("*.py"))
    assert len(files) > 20  # the walk found the core
    bad = []
    for path in files:
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        bad += _forbidden_imports(path.read_text(), module)
    assert bad == []


def test_forbidden_import_finder_sees_lazy_and_relative_imports() -> None:
    source = (
        "import numpy\n"
        "def f():\n    import ray.data\n"
        "def g():\n    from ..pipelines.label import run_label_job\n"
        "if True:\n    from labelmill.serve import app\n"
        "from labelmill.serve_config import ServeConfig\n"
    )
    assert _forbidden_imports(source, "labelmill.student.x") == [
        "labelmill.student.x:3: ray.data",
        "labelmill.student.x:5: labelmill.pipelines.label",
        "labelmill.student.x:7: labelmill.serve",
    ]


def test_core_imports_without_ray_or_engines() -> None:
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


def test_distribution_adds_one_top_level_name() -> None:
    """Every package folder is installed, and every installed package lives under ``labelmill``."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, mapped = set(setuptools["packages"]), setuptools["package-dir"]
    assert {name.split(".")[0] for name in packages} == {"labelmill"}
    assert mapped == {"labelmill.pipelines": "pipelines", "labelmill.serve": "serve"}
    folders = set()
    for root, prefix in [("labelmill", "labelmill"), *((v, k) for k, v in mapped.items())]:
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root).parts
            folders.add(".".join([prefix, *rel]))
    assert folders == packages


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
        "tiny-random-bert",
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


def test_tiny_bert_keeps_its_words_whole_and_spells_the_rest(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    from labelmill.models import build_tiny_bert

    path = build_tiny_bert(tmp_path / "bert", ["corn", "maize"])
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    assert tokenizer.tokenize("Corn and maize") == ["corn", "a", "##n", "##d", "maize"]
    assert AutoModel.from_pretrained(str(path)).config.hidden_size == 32


def test_verbose_and_quiet_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from labelmill.pipelines.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["run", "c.yaml", "--quiet"])
    assert (args.quiet, args.verbose) == (True, False)
    args = parser.parse_args(["label", "c.yaml", "-v", "--set", "corpus.limit=5"])
    assert (args.quiet, args.verbose, args.overrides) == (False, True, ["corpus.limit=5"])
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["run", "c.yaml", "--quiet", "--verbose"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def _run_cli_with_failing_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: BaseException
) -> int:
    import labelmill.pipelines.cli as cli

    def fail(command: str, config: object, console: object, dry_run: bool = False) -> None:
        raise error

    monkeypatch.setattr(cli, "_run_job", fail)
    config = str(REPO / "configs" / "demo.yaml")
    return main(["label", config, "--set", f"output_uri={tmp_path / 'run'}"])


def test_job_error_names_the_log_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = InputError("corpus.uri 'x.parquet' does not exist")
    assert _run_cli_with_failing_job(monkeypatch, tmp_path, error) == 2
    err = capsys.readouterr().err
    assert "labelmill: corpus.uri 'x.parquet' does not exist" in err
    assert "Traceback" not in err
    logs = list((tmp_path / "run" / "logs").glob("label-*.log"))
    assert len(logs) == 1 and f"engine logs: {logs[0]}" in err


@pytest.mark.parametrize(
    ("error", "code", "shown"),
    [
        (ConfigError("teachers.0.name must not contain '/', got 'a/b'"), 2, "teachers.0.name"),
        (JobError("engine died"), 1, "labelmill: engine died"),
        (ValueError("shapes (3,) and (4,) differ"), 1, "internal error (ValueError): shapes"),
        (KeyError("k"), 1, "internal error (KeyError)"),
    ],
)
def test_exit_codes_follow_the_error_kind(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    code: int,
    shown: str,
) -> None:
    assert _run_cli_with_failing_job(monkeypatch, tmp_path, error) == code
    err = capsys.readouterr().err
    assert shown in err
    # a bug (not raised on purpose) shows its traceback; our own errors do not
    assert ("Traceback" in err) == (not isinstance(error, LabelmillError))


def test_ray_errors_become_job_errors() -> None:
    from ray.exceptions import ActorDiedError, RayTaskError

    from labelmill.pipelines.runtime import as_job_error

    died = as_job_error(ActorDiedError(), "label")
    assert isinstance(died, JobError) and str(died).startswith("label failed in Ray: ActorDied")
    # a task that raised our InputError keeps its kind (and so its exit code)
    wrapped = RayTaskError("udf", "Traceback ...", InputError("bad column")).as_instanceof_cause()
    assert isinstance(as_job_error(wrapped, "label"), InputError)
    bug = ValueError("x")
    assert as_job_error(bug, "label") is bug


def test_report_prices_only_priced_teachers() -> None:
    from labelmill.config import load_config
    from labelmill.pipelines.run import teacher_prices

    config = load_config(REPO / "configs" / "demo.yaml")  # an embedding and a vllm teacher
    kinds = {t.name: t.kind for t in config.teachers}
    prices = teacher_prices(config.teachers)
    assert set(prices) == {name for name, kind in kinds.items() if kind in ("vllm", "openai")}
    assert "embedding" in kinds.values() and len(prices) < len(kinds)
