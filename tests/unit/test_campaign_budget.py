"""The campaign's budget state machine (admission, settlement, recovery) and its cost model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import WordTokenizer

from labelmill.campaign_budget import (
    admit,
    ledger_key,
    open_by_teacher,
    recover,
    settle,
    split_key,
)
from labelmill.campaign_cost import docs_per_round, dry_run_cost, estimate_documents, price
from labelmill.config import LabelConfig, TaxonomyConfig, VllmTeacherConfig
from labelmill.ledger import Budget, BudgetLedger
from labelmill.requests import TeacherPlan, build_requests, document_token_budget
from labelmill.taxonomy import Taxonomy


def ledger(tmp_path: Path, **caps: object) -> BudgetLedger:
    return BudgetLedger(str(tmp_path / "ledger"), Budget(**caps))  # type: ignore[arg-type]


def estimates(**per_teacher: list[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """teacher -> (tokens, cost = tokens / 1000) arrays."""
    return {
        t: (np.array(v, dtype=np.int64), np.array(v, dtype=np.float64) / 1000)
        for t, v in per_teacher.items()
    }


def test_keys_round_trip_and_ids_may_hold_slashes() -> None:
    assert ledger_key("strong", "a/b") == "strong/a/b"
    assert split_key("strong/a/b") == ("strong", "a/b")
    with pytest.raises(ValueError, match=r"ledger key 'nokey' is not '<teacher>/<id>'"):
        split_key("nokey")
    with pytest.raises(ValueError, match=r"is not '<teacher>/<id>'"):
        split_key("/x")


def test_admit_reserves_in_order_and_stops_at_the_first_document_that_does_not_fit(
    tmp_path: Path,
) -> None:
    book = ledger(tmp_path, max_tokens=100)
    # two teachers: d0 costs 20+10, d1 30+20 (total 80), d2 15+10 would make 105 > 100
    est = estimates(a=[20, 30, 15, 1], b=[10, 20, 10, 1])
    admitted, stopped = admit(book, ["a", "b"], ["d0", "d1", "d2", "d3"], est)
    assert (admitted, stopped) == ([0, 1], True)
    assert book.reserved() == (80, pytest.approx(0.08))
    # d2's grant from `a` was released when `b` did not fit: nothing of d2 stays open
    assert sorted(book.open_keys()) == ["a/d0", "a/d1", "b/d0", "b/d1"]


def test_admit_skips_documents_paid_before_and_fits_everything_uncapped(tmp_path: Path) -> None:
    book = ledger(tmp_path)
    assert book.reserve("a/d0", "a", 5, 0.005)
    book.settle("a/d0", 4, 0.004)
    admitted, stopped = admit(book, ["a"], ["d0", "d1"], estimates(a=[5, 7]))
    assert (admitted, stopped) == ([1], False)
    assert book.open_keys() == ["a/d1"] and book.spent() == (4, pytest.approx(0.004))


def test_admit_rejects_estimates_of_the_wrong_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"estimates\['a'\] has 1 tokens and 1 costs for 2"):
        admit(ledger(tmp_path), ["a"], ["d0", "d1"], estimates(a=[5]))


def test_settle_pays_votes_and_releases_what_was_never_sent(tmp_path: Path) -> None:
    book = ledger(tmp_path)
    admit(book, ["a"], ["d0", "d1", "d2"], estimates(a=[10, 10, 10]))
    book.settle("a/d2", 9, 0.009)  # settled by recovery before: left alone
    counts = settle(book, ["a"], ["d0", "d1", "d2"], {"a": {"d0": (7, 0.007)}})
    assert counts == (1, 1)  # d0 settled at its vote, d1 released
    assert book.open_keys() == []
    assert book.spent() == (7 + 9, pytest.approx(0.016))


def test_recover_settles_votes_keeps_the_pending_round_and_pays_estimates_elsewhere(
    tmp_path: Path,
) -> None:
    book = ledger(tmp_path)
    admit(book, ["a"], ["voted", "pending", "lost"], estimates(a=[10, 20, 30]))
    assert open_by_teacher(book) == {"a": {"voted", "pending", "lost"}}
    settled = recover(book, {"a": {"voted": (6, 0.006)}}, pending={"pending"})
    # voted: at its vote (6); lost: at its estimate (30); pending stays open (20 reserved)
    assert settled == 2
    assert book.spent() == (36, pytest.approx(0.036))
    assert book.open_keys() == ["a/pending"] and book.reserved() == (20, pytest.approx(0.02))


def test_price_and_round_size() -> None:
    assert price(np.array([1000, 0]), np.array([0, 500]), 0.5, 2.0).tolist() == [0.5, 1.0]
    assert docs_per_round(None, 0.05, 30) == 2  # round(1.5) = 2 (banker's rounding: 2)
    assert docs_per_round(None, 0.05, 50) == 2  # round(2.5) = 2
    assert docs_per_round(7, 0.05, 30) == 7
    assert docs_per_round(None, 0.001, 10) == 1


def test_dry_run_scales_the_sample_to_the_plan() -> None:
    out = dry_run_cost(estimates(a=[10, 20], b=[1, 3]), n_sample=2, planned=5)
    # a: 30 tokens over 2 docs -> 75 for 5; cost 0.03 -> 0.075. b: 4 -> 10, 0.004 -> 0.01
    assert out["teachers"]["a"] == {"tokens": 75, "cost": pytest.approx(0.075)}
    assert out["teachers"]["b"] == {"tokens": 10, "cost": pytest.approx(0.01)}
    assert out["tokens"] == 85 and out["cost"] == pytest.approx(0.085)
    assert dry_run_cost(estimates(a=[]), n_sample=0, planned=5)["tokens"] == 0
    with pytest.raises(ValueError, match=r"planned and n_sample must be >= 0, got -1 and 2"):
        dry_run_cost(estimates(a=[1, 2]), n_sample=2, planned=-1)


def _plan(mode: str = "set") -> TeacherPlan:
    taxonomy = Taxonomy.from_config(
        TaxonomyConfig(labels=[LabelConfig(name=n, description="d") for n in ("a", "b")])
    )
    teacher = VllmTeacherConfig(
        name="t",
        kind="vllm",
        model="/m",
        mode=mode,
        max_model_len=256,
        max_output_tokens=16,
        price_per_1k_input=1.0,
        price_per_1k_output=2.0,
    )
    return TeacherPlan(teacher=teacher, taxonomy=taxonomy, model_path="/m")


def test_estimate_without_tokenizer_uses_the_shared_chars_per_token_estimate() -> None:
    plan = _plan("set")
    tokens, cost = estimate_documents(plan, None, ["d0", "bad"], ["editor for text", b"\xff"])
    (request,) = build_requests("d0", "editor for text", plan, None, 10**6)
    chars = sum(len(m["content"]) for m in request["messages"])
    expected_in = -(-chars // 3)  # ceil(chars / 3): labelmill.tokens, no longer chars / 2
    assert tokens.tolist() == [expected_in + 16, 0]  # a bad text is never sent: costs nothing
    assert cost.tolist() == pytest.approx([(expected_in * 1.0 + 16 * 2.0) / 1000, 0.0])


def test_estimate_with_tokenizer_counts_each_score_request() -> None:
    plan, tokenizer = _plan("score"), WordTokenizer()
    budget = document_token_budget(plan, tokenizer)
    rows = build_requests("d0", "one two", plan, tokenizer, budget)
    expected = sum(len(tokenizer.encode(r["prompt"])) for r in rows) + 2 * 1  # 1 out per label
    tokens, _ = estimate_documents(plan, tokenizer, ["d0"], ["one two"])
    assert len(rows) == 2 and tokens.tolist() == [expected]
