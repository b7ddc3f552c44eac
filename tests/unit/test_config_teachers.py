"""Teacher kinds: the union, fields of another kind, names, rules, load-time checks."""

from __future__ import annotations

import copy

import pytest
import yaml

from labelmill.config import (
    ConfigError,
    EmbeddingTeacherKindConfig,
    OpenAITeacherConfig,
    RulesTeacherConfig,
    VllmTeacherConfig,
    kinds_with_field,
    parse_config,
)

LABELS = [{"name": "corn", "description": "Corn."}, {"name": "grain", "description": "Grain."}]


def tree(*teachers: dict, **extra: object) -> dict:
    return {
        "corpus": {"uri": "docs.parquet"},
        "taxonomy": {"labels": copy.deepcopy(LABELS)},
        "teachers": list(teachers),
        "output_uri": "out",
        **extra,
    }


VLLM = {"name": "v", "kind": "vllm", "model": "/m"}
OPENAI = {"name": "o", "kind": "openai", "model": "served", "base_url": "http://h/v1"}
EMBEDDING = {"name": "e", "kind": "embedding", "model": "all-minilm-l6-v2"}
RULES = {"name": "r", "kind": "rules", "rules": {"corn": [r"\bcorn\b"]}}


def test_each_kind_parses_into_its_class() -> None:
    config = parse_config(tree(VLLM, OPENAI, EMBEDDING, RULES))
    vllm, openai, embedding, rules = config.teachers
    assert isinstance(vllm, VllmTeacherConfig) and vllm.accelerator == "gpu"
    assert isinstance(openai, OpenAITeacherConfig) and openai.max_retries == 3
    assert isinstance(embedding, EmbeddingTeacherKindConfig)
    assert embedding.embedding.calibration == "auto"
    assert isinstance(rules, RulesTeacherConfig) and rules.batch_size == 4096
    assert [t.vote_mode for t in config.teachers] == ["set", "set", "embedding", "set"]
    assert not hasattr(embedding, "mode") and not hasattr(rules, "model")


def test_cost_uses_the_llm_prices_only() -> None:
    priced = {**OPENAI, "price_per_1k_input": 2.0, "price_per_1k_output": 10.0}
    config = parse_config(tree(priced, RULES))
    assert config.teachers[0].cost(1500, 200) == pytest.approx(3.0 + 2.0)
    assert config.teachers[1].cost(1500, 200) == 0.0


def test_the_minimum_rules_yaml_works_as_written() -> None:
    teachers = yaml.safe_load(
        r"""
- name: keywords
  kind: rules
  rules:
    corn: ['\bcorn\b', '\bmaize\b']
    grain: ['\bgrains?\b', '\bwheat\b']
"""
    )
    rules = parse_config(tree(*teachers)).teachers[0]
    assert rules.rules["corn"].any == [r"\bcorn\b", r"\bmaize\b"]
    assert rules.rules["grain"].none == []
    assert rules.abstain_when_no_match is False
    rich = {**RULES, "rules": {"grain": {"any": ["wheat"], "none": ["salt"]}}}
    assert parse_config(tree(rich)).teachers[0].rules["grain"].none == ["salt"]


def test_kinds_with_field() -> None:
    assert kinds_with_field("api_key_env") == ["openai"]
    assert kinds_with_field("mode") == ["vllm", "openai"]
    assert kinds_with_field("accelerator") == ["vllm", "embedding"]
    assert kinds_with_field("rules") == ["rules"]
    assert kinds_with_field("nonsense") == []


@pytest.mark.parametrize(
    ("teacher", "match"),
    [
        (
            {**VLLM, "api_key_env": "KEY"},
            r"teachers.0.api_key_env: Extra inputs are not permitted; api_key_env is only valid "
            r"for kind 'openai', this teacher is kind 'vllm' \(got 'KEY'\)",
        ),
        (
            {**EMBEDDING, "mode": "set"},
            r"teachers.0.mode: .*only valid for kind 'vllm' or 'openai', this teacher is kind "
            r"'embedding' \(got 'set'\)",
        ),
        (
            {**RULES, "model": "m"},
            r"teachers.0.model: .*only valid for kind 'vllm' or 'openai' or 'embedding'",
        ),
        ({**VLLM, "rules": {}}, r"teachers.0.rules: .*only valid for kind 'rules'"),
        ({**VLLM, "modle": "x"}, r"teachers.0.modle: Extra inputs are not permitted \(got 'x'\)"),
        (
            {k: v for k, v in VLLM.items() if k != "kind"},
            r"teachers.0.kind: must be one of 'vllm', 'openai', 'embedding', 'rules' \(got None\)",
        ),
        ({**OPENAI, "base_url": " "}, r"teachers.0.base_url: .*non-empty base_url \(got ' '\)"),
        (
            {**VLLM, "name": "a/b"},
            r"teachers.0.name: .*teacher name 'a/b' must .*\(no '/'\) \(got 'a/b'\)",
        ),
        (
            {**RULES, "rules": {"corn": ["(unclosed"]}},
            r"teachers.0.rules.corn.any: .*pattern 0 '\(unclosed' is not a valid regular "
            r"expression.*\(got \['\(unclosed'\]\)",
        ),
        (
            {**RULES, "rules": {"corn": {"any": ["x"], "none": ["[z"]}}},
            r"teachers.0.rules.corn.none: .*pattern 0 '\[z'",
        ),
        ({**RULES, "rules": {"corn": []}}, r"teachers.0.rules.corn.any: List should have at least"),
        ({**RULES, "rules": {}}, r"teachers.0.rules: Dictionary should have at least 1 item"),
        ({**RULES, "rules": {"corn": {"all": ["x"]}}}, r"teachers.0.rules.corn.all: Extra inputs"),
        (
            {**RULES, "rules": {"maize": ["x"]}},
            r"teachers.0.rules.maize: label 'maize' is not in the taxonomy",
        ),
        (
            {**VLLM, "prompt": {"few_shot": [{"text": "x", "labels": ["zz"]}]}},
            r"teachers.0.prompt.few_shot.0.labels: \['zz'\] are not in the taxonomy",
        ),
    ],
)
def test_teacher_errors_name_the_field(teacher: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(tree(teacher))


def test_platt_needs_a_gold_seed_at_load() -> None:
    platt = {**EMBEDDING, "embedding": {"calibration": "platt"}}
    message = r"teachers.0.embedding.calibration: 'platt' needs gold seed documents"
    with pytest.raises(ConfigError, match=message):
        parse_config(tree(platt))
    with pytest.raises(ConfigError, match=message):  # gold but no seed share
        parse_config(tree(platt, corpus={"uri": "docs.parquet", "gold_column": "tags"}))
    with pytest.raises(ConfigError, match=message):  # a seed share but no gold
        parse_config(tree(platt, gold={"seed_fraction": 0.2}))
    seeded = parse_config(tree(platt, gold={"uri": "gold.jsonl", "seed_fraction": 0.2}))
    assert seeded.teachers[0].embedding.calibration == "platt"


@pytest.mark.parametrize(
    ("campaign", "match"),
    [
        (["e"], r"campaign.teachers.0: 'e' is kind 'embedding'; a campaign teacher .* vllm or "),
        (["v", "r"], r"campaign.teachers.1: 'r' is kind 'rules'"),
        (["zz"], r"campaign.teachers.0: 'zz' is not a configured teacher \['e', 'r', 'v'\]"),
    ],
)
def test_campaign_teachers_must_be_llms(campaign: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(tree(VLLM, EMBEDDING, RULES, campaign={"teachers": campaign}))
    assert parse_config(tree(VLLM, OPENAI, campaign={"teachers": ["o"]})).campaign.teachers


def test_teachers_are_optional_where_no_stage_runs_one() -> None:
    config = parse_config({k: v for k, v in tree().items() if k != "teachers"})
    assert config.teachers == []


def test_the_label_job_needs_a_teacher() -> None:
    from labelmill.pipelines.label import run_label_job

    config = parse_config(tree())
    with pytest.raises(ConfigError, match=r"teachers: at least one teacher is needed to label"):
        run_label_job(config)


def test_cascade_teacher_errors_drop_the_kind_tag() -> None:
    from labelmill.config import validate_tree
    from labelmill.serve_config import ServeConfig

    args = {"model_dir": "/s", "cascade": {"teacher": {**OPENAI, "accelerator": "cpu"}}}
    with pytest.raises(ConfigError, match=r"cascade.teacher.accelerator: .*kind 'vllm' or "):
        validate_tree(ServeConfig, args, None, "serve args")
