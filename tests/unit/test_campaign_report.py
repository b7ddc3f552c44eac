"""The campaign report: gain per unit of budget and the HTML page."""

from __future__ import annotations

import pytest

from labelmill.campaign_report import gain_per_budget, render_campaign_report

ROUNDS = [
    {"round": 0, "tokens_spent": 0, "cost_spent": 0.0, "student_micro_f1": 0.70},
    {"round": 1, "tokens_spent": 900, "cost_spent": 2.0, "student_micro_f1": 0.74},
]


def test_gain_per_budget_by_hand() -> None:
    assert gain_per_budget(ROUNDS) == pytest.approx((0.74 - 0.70) / 2.0)
    no_money = [{**r, "cost_spent": 0.0} for r in ROUNDS]
    assert gain_per_budget(no_money) == pytest.approx(0.04 / 900)  # tokens when no money


def test_gain_per_budget_errors() -> None:
    with pytest.raises(ValueError, match="need round 0 and a later round"):
        gain_per_budget(ROUNDS[:1])
    spent_nothing = [ROUNDS[0], {**ROUNDS[1], "tokens_spent": 0, "cost_spent": 0.0}]
    with pytest.raises(ValueError, match="nothing was spent"):
        gain_per_budget(spent_nothing)


def test_render_has_table_plot_and_ledger() -> None:
    page = render_campaign_report(ROUNDS, {"total": {"spent_cost": 2.0}}, "t <x>")
    assert page.startswith("<!doctype html>") and "t &lt;x&gt;" in page
    assert "data:image/png;base64," in page and "spent_cost" in page
    assert page.count("<tr>") == 3  # header + 2 rounds
