"""Run by test_multinode.py in its own process: a two-node local Ray cluster (ray.cluster_utils),
the label job (embedding teacher on the tiny encoder) and batch predict (tiny student) on it.

    python multinode_job.py WORKDIR TINY_ENCODER STUDENT_DIR  -> prints one JSON line

Each replica asks for 2.5 of a node's 4 logical CPUs, so two replicas cannot share a node: the work
must spread. Reports the node of every Ray Data map actor each job started, and the ids written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def map_actor_nodes(seen: set[str]) -> tuple[set[str], set[str]]:
    """(node ids of map actors not in ``seen``, their actor ids) from the GCS actor table."""
    from ray._private import state

    nodes, ids = set(), set()
    for actor_id, info in state.actors().items():
        if actor_id in seen or "MapWorker" not in info.get("ActorClassName", ""):
            continue
        ids.add(actor_id)
        nodes.add(info["Address"]["NodeID"])
    return nodes, ids


def main() -> None:
    workdir, encoder, student = (Path(p) for p in sys.argv[1:4])
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray
    from conftest import LABELS  # the tiny student's taxonomy
    from labelmill.pipelines.label import run_label_job
    from labelmill.pipelines.predict import run_predict_job
    from labelmill.pipelines.votes_io import read_votes
    from ray.cluster_utils import Cluster

    from labelmill.config import parse_config

    ids = [f"doc{i:03d}" for i in range(64)]
    words = [
        "editor",
        "text",
        "music",
        "audio",
        "sound",
        "network",
        "server",
        "client",
        "daemon",
        "image",
        "viewer",
        "tool",
    ]
    texts = [" ".join(words[(i + j) % len(words)] for j in range(5)) + f" {i}" for i in range(64)]
    pq.write_table(pa.table({"id": ids, "text": texts}), workdir / "corpus.parquet")

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 4, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=4)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    tree = {
        "corpus": {"uri": str(workdir / "corpus.parquet")},
        "taxonomy": {"labels": [{"name": n, "description": d} for n, d in LABELS]},
        "teachers": [
            {
                "name": "tiny-embed",
                "kind": "embedding",
                "model": str(encoder),
                "accelerator": "cpu",
                "batch_size": 4,
                "concurrency": 2,
                "cpus_per_replica": 2.5,
                "embedding": {"max_length": 32},
            }
        ],
        "output_uri": str(workdir / "run"),
        "ray": {"light_stage_cpus": 0.1},
        "predict": {
            "model_dir": str(student),
            "batch_size": 4,
            "concurrency": 2,
            "cpus_per_replica": 2.5,
        },
    }
    config = parse_config(tree)
    label_nodes_before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    run_label_job(config)
    label_nodes, seen = map_actor_nodes(set())
    run_predict_job(config)
    predict_nodes, _ = map_actor_nodes(seen)
    votes = read_votes(config.output_uri, "tiny-embed", ["id"])["id"].to_pylist()
    predictions = pq.read_table(workdir / "run" / "predictions", columns=["id"])["id"].to_pylist()
    print(
        json.dumps(
            {
                "nodes": sorted(label_nodes_before),
                "label_nodes": sorted(label_nodes),
                "predict_nodes": sorted(predict_nodes),
                "corpus_ids": ids,
                "vote_ids": votes,
                "prediction_ids": predictions,
            }
        )
    )
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
