"""Gold labels as a Ray Dataset: from the corpus' gold column or from a separate gold file.

Output columns: ``id`` (string), ``gold`` (list<string>, restricted to the taxonomy: a real
label set such as debtags carries many tags outside a small taxonomy), ``gold_seed`` (bool, see
:func:`labelmill.layout.is_gold_seed`). Rows whose gold cell is null carry no gold and are
dropped here; an empty list is a real answer ("none of the labels apply") and is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fsspec
import pyarrow as pa

from labelmill.config import CorpusConfig, GoldConfig, infer_format
from labelmill.errors import InputError
from labelmill.layout import is_gold_seed
from labelmill.pipelines.corpus import list_corpus_files, read_corpus, read_corpus_file


def normalize_gold_batch(
    batch: pa.Table,
    names: list[str],
    seed_fraction: float,
    id_column: str,
    gold_column: str,
    seed_salt: str = "gold-seed",
) -> pa.Table:
    """Raw (id, gold) columns -> id, gold (taxonomy labels only), gold_seed; null gold dropped."""
    known = set(names)
    ids, golds, seeds = [], [], []
    for doc_id, labels in zip(
        batch[id_column].to_pylist(), batch[gold_column].to_pylist(), strict=True
    ):
        if doc_id is None or labels is None:
            continue
        if isinstance(labels, str):
            raise InputError(
                f"gold column {gold_column!r} must hold lists of label names, got {labels!r}"
            )
        doc_id = str(doc_id)
        ids.append(doc_id)
        golds.append([label for label in labels if label in known])
        seeds.append(is_gold_seed(doc_id, seed_fraction, seed_salt))
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "gold": pa.array(golds, pa.list_(pa.string())),
            "gold_seed": pa.array(seeds, pa.bool_()),
        }
    )


def read_gold(
    gold: GoldConfig, corpus: CorpusConfig, names: Sequence[str], cpus: float = 0.25
) -> Any | None:
    """Dataset of (id, gold, gold_seed), or ``None`` when no gold is configured.

    ``names``: the taxonomy's label names (gold labels outside it are dropped).
    """
    import ray.data

    names = list(names)
    seed = gold.seed_fraction
    if gold.uri is not None:
        uri = gold.uri
        fmt = infer_format(uri)
        if fmt is None:
            raise InputError(f"cannot infer the format of gold.uri {uri!r} (.parquet/.jsonl/.csv)")
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            raise InputError(f"gold.uri {uri!r} does not exist")
        tables = [
            t for file in list_corpus_files(fs, path) for t in read_corpus_file(fs, file, fmt)
        ]
        raw = pa.concat_tables(tables, promote_options="default")
        for field, column in (
            ("id_column", gold.id_column),
            ("labels_column", gold.labels_column),
        ):
            if column not in raw.column_names:
                raise InputError(
                    f"gold.{field} {column!r} is not a column of {uri!r}; "
                    f"columns: {sorted(raw.column_names)}"
                )
        # A gold file is small by nature (people labeled it): normalized here, then distributed.
        table = normalize_gold_batch(
            raw,
            names,
            seed,
            gold.id_column,
            gold.labels_column,
            gold.seed_salt,
        )
        return ray.data.from_arrow(table)
    if corpus.gold_column is None:
        return None
    return read_corpus(corpus, cpus).map_batches(
        normalize_gold_batch,
        batch_format="pyarrow",
        fn_kwargs={
            "names": names,
            "seed_fraction": seed,
            "id_column": "id",
            "gold_column": "gold",
            "seed_salt": gold.seed_salt,
        },
        num_cpus=cpus,
    )


def corpus_without_gold_column(corpus: CorpusConfig) -> CorpusConfig:
    """The same corpus config with no gold column (for stages that only need id and text)."""
    return corpus.model_copy(update={"gold_column": None})
