"""The `rules` teacher on Ray Data: a stateless ``map_batches`` of the core matcher.

The rule set is compiled once on the driver (:func:`labelmill.rules.compile_rules`; the config
already checked every pattern and label) and shipped to each task; every batch of (id, text)
rows becomes the same number of vote rows (:func:`labelmill.rules.rule_votes`), a bad text an
errored row. No actors: the matcher holds no model, so tasks scale with the cluster's CPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from labelmill.config import RulesTeacherConfig
from labelmill.rules import CompiledRules, compile_rules, rule_votes, rules_hash
from labelmill.taxonomy import Taxonomy


def rules_prompt_hash(teacher: RulesTeacherConfig, taxonomy: Taxonomy) -> str:
    """The lineage hash of a rules teacher's votes (its rules and the taxonomy version)."""
    return rules_hash(teacher.canonical(), taxonomy.version)


def vote_batch(batch: pa.Table, rules: CompiledRules, lineage: dict[str, str]) -> pa.Table:
    """Ray Data UDF: (id, text) rows -> one vote row each (see labelmill.records)."""
    return rule_votes(batch["id"], batch["text"], rules, lineage, datetime.now(UTC))


def rules_stage(
    teacher: RulesTeacherConfig, taxonomy: Taxonomy, cpus: float
) -> tuple[str, Callable[[Any], Any]]:
    """A rules teacher's resume hash and its stage: a dataset of (id, text) -> vote records."""
    rules = compile_rules(teacher.compiled_form(), taxonomy.names, teacher.abstain_when_no_match)
    prompt_hash = rules_prompt_hash(teacher, taxonomy)
    lineage = {
        "teacher": teacher.name,
        "prompt_hash": prompt_hash,
        "taxonomy_version": taxonomy.version,
    }

    def stage(todo: Any) -> Any:
        return todo.map_batches(
            vote_batch,
            fn_kwargs={"rules": rules, "lineage": lineage},
            batch_format="pyarrow",
            batch_size=teacher.batch_size,
            num_cpus=cpus,
        )

    return prompt_hash, stage
