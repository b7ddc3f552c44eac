"""The manifests in cluster/ parse and agree with labelmill's configs (no Ray started).

Checked here: YAML syntax of every file, the RayJob's entrypoint and job config (validated by
``labelmill.config.parse_config``), the RayService's serveConfigV2 (Ray Serve's schema, and each
application's ``args`` by ``labelmill.serve_config.parse_serve_config``), the API key Secret
reaching the Serve pods, and the cluster-launcher file (node types, Ray's config schema).
Nothing here talks to Kubernetes or a cloud.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelmill.config import parse_config
from labelmill.serve_config import parse_serve_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAYJOB = CLUSTER / "rayjob-labelmill.yaml"
RAYSERVICE = CLUSTER / "rayservice-labelmill.yaml"
LAUNCHER = CLUSTER / "ray-cluster-launcher.yaml"


def _documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert docs, f"{path.name} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
    return docs


def _one(path: Path, kind: str) -> dict[str, Any]:
    found = [doc for doc in _documents(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def _pod_specs(cluster_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Group name ('head' for the head group) -> group spec, of a RayCluster spec."""
    groups = {"head": cluster_spec["headGroupSpec"]}
    for group in cluster_spec.get("workerGroupSpecs") or []:
        groups[group["groupName"]] = group
    return groups


def test_every_yaml_in_cluster_parses() -> None:
    files = sorted(CLUSTER.glob("*.yaml")) + sorted(CLUSTER.glob("*.yml"))
    assert {RAYJOB, RAYSERVICE, LAUNCHER} <= set(files)
    for path in files:
        _documents(path)


def test_cluster_holds_no_python() -> None:
    assert not list(CLUSTER.rglob("*.py"))


def test_rayjob_runs_the_loop_on_a_gpu_and_cpu_cluster() -> None:
    job = _one(RAYJOB, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("labelmill run ")
    assert "--set ray.address=auto" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int)
    groups = _pod_specs(spec["rayClusterSpec"])
    assert {"head", "gpu-teachers", "cpu-workers"} <= set(groups)
    for name, group in groups.items():
        for container in group["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert resources["requests"] and resources["limits"], name
    gpu = groups["gpu-teachers"]
    (container,) = gpu["template"]["spec"]["containers"]
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus >= 1
    assert int(gpu["rayStartParams"]["num-gpus"]) == gpus
    cpu = groups["cpu-workers"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in cpu["limits"]


def test_rayjob_job_config_is_mounted_and_valid() -> None:
    job = _one(RAYJOB, "RayJob")
    config_path = job["spec"]["entrypoint"].split()[2]
    mount_dir, file_name = config_path.rsplit("/", 1)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    (volume_name,) = [name for name, path in mounts.items() if path == mount_dir]
    config_map_name = volumes[volume_name]["configMap"]["name"]
    config_map = _one(RAYJOB, "ConfigMap")
    assert config_map["metadata"]["name"] == config_map_name
    tree = yaml.safe_load(config_map["data"][file_name])
    config = parse_config(tree, ["ray.address=auto"])
    assert "://" in config.output_uri, "output_uri must be shared storage every pod reaches"
    # the student goes to the object store too (<output_uri>/student): no shared volume
    assert config.student.output_dir is None or "://" in config.student.output_dir
    gpu_engines = sum(t.concurrency for t in config.teachers if t.accelerator == "gpu")
    assert gpu_engines >= 1


def test_rayservice_serve_config_validates() -> None:
    service = _one(RAYSERVICE, "RayService")
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    applications = serve_config["applications"]
    assert applications
    for app in applications:
        assert app["import_path"] == "labelmill.serve.app:build_app"
        assert app["route_prefix"] == "/"
        args = parse_serve_config(app["args"])
        assert args.model_dir.startswith("s3://")  # fetched once per pod into its cache
        assert args.auth.api_key_env == "LABELMILL_API_KEY"
        assert args.replicas.autoscaling is not None


def test_rayservice_serve_config_matches_ray_serve_schema() -> None:
    schema = pytest.importorskip("ray.serve.schema")
    config = pytest.importorskip("ray.serve.config")
    service = _one(RAYSERVICE, "RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema.ServeDeploySchema.model_validate(serve_config)
    for app in serve_config["applications"]:
        config.AutoscalingConfig.model_validate(app["args"]["replicas"]["autoscaling"])


def test_rayservice_pods_get_the_api_key_from_a_secret() -> None:
    service = _one(RAYSERVICE, "RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    key_envs = {app["args"]["auth"]["api_key_env"] for app in serve_config["applications"]}
    groups = _pod_specs(service["spec"]["rayClusterConfig"])
    assert len(groups) >= 2
    for name, group in groups.items():
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env") or []}
            for key_env in key_envs:
                assert "secretKeyRef" in env[key_env]["valueFrom"], (name, key_env)
                assert "value" not in env[key_env], (name, key_env)


def test_cluster_launcher_node_types() -> None:
    (launcher,) = _documents(LAUNCHER)
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    workers = {name: spec for name, spec in types.items() if name != launcher["head_node_type"]}
    assert len(workers) >= 2
    for name, spec in workers.items():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= launcher["max_workers"], name
        assert spec["node_config"]["InstanceType"], name
    assert any("pip install -e" in command for command in launcher["setup_commands"])
    assert "." in launcher["file_mounts"].values()


def test_cluster_launcher_matches_ray_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    autoscaler = pytest.importorskip("ray.autoscaler")
    schema_path = Path(autoscaler.__file__).parent / "ray-schema.json"
    if not schema_path.is_file():
        pytest.skip("this Ray ships no cluster-config schema")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    (launcher,) = _documents(LAUNCHER)
    jsonschema.validate(launcher, schema)
