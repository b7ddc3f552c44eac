"""Simulated teachers for the quality benchmark (benchmarks only; never a production default).

A simulated teacher votes 0/1 per label with a configured per-label sensitivity (P(vote 1 | gold
1)) and specificity (P(vote 0 | gold 0)). Two teachers of a *correlated pair* make shared
mistakes: conditional on the gold value of a cell, their error indicators are drawn from the
2x2 joint with the configured marginals and Pearson (phi) correlation ``rho``, so each teacher
keeps exactly its own rates while the pair's errors coincide more often than chance. That is
the situation Dawid-Skene's independence assumption gets wrong and majority vote double counts.

The gold behind a simulation is whatever label matrix is passed in (in the benchmark: the
debtags sample's tags, which are incomplete like all real labels). Every vote record written
here is marked as simulation: teacher names start with ``sim-``, ``model="simulation"``,
``mode="simulated"``, ``prompt_hash="simulation"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from labelmill.pipelines.votes_io import votes_dir, write_vote_part
from labelmill.records import vote_schema

SIM_PREFIX = "sim-"


@dataclass(frozen=True)
class Scenario:
    """Simulated teachers: names (T,), sensitivity and specificity (T, K), one correlated pair."""

    names: tuple[str, ...]
    sensitivity: np.ndarray
    specificity: np.ndarray
    correlated_pairs: tuple[tuple[int, int], ...]
    rho: float


def default_scenario(n_labels: int, seed: int = 0, jitter: float = 0.03) -> Scenario:
    """Three teachers, rates drawn per label around A: 0.75/0.95, B: 0.6/0.9, C: 0.55/0.85.

    Rates are base + uniform(-jitter, jitter) per label, clipped to [0.5, 0.99]; B and C are the
    correlated pair with rho 0.5 (feasible for any draw while jitter <= 0.04: B's and C's error
    rates stay close enough for that correlation). -> Scenario with (3, n_labels) rate arrays.
    """
    if not isinstance(n_labels, int) or n_labels < 1:
        raise ValueError(f"n_labels must be a positive int, got {n_labels!r}")
    if not 0.0 <= jitter < 0.5:
        raise ValueError(f"jitter must lie in [0, 0.5), got {jitter!r}")
    rng = np.random.default_rng(seed)
    base_sens = np.array([0.75, 0.6, 0.55])[:, None]
    base_spec = np.array([0.95, 0.9, 0.85])[:, None]
    sens = base_sens + rng.uniform(-jitter, jitter, size=(3, n_labels))
    spec = base_spec + rng.uniform(-jitter, jitter, size=(3, n_labels))
    return Scenario(
        names=("sim-a", "sim-b", "sim-c"),
        sensitivity=np.clip(sens, 0.5, 0.99),
        specificity=np.clip(spec, 0.5, 0.99),
        correlated_pairs=((1, 2),),
        rho=0.5,
    )


def _check_rates(rates: Any, name: str, n_labels: int) -> np.ndarray:
    arr = np.asarray(rates, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_labels:
        raise ValueError(f"{name} must have shape (T, {n_labels}), got shape {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{name} must lie in [0, 1], got values from {arr.min()} to {arr.max()}")
    return arr


def _check_pairs(pairs: Sequence[tuple[int, int]], n_teachers: int) -> list[tuple[int, int]]:
    checked: list[tuple[int, int]] = []
    seen: set[int] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"a correlated pair must hold two teacher indices, got {pair!r}")
        a, b = (int(x) for x in pair)
        if a == b or not (0 <= a < n_teachers and 0 <= b < n_teachers):
            raise ValueError(
                f"correlated pair {pair!r} must name two different teachers in [0, {n_teachers})"
            )
        if a in seen or b in seen:
            raise ValueError(f"teacher in correlated pair {pair!r} is already in another pair")
        seen.update((a, b))
        checked.append((a, b))
    return checked


def _joint_error_rate(q_a: np.ndarray, q_b: np.ndarray, rho: float) -> np.ndarray:
    """P(both err) for error rates q_a, q_b with phi correlation rho; ValueError if infeasible."""
    both = q_a * q_b + rho * np.sqrt(q_a * (1 - q_a) * q_b * (1 - q_b))
    bad = both > np.minimum(q_a, q_b) + 1e-12
    if np.any(bad):
        k = int(np.argwhere(bad)[0][-1])
        raise ValueError(
            f"rho {rho!r} is infeasible for error rates {float(q_a.flat[k]):.3f} and "
            f"{float(q_b.flat[k]):.3f} (label {k}): P(both err) would exceed the smaller rate"
        )
    return both


def simulate_votes(
    gold: Any,
    sensitivity: Any,
    specificity: Any,
    correlated_pairs: Sequence[tuple[int, int]] = (),
    rho: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Hard votes of T simulated teachers.

    gold: (N, K) 0/1, sensitivity, specificity: (T, K) in [0, 1] -> votes (N, T, K) float 0/1.

    Teacher t errs on a cell with probability 1 - sensitivity[t, k] when gold is 1 and
    1 - specificity[t, k] when gold is 0; errors are independent across cells and teachers,
    except for each pair (a, b) in ``correlated_pairs``, whose error indicators on the same cell
    have correlation ``rho`` in [0, 1] (each teacher in at most one pair).
    """
    y = np.asarray(gold)
    if y.ndim != 2 or y.shape[0] < 1 or y.shape[1] < 1:
        raise ValueError(f"gold must have shape (N, K) with N, K >= 1, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"gold must hold only 0/1, got values {np.unique(y)[:5]}")
    y = y.astype(bool)
    n_labels = y.shape[1]
    sens = _check_rates(sensitivity, "sensitivity", n_labels)
    spec = _check_rates(specificity, "specificity", n_labels)
    if sens.shape != spec.shape:
        raise ValueError(f"sensitivity shape {sens.shape} != specificity shape {spec.shape}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [0, 1], got {rho!r}")
    n_teachers = sens.shape[0]
    pairs = _check_pairs(correlated_pairs, n_teachers)
    # Per-cell error rate of each teacher: (T, N, K).
    q = np.where(y[None], 1.0 - sens[:, None, :], 1.0 - spec[:, None, :])
    for a, b in pairs:  # check feasibility on the rates, for both gold values, before drawing
        _joint_error_rate(1.0 - sens[a], 1.0 - sens[b], rho)
        _joint_error_rate(1.0 - spec[a], 1.0 - spec[b], rho)
    rng = np.random.default_rng(seed)
    u = rng.random(q.shape)
    errors = u < q
    for a, b in pairs:
        q_a, q_b = q[a], q[b]
        both = _joint_error_rate(q_a, q_b, rho)
        shared = rng.random(q_a.shape)
        # One uniform picks a cell of the 2x2 joint: [0, both) both err, [both, q_a) only a,
        # [q_a, q_a + q_b - both) only b, the rest neither.
        errors[a] = shared < q_a
        errors[b] = (shared < both) | ((shared >= q_a) & (shared < q_a + q_b - both))
    votes = np.where(errors, ~y[None], y[None])
    return np.transpose(votes, (1, 0, 2)).astype(np.float64)


def write_simulated_votes(
    output_uri: str,
    ids: Sequence[str],
    votes: Any,
    names: Sequence[str],
    taxonomy_version: str,
    label_names: Sequence[str],
) -> list[str]:
    """Write hard votes (N, T, K) as vote records under ``<output_uri>/votes/<name>/``.

    One part per teacher, in :func:`labelmill.records.vote_schema`, replacing any earlier votes
    of that teacher: ``labels`` = the names voted 1, ``probs`` null (a hard `set`-style vote),
    ``model="simulation"``, ``mode="simulated"``, ``prompt_hash="simulation"``. Names must start
    with ``sim-``. -> the vote directories written.
    """
    arr = np.asarray(votes)
    ids = [str(i) for i in ids]
    names, label_names = list(names), list(label_names)
    if arr.ndim != 3 or arr.shape != (len(ids), len(names), len(label_names)):
        raise ValueError(
            f"votes must have shape (N, T, K) = {(len(ids), len(names), len(label_names))} "
            f"(ids, names, label_names), got shape {arr.shape}"
        )
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("votes must hold only 0/1 (hard simulated votes)")
    bad = [n for n in names if not n.startswith(SIM_PREFIX) or len(n) == len(SIM_PREFIX)]
    if bad:
        raise ValueError(f"simulated teacher names must start with {SIM_PREFIX!r}, got {bad}")
    if len(set(names)) != len(names) or len(set(ids)) != len(ids):
        raise ValueError("teacher names and document ids must be unique")
    if not taxonomy_version:
        raise ValueError(f"taxonomy_version must be non-empty, got {taxonomy_version!r}")
    created = datetime.now(UTC)
    written = []
    for t, name in enumerate(names):
        fs, path = fsspec.core.url_to_fs(votes_dir(output_uri, name))
        if fs.exists(path):
            fs.rm(path, recursive=True)
        labels = [[label_names[k] for k in np.flatnonzero(row)] for row in arr[:, t, :]]
        n = len(ids)
        table = pa.table(
            {
                "id": ids,
                "teacher": [name] * n,
                "model": ["simulation"] * n,
                "mode": ["simulated"] * n,
                "labels": labels,
                "probs": pa.nulls(n, pa.list_(pa.float64())),
                "raw_output": pa.nulls(n, pa.string()),
                "error": pa.nulls(n, pa.string()),
                "truncated": [False] * n,
                "prompt_tokens": [0] * n,
                "output_tokens": [0] * n,
                "prompt_hash": ["simulation"] * n,
                "taxonomy_version": [taxonomy_version] * n,
                "created_at": pa.array([created] * n, pa.timestamp("us", tz="UTC")),
            },
            schema=vote_schema(),
        )
        write_vote_part(table, output_uri, name)
        written.append(votes_dir(output_uri, name))
    return written


def empirical_rates(gold: Any, votes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Measured sensitivity and specificity of each teacher per label.

    gold: (N, K) 0/1, votes: (N, T, K) 0/1 -> (sensitivity (T, K), specificity (T, K));
    NaN where a label has no positive (or no negative) gold document.
    """
    y = np.asarray(gold).astype(bool)
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 3 or v.shape[0] != y.shape[0] or v.shape[2] != y.shape[1]:
        raise ValueError(f"votes shape {v.shape} does not match gold shape {y.shape}")
    pos, neg = y.sum(axis=0), (~y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (v * y[:, None, :]).sum(axis=0) / pos
        spec = ((1.0 - v) * ~y[:, None, :]).sum(axis=0) / neg
    return sens, spec
