"""Run by test_multinode.py in its own process: a local Ray cluster (ray.cluster_utils) whose
nodes share no path for artifacts: the corpus and the run directory are on the S3 server named by
AWS_ENDPOINT_URL, and each node has its own LABELMILL_HOME (so its own model cache).

    python multinode_job.py WORKDIR TINY_ENCODER RUN_URI REPORT  -> writes the JSON report to REPORT

(A file, not stdout: Ray forwards raylet and worker warnings to the driver's stdout at any time.)

Phase 1, nodes H (head, 3 CPUs) and A (4 CPUs): the label job (embedding teacher on the tiny
encoder; each replica asks for 2.5 CPUs, so two replicas cannot share a node: the work must
spread), aggregate, and distill, whose one Ray Train worker asks for 3.5 CPUs: only A fits.
Phase 2: A leaves, a fresh node B (4 CPUs) joins, and batch predict (two 2.5-CPU replicas: one on
H, one on B) reads the student from s3 through each node's cache. Reports the nodes of every Ray
Data map actor and Ray Train worker, the ids written, and each node's model cache entries.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def map_actor_nodes(seen: set[str], kind: str = "MapWorker") -> tuple[set[str], set[str]]:
    """(node ids of ``kind`` actors not in ``seen``, their actor ids) from the GCS actor table."""
    from ray._private import state

    nodes, ids = set(), set()
    for actor_id, info in state.actors().items():
        if actor_id in seen or kind not in info.get("ActorClassName", ""):
            continue
        ids.add(actor_id)
        nodes.add(info["Address"]["NodeID"])
    return nodes, ids


def cache_entries(home: Path) -> dict[str, dict]:
    """version -> fetch record of each model cache entry under the LABELMILL_HOME ``home``."""
    from labelmill.artifacts import FETCH_RECORD

    root = home / "cache" / "models"
    if not root.is_dir():
        return {}
    return {
        entry.name: json.loads((entry / FETCH_RECORD).read_text())
        for entry in root.iterdir()
        if (entry / FETCH_RECORD).is_file()
    }


def main() -> None:
    workdir, encoder = Path(sys.argv[1]), Path(sys.argv[2])
    run_uri, report_path = sys.argv[3], Path(sys.argv[4])
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import fsspec
    import ray
    from conftest import LABELS  # the tiny student's taxonomy
    from ray.cluster_utils import Cluster

    from labelmill.artifacts import artifact_version
    from labelmill.config import parse_config
    from labelmill.pipelines.aggregate import run_aggregate_job
    from labelmill.pipelines.distill import run_distill_job
    from labelmill.pipelines.label import run_label_job
    from labelmill.pipelines.predict import run_predict_job
    from labelmill.pipelines.votes_io import read_votes

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
    corpus_uri = f"{run_uri}-corpus/corpus.parquet"
    fs, path = fsspec.core.url_to_fs(corpus_uri)
    with fs.open(path, "wb") as handle:
        pq.write_table(pa.table({"id": ids, "text": texts}), handle)

    homes = {name: workdir / f"home-{name}" for name in ("H", "A", "B")}
    os.environ["LABELMILL_HOME"] = str(workdir / "home-driver")  # the driver's own
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 3,
            "include_dashboard": False,
            "env_vars": {"LABELMILL_HOME": str(homes["H"])},
        },
    )
    node_a = cluster.add_node(num_cpus=4, env_vars={"LABELMILL_HOME": str(homes["A"])})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    node_ids = {"H": cluster.head_node.node_id, "A": node_a.node_id}
    tree = {
        "corpus": {"uri": corpus_uri},
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
        "output_uri": run_uri,
        "ray": {"light_stage_cpus": 0.1},
        "student": {
            "backbone": str(encoder),
            "epochs": 1,
            "min_steps": 0,
            "batch_size": 16,
            "max_length": 16,
            "dev_fraction": 0.25,
            "fast_path": False,
            "num_workers": 1,
            "cpus_per_worker": 3.5,
        },
        "predict": {"batch_size": 4, "concurrency": 2, "cpus_per_replica": 2.5},
    }
    config = parse_config(tree)
    run_label_job(config)
    label_nodes, seen = map_actor_nodes(set())
    run_aggregate_job(config)
    run_distill_job(config)
    train_nodes, seen_train = map_actor_nodes(seen, "RayTrainWorker")
    seen |= seen_train

    cluster.remove_node(node_a)  # the training node leaves; a fresh one joins
    node_b = cluster.add_node(num_cpus=4, env_vars={"LABELMILL_HOME": str(homes["B"])})
    cluster.wait_for_nodes()
    node_ids["B"] = node_b.node_id
    run_predict_job(config)
    predict_nodes, _ = map_actor_nodes(seen)
    votes = read_votes(config.output_uri, "tiny-embed", ["id"])["id"].to_pylist()
    fs, root = fsspec.core.url_to_fs(run_uri)
    predictions = pq.read_table(f"{root}/predictions", columns=["id"], filesystem=fs)
    report_path.write_text(
        json.dumps(
            {
                "node_ids": node_ids,
                "label_nodes": sorted(label_nodes),
                "train_nodes": sorted(train_nodes),
                "predict_nodes": sorted(predict_nodes),
                "corpus_ids": ids,
                "vote_ids": votes,
                "prediction_ids": predictions["id"].to_pylist(),
                "student_version": artifact_version(f"{run_uri}/student"),
                "caches": {name: cache_entries(home) for name, home in homes.items()},
                "driver_cache": cache_entries(workdir / "home-driver"),
            }
        )
    )
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
