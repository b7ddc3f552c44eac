"""Who relabels a campaign's selected documents, and what it will cost before it is sent.

A :class:`Labeler` has two methods: ``estimate`` (an upper bound of each document's tokens and
money per teacher, reserved in the ledger before anything is sent) and ``label`` (write the
votes of the admitted documents under ``<output_uri>/votes/<teacher>/``, the same schema as the
label job; the ledger is then settled with the tokens each vote row records).

:class:`TeacherLabeler` is the production one: the campaign teachers of the config, run by
``run_label_job`` over a Parquet file of the admitted documents (so the label job's resume
applies: a document with a vote is never sent twice). Its estimate counts the rendered prompt's
tokens with the teacher's tokenizer plus the output cap (`set`) or one token per label
(`score`); an `openai` teacher without a tokenizer is estimated with
:func:`labelmill.tokens.estimate_tokens` of the prompt's characters (configure `tokenizer` for
a tight bound). The model is :mod:`labelmill.campaign_cost`.
"""

from __future__ import annotations

from typing import Protocol

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelmill.campaign_cost import estimate_documents, price
from labelmill.config import LabelmillConfig
from labelmill.pipelines.teachers import load_tokenizer, tokenizer_source
from labelmill.taxonomy import Taxonomy


class Labeler(Protocol):
    """What a campaign needs from whoever relabels documents."""

    teachers: list[str]

    def estimate(
        self, ids: list[str], texts: list[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """teacher -> (tokens (n,) int, cost (n,) float), upper bounds per document."""
        ...

    def label(self, ids: list[str], texts: list[str], round_dir: str) -> None:
        """Write a vote row per (teacher, document) for the given documents."""
        ...


class TeacherLabeler:
    """The config's campaign teachers, through the label job on the admitted documents."""

    def __init__(self, config: LabelmillConfig) -> None:
        from labelmill.pipelines.label import make_plan

        self.config = config
        self.teachers = list(config.campaign.teachers)
        taxonomy = Taxonomy.from_config(config.taxonomy)
        self.plans = {
            t.name: make_plan(t, taxonomy) for t in config.teachers if t.name in self.teachers
        }
        # Only LLM teachers reach here: the config refuses other kinds as campaign teachers.
        self.tokenizers = {n: load_tokenizer(tokenizer_source(p)) for n, p in self.plans.items()}

    def estimate(
        self, ids: list[str], texts: list[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            name: estimate_documents(plan, self.tokenizers[name], ids, texts)
            for name, plan in self.plans.items()
        }

    def label(self, ids: list[str], texts: list[str], round_dir: str) -> None:
        from labelmill.pipelines.label import run_label_job

        docs_uri = f"{round_dir}/docs.parquet"
        fs, path = fsspec.core.url_to_fs(docs_uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as handle:
            pq.write_table(pa.table({"id": ids, "text": texts}), handle)
        corpus = self.config.corpus.model_copy(
            update={
                "uri": docs_uri,
                "format": "parquet",
                "id_column": "id",
                "text_column": "text",
                "gold_column": None,
                "limit": None,
            }
        )
        subset = self.config.model_copy(update={"corpus": corpus})
        summary_path = (
            round_dir[len(self.config.output_uri.rstrip("/")) + 1 :] + "/label_summary.json"
        )
        run_label_job(subset, teachers=self.teachers, summary_path=summary_path)


def vote_spend(
    config: LabelmillConfig, teacher: str, ids: set[str]
) -> dict[str, tuple[int, float]]:
    """Actual (tokens, cost) per document of ``teacher``'s latest vote rows among ``ids``."""
    from labelmill.pipelines.votes_io import read_votes

    table = read_votes(config.output_uri, teacher, ["id", "prompt_tokens", "output_tokens"])
    settings = next(t for t in config.teachers if t.name == teacher)
    spend: dict[str, tuple[int, float]] = {}
    for row in table.to_pylist():
        if row["id"] in ids:
            t_in, t_out = int(row["prompt_tokens"] or 0), int(row["output_tokens"] or 0)
            cost = float(
                price(
                    np.array([t_in]),
                    np.array([t_out]),
                    settings.price_per_1k_input,
                    settings.price_per_1k_output,
                )[0]
            )
            spend[row["id"]] = (t_in + t_out, cost)
    return spend
