"""The assembled votes as numeric shards in the object store, for the aggregate's many passes.

Dawid-Skene EM reads every document's votes once per iteration. Running each iteration as a
Ray Data execution over the assembled rows costs seconds of planning and scheduling plus the
Arrow -> numpy decoding of every ``teacher_probs`` cell, every time. Instead each block of the
materialized assembled dataset is decoded once into its (votes, gold, gold_mask) arrays
(:func:`labelmill.pipelines.assemble.batch_arrays`), kept in the object store, and each pass is
one plain Ray task per shard returning a small statistic that the driver sums. The driver holds
only one object reference per block: nothing per document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labelmill.pipelines.assemble import BatchSpec, batch_arrays

# Statistic of one shard: (votes (N, T, K), gold (N, K) | None, mask (N,) | None, **kwargs) ->
# something that adds (SuffStats, ThresholdStats, a numpy array).
ShardFn = Callable[..., Any]


def _decode(block: Any, spec: BatchSpec) -> tuple[Any, Any, Any]:
    return batch_arrays(block, spec)


def _apply(fn: ShardFn, arrays: tuple[Any, Any, Any], kwargs: dict[str, Any]) -> Any:
    votes, gold, mask = arrays
    if votes.shape[0] == 0:  # an empty block adds nothing (and the steps want rows)
        return None
    return fn(votes, gold, mask, **kwargs)


class VoteShards:
    """Object references to the (votes, gold, mask) arrays of each assembled block."""

    def __init__(self, ds: Any, spec: BatchSpec, cpus: float) -> None:
        """ds: a materialized assembled dataset (see :func:`assemble_votes`)."""
        import ray

        self._cpus = cpus
        decode = ray.remote(_decode).options(num_cpus=cpus)
        self._apply = ray.remote(_apply).options(num_cpus=cpus)
        self.refs = [decode.remote(block, spec) for block in ds.to_arrow_refs()]
        ray.wait(self.refs, num_returns=len(self.refs), fetch_local=False)

    def reduce(self, fn: ShardFn, **kwargs: Any) -> Any:
        """Sum over the shards of ``fn(votes, gold, mask, **kwargs)``, one task per shard."""
        import ray

        fn_ref, kwargs_ref = ray.put(fn), ray.put(kwargs)
        parts = ray.get([self._apply.remote(fn_ref, ref, kwargs_ref) for ref in self.refs])
        return sum(part for part in parts if part is not None)
