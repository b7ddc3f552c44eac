"""A campaign's budget state machine over the ledger: admission, settlement, recovery.

Per (teacher, document) key ``<teacher>/<id>`` (teacher names never contain ``/``, the config
refuses them) a document moves ``reserved`` -> ``settled`` (its vote's tokens) or ``released``
(never sent). Admission is all-or-nothing per document: every campaign teacher's estimate is
reserved, or none is and the campaign stops (the hard cap). Recovery after a kill settles what
was sent (a vote exists) at the vote's tokens and, outside the interrupted round, what may have
been sent at its estimate, so nothing is paid twice. Pure: the ledger (:mod:`labelmill.ledger`)
and plain mappings in, no Ray.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from labelmill.ledger import BudgetLedger

# teacher -> (tokens (n,) int, cost (n,) float), upper bounds per document, in ``ids`` order
Estimates = Mapping[str, tuple[np.ndarray, np.ndarray]]
# teacher -> document id -> (tokens, cost) actually spent (from its vote row)
Spend = Mapping[str, Mapping[str, tuple[int, float]]]


def ledger_key(teacher: str, doc_id: str) -> str:
    """The ledger key of one (teacher, document): ``"<teacher>/<id>"``."""
    return f"{teacher}/{doc_id}"


def split_key(key: str) -> tuple[str, str]:
    """``"<teacher>/<id>"`` -> (teacher, id); the id may contain ``/``.

    Raises ValueError for a key without ``/``.
    """
    teacher, sep, doc_id = key.partition("/")
    if not sep or not teacher:
        raise ValueError(f"ledger key {key!r} is not '<teacher>/<id>'")
    return teacher, doc_id


def admit(
    ledger: BudgetLedger, teachers: Sequence[str], ids: Sequence[str], estimates: Estimates
) -> tuple[list[int], bool]:
    """Reserve documents in order until one does not fit -> (admitted positions, stopped).

    ``ids`` (n,) in selection order; ``estimates[t]`` arrays (n,). A document any teacher has
    settled before is skipped (paid once, never twice). A document whose reservations do not all
    fit releases those it got and stops admission (``stopped`` True).
    """
    for teacher in teachers:
        tokens, cost = estimates[teacher]
        if len(tokens) != len(ids) or len(cost) != len(ids):
            raise ValueError(
                f"estimates[{teacher!r}] has {len(tokens)} tokens and {len(cost)} costs "
                f"for {len(ids)} documents"
            )
    admitted: list[int] = []
    for i, doc_id in enumerate(ids):
        if any(ledger.is_settled(ledger_key(t, doc_id)) for t in teachers):
            continue
        granted: list[str] = []
        for teacher in teachers:
            tokens, cost = estimates[teacher]
            key = ledger_key(teacher, doc_id)
            if ledger.reserve(key, teacher, int(tokens[i]), float(cost[i])):
                granted.append(key)
            else:
                for done in granted:
                    ledger.release(done)
                return admitted, True
        admitted.append(i)
    return admitted, False


def settle(
    ledger: BudgetLedger, teachers: Sequence[str], ids: Sequence[str], spend: Spend
) -> tuple[int, int]:
    """Settle the open keys of ``ids`` at their votes' spend; release those with no vote.

    Keys that are not open (settled during recovery) are left alone. Returns (settled,
    released).
    """
    open_keys = set(ledger.open_keys())
    settled = released = 0
    for teacher in teachers:
        paid = spend.get(teacher, {})
        for doc_id in ids:
            key = ledger_key(teacher, doc_id)
            if key not in open_keys:
                continue
            if doc_id in paid:
                ledger.settle(key, *paid[doc_id])
                settled += 1
            else:  # never sent: the labeler wrote no vote
                ledger.release(key)
                released += 1
    return settled, released


def open_by_teacher(ledger: BudgetLedger) -> dict[str, set[str]]:
    """The ledger's open reservations as teacher -> document ids (what recovery looks up)."""
    out: dict[str, set[str]] = {}
    for key in ledger.open_keys():
        teacher, doc_id = split_key(key)
        out.setdefault(teacher, set()).add(doc_id)
    return out


def recover(ledger: BudgetLedger, spend: Spend, pending: set[str]) -> int:
    """Settle reservations a killed campaign left open; returns how many were settled.

    ``spend``: the votes found for the open keys (:func:`open_by_teacher`). An open key whose
    vote exists is settled at the vote's spend. One without a vote stays open when its document
    is in the interrupted round (``pending``: it is labeled again and settled then); any other
    is settled at its estimate (it may have been sent).
    """
    settled = 0
    for teacher, ids in open_by_teacher(ledger).items():
        paid = spend.get(teacher, {})
        for doc_id in sorted(ids):
            if doc_id in paid:
                ledger.settle(ledger_key(teacher, doc_id), *paid[doc_id])
                settled += 1
    leftover = [k for k in ledger.open_keys() if split_key(k)[1] not in pending]
    return settled + ledger.settle_open_at_estimate(leftover)
