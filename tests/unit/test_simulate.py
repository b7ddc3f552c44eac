"""Simulated teachers of the quality benchmark (bench/simulate.py): rates, correlation, I/O."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from labelmill.records import vote_schema

_PATH = Path(__file__).resolve().parents[2] / "bench" / "simulate.py"
_SPEC = importlib.util.spec_from_file_location("labelmill_bench_simulate", _PATH)
simulate = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = simulate  # dataclasses look their module up by name
_SPEC.loader.exec_module(simulate)


def _gold(n: int, k: int, seed: int = 1, rate: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, k)) < rate).astype(int)


def test_empirical_rates_recover_configured_rates() -> None:
    gold = _gold(40_000, 3)
    sens = np.array([[0.9, 0.7, 0.6], [0.6, 0.8, 0.55], [0.55, 0.65, 0.75]])
    spec = np.array([[0.95, 0.9, 0.85], [0.9, 0.93, 0.8], [0.85, 0.88, 0.92]])
    votes = simulate.simulate_votes(gold, sens, spec, [(1, 2)], rho=0.5, seed=3)
    assert votes.shape == (40_000, 3, 3)
    got_sens, got_spec = simulate.empirical_rates(gold, votes)
    # ~12,000 positives and ~28,000 negatives per label: standard errors below 0.005.
    np.testing.assert_allclose(got_sens, sens, atol=0.02)
    np.testing.assert_allclose(got_spec, spec, atol=0.02)


def test_correlated_pair_errors_have_correlation_rho() -> None:
    gold = _gold(60_000, 2)
    sens = np.array([[0.75, 0.75], [0.6, 0.65], [0.55, 0.6]])
    spec = np.array([[0.95, 0.95], [0.9, 0.85], [0.85, 0.8]])
    for rho in (0.0, 0.5, 0.7):
        votes = simulate.simulate_votes(gold, sens, spec, [(1, 2)], rho=rho, seed=4)
        errors = votes != gold[:, None, :]
        for k in range(2):
            for value in (0, 1):
                rows = gold[:, k] == value
                pair = np.corrcoef(errors[rows, 1, k], errors[rows, 2, k])[0, 1]
                free = np.corrcoef(errors[rows, 0, k], errors[rows, 1, k])[0, 1]
                assert pair == pytest.approx(rho, abs=0.03)
                assert free == pytest.approx(0.0, abs=0.03)


def test_perfect_teacher_and_seeds() -> None:
    gold = _gold(50, 4)
    ones = np.ones((2, 4))
    votes = simulate.simulate_votes(gold, ones, ones, seed=0)
    np.testing.assert_array_equal(votes, np.stack([gold, gold], axis=1))
    sens, spec = np.full((2, 4), 0.7), np.full((2, 4), 0.8)
    first = simulate.simulate_votes(gold, sens, spec, [(0, 1)], 0.3, seed=7)
    again = simulate.simulate_votes(gold, sens, spec, [(0, 1)], 0.3, seed=7)
    other = simulate.simulate_votes(gold, sens, spec, [(0, 1)], 0.3, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert set(np.unique(first)) <= {0.0, 1.0}


def test_default_scenario_shapes_and_ranges() -> None:
    scenario = simulate.default_scenario(12, seed=0)
    assert scenario.names == ("sim-a", "sim-b", "sim-c")
    assert scenario.sensitivity.shape == scenario.specificity.shape == (3, 12)
    assert np.all(np.abs(scenario.sensitivity.mean(axis=1) - [0.75, 0.6, 0.55]) < 0.05)
    assert np.all(np.abs(scenario.specificity.mean(axis=1) - [0.95, 0.9, 0.85]) < 0.05)
    assert scenario.correlated_pairs == ((1, 2),)
    # The default scenario is feasible for its own rho.
    votes = simulate.simulate_votes(
        _gold(20, 12),
        scenario.sensitivity,
        scenario.specificity,
        scenario.correlated_pairs,
        scenario.rho,
    )
    assert votes.shape == (20, 3, 12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gold": np.zeros(4)}, r"gold must have shape \(N, K\)"),
        ({"gold": np.full((4, 2), 2)}, "gold must hold only 0/1"),
        ({"sensitivity": np.full((3, 3), 0.7)}, r"sensitivity must have shape \(T, 2\)"),
        ({"specificity": np.full((3, 2), 1.5)}, r"specificity must lie in \[0, 1\]"),
        ({"specificity": np.full((2, 2), 0.8)}, "sensitivity shape .* != specificity shape"),
        ({"rho": 1.5}, r"rho must lie in \[0, 1\], got 1.5"),
        ({"correlated_pairs": [(0, 0)]}, "must name two different teachers"),
        ({"correlated_pairs": [(0, 3)]}, "must name two different teachers"),
        ({"correlated_pairs": [(0, 1, 2)]}, "must hold two teacher indices"),
        ({"correlated_pairs": [(0, 1), (1, 2)]}, "already in another pair"),
        ({"rho": 1.0, "correlated_pairs": [(0, 2)]}, "rho 1.0 is infeasible"),
    ],
)
def test_simulate_votes_errors(kwargs: dict, match: str) -> None:
    args = {
        "gold": np.zeros((4, 2), dtype=int),
        "sensitivity": np.array([[0.7, 0.7], [0.7, 0.7], [0.6, 0.6]]),
        "specificity": np.full((3, 2), 0.8),
        "correlated_pairs": [],
        "rho": 0.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        simulate.simulate_votes(**args)


def test_default_scenario_errors() -> None:
    with pytest.raises(ValueError, match="n_labels must be a positive int, got 0"):
        simulate.default_scenario(0)
    with pytest.raises(ValueError, match=r"jitter must lie in \[0, 0.5\), got 0.6"):
        simulate.default_scenario(3, jitter=0.6)


def test_write_simulated_votes_schema_and_lineage(tmp_path: Path) -> None:
    votes = np.array([[[1, 0, 1], [0, 0, 0]], [[0, 1, 0], [1, 1, 1]]], dtype=float)
    out = str(tmp_path / "run")
    labels = ["a", "b", "c"]
    simulate.write_simulated_votes(out, ["d1", "d2"], votes, ["sim-x", "sim-y"], "v1", labels)
    # Writing again replaces the earlier votes instead of adding a second part.
    dirs = simulate.write_simulated_votes(
        out, ["d1", "d2"], votes, ["sim-x", "sim-y"], "v1", labels
    )
    assert dirs == [f"{out}/votes/sim-x", f"{out}/votes/sim-y"]
    parts = sorted((tmp_path / "run" / "votes" / "sim-y").glob("part-*.parquet"))
    assert len(parts) == 1
    table = pq.read_table(parts[0])
    assert table.schema.equals(vote_schema())
    rows = table.to_pylist()
    assert [r["labels"] for r in rows] == [[], ["a", "b", "c"]]
    assert {(r["teacher"], r["model"], r["mode"], r["prompt_hash"]) for r in rows} == {
        ("sim-y", "simulation", "simulated", "simulation")
    }
    assert all(r["probs"] is None and r["error"] is None for r in rows)
    assert {r["taxonomy_version"] for r in rows} == {"v1"}


@pytest.mark.parametrize(
    ("ids", "votes", "names", "version", "match"),
    [
        (["d1"], np.zeros((1, 1, 3)), ["teacher"], "v", "must start with 'sim-'"),
        (["d1"], np.zeros((1, 1, 3)), ["sim-"], "v", "must start with 'sim-'"),
        (["d1", "d2"], np.zeros((1, 1, 3)), ["sim-a"], "v", r"votes must have shape \(N, T, K\)"),
        (["d1"], np.full((1, 1, 3), 0.5), ["sim-a"], "v", "only 0/1"),
        (["d1", "d1"], np.zeros((2, 1, 3)), ["sim-a"], "v", "must be unique"),
        (["d1"], np.zeros((1, 1, 3)), ["sim-a"], "", "taxonomy_version must be non-empty"),
    ],
)
def test_write_simulated_votes_errors(
    tmp_path: Path, ids: list, votes: np.ndarray, names: list, version: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        simulate.write_simulated_votes(str(tmp_path), ids, votes, names, version, ["a", "b", "c"])


def test_empirical_rates_shape_error() -> None:
    with pytest.raises(ValueError, match="does not match gold shape"):
        simulate.empirical_rates(np.zeros((3, 2)), np.zeros((3, 1, 4)))
