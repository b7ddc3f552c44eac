"""Teacher throughput: raw vLLM in one process vs `labelmill label` on Ray Data, same work.

    python bench/teacher_throughput.py [--docs 500] [--score-docs 40] [--config configs/demo.yaml]
                                       [--set teachers.0.batch_size=128 ...]

Same documents (data/bench/debtags-500.parquet), same taxonomy, prompts, truncation and engine
settings (taken from the config's first teacher, SmolLM2-135M-Instruct on CPU by default):

  (a) raw: one `vllm.LLM` in this process, `LLM.chat` over all documents with the same
      label-set grammar and token cap;
  (b) labelmill: `run_label_job` on an embedded local Ray (corpus read, prompt building,
      ray.data.llm engine actor, parsing, Parquet writes).

Prints docs/s of each (end to end, engine start included, and generation only for (a)), the
ratio (b)/(a), then `score` vs `set` mode cost per document (seconds and tokens) through
labelmill on the first --score-docs documents.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "bench" / "debtags-500.parquet"


def raw_vllm(config, n_docs: int) -> tuple[float, float, int]:
    """(end-to-end seconds, generation seconds, output tokens) of plain vLLM on the docs."""
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from labelmill.models import resolve_model
    from labelmill.pipelines.teachers import vllm_engine_kwargs
    from labelmill.prompts import build_set_messages, label_set_grammar
    from labelmill.requests import TeacherPlan, document_token_budget
    from labelmill.taxonomy import Taxonomy

    teacher = config.teachers[0]
    taxonomy = Taxonomy.from_config(config.taxonomy)
    path = resolve_model(teacher.model)
    plan = TeacherPlan(teacher=teacher, taxonomy=taxonomy, model_path=path)
    texts = pq.read_table(CORPUS)["text"].to_pylist()[:n_docs]

    started = time.perf_counter()
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(teacher.cpu_kvcache_gb)
    tokenizer = AutoTokenizer.from_pretrained(path)
    budget = document_token_budget(plan, tokenizer)
    conversations = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)[:budget]
        conversations.append(build_set_messages(tokenizer.decode(ids), taxonomy, teacher.prompt))
    kwargs = vllm_engine_kwargs(plan)
    kwargs.pop("distributed_executor_backend", None)
    llm = LLM(model=path, **kwargs)
    params = SamplingParams(
        max_tokens=teacher.max_output_tokens,
        temperature=teacher.temperature,
        structured_outputs=StructuredOutputsParams(grammar=label_set_grammar(taxonomy)),
    )
    generation_started = time.perf_counter()
    outputs = llm.chat(conversations, params, use_tqdm=False)
    finished = time.perf_counter()
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    del llm
    return finished - started, finished - generation_started, tokens


def labelmill_run(config, n_docs: int, mode: str, output: str) -> tuple[float, object]:
    """(seconds, teacher stats) of `run_label_job` over the first n_docs in one mode."""
    from labelmill.config import parse_config
    from labelmill.pipelines.label import run_label_job

    tree = config.model_dump(mode="json")
    tree["corpus"] = {"uri": str(CORPUS), "limit": n_docs}
    tree["teachers"] = [tree["teachers"][0] | {"mode": mode, "name": f"bench-{mode}"}]
    tree["output_uri"] = output
    started = time.perf_counter()
    summary = run_label_job(parse_config(tree))
    return time.perf_counter() - started, summary.teachers[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--score-docs", type=int, default=40)
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args()

    from labelmill.config import load_config

    config = load_config(args.config, args.overrides)
    print(f"teacher: {config.teachers[0].model}  docs: {args.docs}  cores: {os.cpu_count()}")

    raw_total, raw_gen, raw_tokens = raw_vllm(config, args.docs)
    print(
        f"(a) raw vllm.LLM.chat: {args.docs / raw_total:.2f} docs/s end to end "
        f"({raw_total:.1f} s), {args.docs / raw_gen:.2f} docs/s generation only "
        f"({raw_gen:.1f} s), {raw_tokens / args.docs:.1f} output tokens/doc"
    )
    with tempfile.TemporaryDirectory() as out:
        lm_total, stats = labelmill_run(config, args.docs, "set", f"{out}/set")
        print(
            f"(b) labelmill label:   {args.docs / lm_total:.2f} docs/s end to end "
            f"({lm_total:.1f} s, Ray start included), {stats.output_tokens / args.docs:.1f} "
            f"output tokens/doc, {stats.rows_with_errors} error rows"
        )
        print(f"ratio (b)/(a), end to end: {raw_total / lm_total:.2f}")

        n = args.score_docs
        if n <= 0:
            return
        set_s, set_stats = labelmill_run(config, n, "set", f"{out}/set-small")
        score_s, score_stats = labelmill_run(config, n, "score", f"{out}/score-small")
        for name, seconds, st in (("set", set_s, set_stats), ("score", score_s, score_stats)):
            print(
                f"{name:>5} mode on {n} docs: {seconds / n:.2f} s/doc, "
                f"{st.prompt_tokens / n:.0f} prompt + {st.output_tokens / n:.1f} output tokens/doc"
            )
        print(f"score/set cost per doc: {score_s / set_s:.2f}x time")


if __name__ == "__main__":
    main()
