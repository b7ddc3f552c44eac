"""Order-free fingerprints of id multisets, additive across batches.

A fingerprint is ``(count, sum of 64-bit id hashes mod 2^64)``. Two multisets with the same
fingerprint are the same multiset unless the hashes collide (about 2^-64 per comparison), and the
fingerprint of a union is the sum of its parts' fingerprints. So "did every corpus row get
exactly one vote row?" is answered by one distributed sum per side (a map over blocks, one small
row per block back to the driver) instead of a shuffle join; the join is only needed to *name*
the missing ids when the fingerprints differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from labelmill.selection_sketch import id_hashes

SALT = "id-fingerprint"
_NULL = "\x00null"  # a missing id hashes like no real id (ids are non-empty text)
_MOD = 1 << 64


def id_fingerprint(ids: Sequence[str | None]) -> tuple[int, int]:
    """(N,) ids -> (count, sum of their 64-bit hashes mod 2^64); duplicates count each time."""
    keys = [_NULL if i is None else i for i in ids]
    # uint64 sums wrap around mod 2^64, which is what the fingerprint wants
    return len(keys), int(id_hashes(keys, SALT).sum(dtype=np.uint64))


def combine_fingerprints(parts: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The fingerprint of the union of the multisets whose fingerprints are ``parts``."""
    count, total = 0, 0
    for n, s in parts:
        count += int(n)
        total = (total + int(s)) % _MOD
    return count, total
