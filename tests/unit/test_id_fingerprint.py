"""Order-free id fingerprints (labelmill.id_fingerprint): equal multisets, equal prints."""

from __future__ import annotations

import hashlib

from labelmill.id_fingerprint import SALT, combine_fingerprints, id_fingerprint


def _hash(doc_id: str) -> int:
    digest = hashlib.blake2b(SALT.encode() + b"\x1f" + doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest)


def test_fingerprint_is_count_and_wrapped_sum_of_the_id_hashes() -> None:
    ids = ["a", "b", "c"]
    assert id_fingerprint(ids) == (3, (_hash("a") + _hash("b") + _hash("c")) % 2**64)
    assert id_fingerprint([]) == (0, 0)


def test_order_and_partitioning_do_not_matter() -> None:
    whole = id_fingerprint(["d1", "d2", "d3", "d4"])
    assert id_fingerprint(["d4", "d2", "d1", "d3"]) == whole
    parts = [id_fingerprint(["d3"]), id_fingerprint([]), id_fingerprint(["d1", "d4", "d2"])]
    assert combine_fingerprints(parts) == whole


def test_a_missing_duplicate_or_swapped_id_changes_it() -> None:
    corpus = id_fingerprint(["d1", "d2", "d3"])
    assert id_fingerprint(["d1", "d2"]) != corpus  # one row lacks a vote
    assert id_fingerprint(["d1", "d2", "d2"]) != corpus  # same count: d3 missing, d2 twice
    assert id_fingerprint(["d1", "d2", "d9"]) != corpus  # same count: a foreign id for d3
    assert id_fingerprint(["d1", "d2", "d3", "d3"])[0] == 4  # duplicates count each time


def test_combine_wraps_mod_2_64_and_a_null_id_is_not_an_empty_one() -> None:
    assert combine_fingerprints([(1, 2**64 - 1), (1, 5)]) == (2, 4)
    assert id_fingerprint([None]) != id_fingerprint([""])
    assert id_fingerprint([None])[0] == 1
