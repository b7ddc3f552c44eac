"""The `rules` teacher end to end: `labelmill label` on a local corpus, resume, `aggregate`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import LABELS

from labelmill.config import load_config
from labelmill.pipelines.cli import main
from labelmill.pipelines.rules_teacher import rules_prompt_hash
from labelmill.pipelines.votes_io import read_votes
from labelmill.taxonomy import Taxonomy

pytestmark = pytest.mark.integration

# (id, text, labels of `keywords`). editing: `editor` or `edit`; text: `text` unless `music`
# (an exclusion); audio: `music` or `sound`; server: nothing (no rule).
DOCS = [
    ("d0", "A text editor for programmers", ["use::editing", "works-with::text"]),
    ("d1", "Plays MUSIC and sound files", ["works-with::audio"]),
    ("d2", "Lyrics text for music players", ["works-with::audio"]),
    ("d3", "A web server for static files", []),
    ("d4", "edit the textbook", ["use::editing"]),  # \btext\b: no match inside textbook
    ("d5", None, None),  # missing text: an errored row
    ("d6", "   ", None),  # blank text: an errored row
]
RULES = {
    "use::editing": [r"\bedit(or)?\b"],
    "works-with::text": {"any": [r"\btext\b"], "none": [r"\bmusic\b"]},
    "works-with::audio": [r"\bmusic\b", r"\bsound\b"],
}


@pytest.fixture(scope="module")
def job(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rules")
    pq.write_table(
        pa.table({"id": [d[0] for d in DOCS], "text": pa.array([d[1] for d in DOCS], pa.string())}),
        root / "corpus.parquet",
    )
    tree = {
        "corpus": {"uri": str(root / "corpus.parquet")},
        "taxonomy": {"labels": [{"name": n, "description": d} for n, d in LABELS]},
        "teachers": [
            {"name": "keywords", "kind": "rules", "rules": RULES, "batch_size": 3},
            {
                "name": "audio-only",
                "kind": "rules",
                "rules": {"works-with::audio": [r"\bsound\b"]},
                "abstain_when_no_match": True,
            },
        ],
        "output_uri": str(root / "run"),
        "aggregate": {"method": "majority", "threshold": 0.5},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    assert main(["label", str(path)]) == 0
    return path


def _by_id(table: pa.Table) -> dict[str, dict]:
    return {row["id"]: row for row in table.to_pylist()}


def test_votes_and_lineage(job: Path) -> None:
    config = load_config(job)
    taxonomy = Taxonomy.from_config(config.taxonomy)
    votes = _by_id(read_votes(config.output_uri, "keywords"))
    assert sorted(votes) == [d[0] for d in DOCS]  # one row per document, none dropped
    expected_hash = rules_prompt_hash(config.teachers[0], taxonomy)
    for doc_id, _, labels in DOCS:
        row = votes[doc_id]
        assert (row["model"], row["mode"], row["teacher"]) == ("rules", "set", "keywords")
        assert row["prompt_hash"] == expected_hash
        assert row["taxonomy_version"] == taxonomy.version
        if labels is None:
            assert row["error"] in ("missing text", "empty text")
            assert row["labels"] == []
        else:
            assert row["error"] is None
            assert row["labels"] == labels
            assert row["probs"] is None
    other = _by_id(read_votes(config.output_uri, "audio-only"))
    assert other["d1"]["labels"] == ["works-with::audio"] and other["d1"]["probs"] is None
    assert other["d3"]["labels"] == [] and other["d3"]["probs"] == [None] * len(LABELS)
    assert other["d5"]["error"] == "missing text"
    summary = json.loads((Path(config.output_uri) / "label_summary.json").read_text())
    first = summary["teachers"][0]
    assert (first["teacher"], first["mode"], first["rows_in"]) == ("keywords", "set", 7)
    assert (first["rows_labeled"], first["rows_with_errors"]) == (7, 2)


def test_resume_labels_nothing_and_changed_rules_relabel(job: Path) -> None:
    config = load_config(job)
    assert main(["label", str(job)]) == 0
    summary = json.loads((Path(config.output_uri) / "label_summary.json").read_text())
    assert [(t["rows_resumed"], t["rows_labeled"]) for t in summary["teachers"]] == [(7, 0)] * 2
    changed = ["--set", r"teachers.1.rules.works-with::audio=['\bmusic\b']"]
    assert main(["label", str(job), *changed]) == 0  # a new rules hash: only that teacher reruns
    summary = json.loads((Path(config.output_uri) / "label_summary.json").read_text())
    assert [(t["rows_resumed"], t["rows_labeled"]) for t in summary["teachers"]] == [(7, 0), (0, 7)]


def test_aggregate_over_rules_votes(job: Path) -> None:
    config = load_config(job)
    assert main(["aggregate", str(job)]) == 0
    parts = sorted((Path(config.output_uri) / "aggregate" / "labels").glob("*.parquet"))
    rows = _by_id(pa.concat_tables([pq.read_table(p) for p in parts]))
    assert sorted(rows) == [d[0] for d in DOCS]
    # d1: both teachers vote audio -> 1.0. d0: `audio-only` abstains (no `sound`), so only
    # `keywords` counts: editing and text 1.0, audio 0.0. d3: keywords says no label, the other
    # abstains -> all 0.0. d5: both errored -> no vote at all.
    assert rows["d1"]["probs"] == [0.0, 0.0, 1.0, 0.0]
    assert rows["d0"]["probs"] == [1.0, 1.0, 0.0, 0.0]
    assert rows["d0"]["labels"] == ["use::editing", "works-with::text"]
    assert rows["d3"]["probs"] == [0.0, 0.0, 0.0, 0.0]
    assert rows["d5"]["probs"] is None and rows["d5"]["error"] == "no teacher voted"
