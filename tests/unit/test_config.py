"""Config tree: good configs load, bad values and unknown keys fail naming the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from labelmill.config import ConfigError, apply_override, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def minimal() -> dict:
    return {
        "corpus": {"uri": "docs.parquet"},
        "taxonomy": {
            "labels": [{"name": "a", "description": "A."}, {"name": "b", "description": "B."}]
        },
        "teachers": [{"name": "t1", "kind": "vllm", "model": "/m"}],
        "output_uri": "out",
    }


def test_shipped_configs_validate() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if path.name == "serve.yaml":  # a Ray Serve config file: see test_serving.py
            continue
        config = load_config(path)
        assert config.teachers, path


def test_demo_config_values() -> None:
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.corpus.resolved_format == "parquet"
    assert len(config.taxonomy.labels) == 12
    assert config.teachers[0].accelerator == "cpu"
    assert config.ray.address is None


def test_defaults_and_format_inference() -> None:
    config = parse_config(minimal())
    assert config.corpus.resolved_format == "parquet"
    assert config.corpus.id_column == "id"
    assert config.teachers[0].mode == "set"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda c: c.update(extra=1), r"extra: Extra inputs are not permitted"),
        (lambda c: c["corpus"].update(uri="docs.txt"), r"cannot infer the corpus format"),
        (lambda c: c["corpus"].update(limit=0), r"corpus.limit: Input should be greater than 0"),
        (lambda c: c["corpus"].update(fromat="csv"), r"corpus.fromat: Extra inputs"),
        (
            lambda c: c["taxonomy"]["labels"].append({"name": "a", "description": "x"}),
            r"duplicate label names: \['a'\]",
        ),
        (lambda c: c["taxonomy"]["labels"][0].update(name="bad name"), r"label name 'bad name'"),
        (
            lambda c: c["taxonomy"].update(labels=[]),
            r"taxonomy.labels: List should have at least 1 item",
        ),
        (
            lambda c: c["teachers"][0].update(kind="grpc"),
            r"teachers.0.kind: must be one of 'vllm', 'openai', 'embedding', 'rules' "
            r"\(got 'grpc'\)",
        ),
        (lambda c: c["teachers"][0].update(mode="vote"), r"teachers.0.mode"),
        (
            lambda c: c["teachers"].append(dict(c["teachers"][0])),
            r"teachers: duplicate teacher names \['t1'\]",
        ),
        (lambda c: c["teachers"][0].update(kind="openai"), r"teachers.0.base_url: Field required"),
        (
            lambda c: c["teachers"][0].update(base_url="http://x"),
            r"teachers.0.base_url: Extra inputs are not permitted; base_url is only valid for kind "
            r"'openai', this teacher is kind 'vllm' \(got 'http://x'\)",
        ),
        (lambda c: c["teachers"][0].update(temperature=3), r"teachers.0.temperature"),
        (lambda c: c["teachers"][0].update(max_model_len=10), r"teachers.0.max_model_len"),
        (
            lambda c: c["teachers"][0].update(
                prompt={"few_shot": [{"text": "x", "labels": ["zz"]}]}
            ),
            r"teachers.0.prompt.few_shot.0.labels: \['zz'\] are not in the taxonomy",
        ),
        (
            lambda c: c["ray"].update(num_cpus=0) if "ray" in c else c.update(ray={"num_cpus": 0}),
            r"ray.num_cpus",
        ),
    ],
)
def test_bad_configs_name_the_field(mutate, match: str) -> None:
    tree = copy.deepcopy(minimal())
    mutate(tree)
    with pytest.raises(ConfigError, match=match):
        parse_config(tree)


def test_overrides_apply_typed_values() -> None:
    config = parse_config(
        minimal(),
        ["corpus.limit=10", "teachers.0.mode=score", "ray.address=auto", "corpus.id_column=null"],
    )
    assert config.corpus.limit == 10
    assert config.teachers[0].mode == "score"
    assert config.ray.address == "auto"
    assert config.corpus.id_column is None


@pytest.mark.parametrize(
    ("assignment", "match"),
    [
        ("corpus.limit", r"not of the form key=value"),
        ("corpus..limit=1", r"has an empty key"),
        ("teachers.5.mode=set", r"no list item '5'"),
        ("output_uri.x=1", r"output_uri is a scalar"),
    ],
)
def test_bad_overrides(assignment: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_override(minimal(), assignment)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must be a mapping at the top level, got int"):
        load_config(scalar)
