"""The label job's resume join and rows-in == rows-out check, and the one atomic part writer."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import job_config

from labelmill.pipelines import label as label_job
from labelmill.pipelines.label import LabelJobError, run_label_job
from labelmill.pipelines.parts import AtomicPartsDatasink, list_parts, part_digest, write_part
from labelmill.pipelines.votes_io import read_votes

RULES = {"use::editing": [r"\beditor\b"], "works-with::audio": [r"\bmusic\b"]}


def corpus(tmp_path: Path, n: int = 40) -> Path:
    """``n`` documents in two Parquet files; every third mentions an editor, others music."""
    root = tmp_path / "corpus"
    root.mkdir()
    texts = ["an editor" if i % 3 == 0 else "plays music" for i in range(n)]
    ids = [f"doc{i:03d}" for i in range(n)]
    half = n // 2
    pq.write_table(pa.table({"id": ids[:half], "text": texts[:half]}), root / "a.parquet")
    pq.write_table(pa.table({"id": ids[half:], "text": texts[half:]}), root / "b.parquet")
    return root


def rules_config(tmp_path: Path, **corpus_extra: object):
    teacher = {"name": "kw", "kind": "rules", "rules": RULES, "batch_size": 7}
    return job_config(
        {"uri": str(corpus(tmp_path)), "format": "parquet", **corpus_extra},
        [teacher],
        tmp_path / "out",
    )


def test_resume_redoes_only_the_rows_of_lost_parts(
    ray_local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = rules_config(tmp_path)
    real_join = label_job.anti_join_ids
    joins: list[int] = []

    def counted_join(*args):
        joins.append(1)
        return real_join(*args)

    monkeypatch.setattr(label_job, "anti_join_ids", counted_join)
    first = run_label_job(config).teachers[0]
    assert (first.rows_in, first.rows_labeled, first.rows_resumed) == (40, 40, 0)
    parts = list_parts(f"{config.output_uri}/votes/kw")
    assert len(parts) >= 2
    lost = pq.read_table(parts[0])["id"].to_pylist()
    assert joins == []  # no part before, then every row voted: the fingerprints matched
    Path(parts[0]).unlink()
    again = run_label_job(config).teachers[0]
    assert (again.rows_labeled, again.rows_resumed) == (len(lost), 40 - len(lost))
    assert joins == [1]  # the fingerprints differed: the resume joined, the check did not
    ids = read_votes(config.output_uri, "kw", ["id"])["id"].to_pylist()
    assert sorted(ids) == [f"doc{i:03d}" for i in range(40)]  # each exactly once
    nothing = run_label_job(config).teachers[0]
    assert (nothing.rows_labeled, nothing.rows_resumed) == (0, 40)
    assert joins == [1]


def test_ids_fingerprint_over_blocks_equals_the_core(ray_local) -> None:
    import ray.data

    from labelmill.id_fingerprint import id_fingerprint
    from labelmill.pipelines.votes_io import ids_fingerprint

    ids = [f"doc{i:03d}" for i in range(50)]
    ds = ray.data.from_items([{"id": i} for i in ids], override_num_blocks=4)
    assert ids_fingerprint(ds) == id_fingerprint(ids)
    assert ids_fingerprint(ds.filter(expr="id != 'doc007'")) == id_fingerprint(
        [i for i in ids if i != "doc007"]
    )


def test_a_stage_that_drops_rows_fails_the_job_naming_the_missing(
    ray_local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = rules_config(tmp_path)
    real_stage = label_job.teacher_stage

    def dropping_stage(*args):  # a broken teacher: loses doc005 and doc017
        prompt_hash, stage = real_stage(*args)
        return prompt_hash, lambda todo: stage(todo).filter(
            expr="id != 'doc005' and id != 'doc017'"
        )

    monkeypatch.setattr(label_job, "teacher_stage", dropping_stage)
    with pytest.raises(
        LabelJobError,
        match=r"teacher 'kw': 2 of 40 documents have no vote row "
        r"\(e\.g\. \['doc005', 'doc017'\]; 38 labeled in this run\)",
    ):
        run_label_job(config)


def test_atomic_parts_writer_names_by_keys_and_overwrites_retries(ray_local, tmp_path) -> None:
    table = pa.table({"id": ["b", "a"], "x": [1, 2]})
    same_rows_other_order = pa.table({"id": ["a", "b"], "x": [2, 1]})
    assert part_digest(table, ["id"]) == part_digest(same_rows_other_order, ["id"])
    assert part_digest(table, ["id"]) != part_digest(table.slice(0, 1), ["id"])
    target = tmp_path / "parts"
    assert list_parts(str(target)) == []  # a missing directory has no parts
    first = write_part(table, str(target))
    again = write_part(same_rows_other_order, str(target))  # a retried task: same name
    (target / ".tmp-leftover.parquet").write_bytes(b"half")  # a killed writer's temp file
    assert first == again and list_parts(str(target)) == [first]
    assert pq.read_table(first).num_rows == 2

    import ray.data

    sink = AtomicPartsDatasink(str(tmp_path / "sunk"))
    ray.data.range(10, override_num_blocks=2).map_batches(
        lambda b: pa.table({"id": [f"r{i}" for i in b["id"].to_pylist()]}),
        batch_format="pyarrow",
    ).write_datasink(sink)
    written = list_parts(str(tmp_path / "sunk"))
    ids = sorted(i for f in written for i in pq.read_table(f)["id"].to_pylist())
    assert sink.rows_written == 10 and ids == sorted(f"r{i}" for i in range(10))
