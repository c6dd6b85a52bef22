"""cluster.yaml through Ray's own config checks, the KubeRay manifests by structure, the job runtime_env."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import yaml

from medforge.check_cluster import check_cluster_file, cross_check_problems, job_demands, shipped_job_configs
from medforge.cluster.definition import PLACEHOLDER
from medforge.config.registry import JOBS

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "cluster.yaml"


def _filled(tmp_path: Path, edit=None) -> Path:
    """cluster.yaml with every placeholder given a plausible value, as a user would before `ray up`."""
    text = CLUSTER.read_text().replace("REPLACE-ME-ami", "ami-0123456789abcdef0")
    text = text.replace("REPLACE-ME-subnet", "subnet-0123456789abcdef0").replace("REPLACE-ME-account", "123456789012")
    text = text.replace("REPLACE-ME-efs-id", "fs-0123456789abcdef0")
    if edit:
        text = edit(text)
    out = tmp_path / "cluster.yaml"
    out.write_text(text)
    return out


def test_shipped_cluster_yaml_refused_for_its_placeholders():
    problems = check_cluster_file(CLUSTER)
    assert problems, "the shipped template must not pass as ready for `ray up`"
    assert all("placeholder REPLACE-ME" in p for p in problems), problems  # nothing else is wrong with it
    assert any("REPLACE-ME-ami" in p and "line " in p for p in problems)


def test_filled_cluster_yaml_passes_ray_validation_and_cross_checks(tmp_path):
    assert check_cluster_file(_filled(tmp_path)) == []


def test_ray_schema_errors_reported(tmp_path):
    bad = _filled(tmp_path, lambda t: t.replace("idle_timeout_minutes: 5", "idle_timeout_minutes: soon"))
    problems = check_cluster_file(bad)
    assert len(problems) == 1 and "Ray's cluster config validation" in problems[0] and "soon" in problems[0]


def test_dashboard_on_all_interfaces_refused(tmp_path):
    bad = _filled(tmp_path, lambda t: t.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"))
    problems = check_cluster_file(bad)
    assert len(problems) == 1 and "exposes the dashboard" in problems[0]


def test_each_cluster_job_demand_fits_and_a_missing_node_type_is_named(tmp_path):
    jobs = shipped_job_configs()
    assert {p.name for p in jobs} >= {"cluster_llama3_70b.yaml", "cluster_llama2_7b.yaml", "cluster_biolinkbert.yaml",
                                      "cluster.yaml"}
    assert all(job_demands(p) for p in jobs)  # every cluster config declares a demand
    config = yaml.safe_load(_filled(tmp_path).read_text())
    assert cross_check_problems(config, jobs) == []
    del config["available_node_types"]["gen_l4"]
    problems = cross_check_problems(config, jobs)
    # the 70B engines (generate and contexts teachers, the evaluation judge, and the pipeline's teacher and
    # judge) need L4 nodes; the rest still fit
    assert len(problems) == 5 and all("accelerator_type:L4 (no node type carries it)" in p for p in problems)
    assert any("cluster.yaml: judge.engine" in p for p in problems)
    assert any("cluster.yaml: generate.engine" in p for p in problems)  # configs/pipeline/cluster.yaml
    # the pipeline's training workers and served engine are found inside its embedded stage configs
    pipeline = [d.field for d in job_demands(REPO / "configs" / "pipeline" / "cluster.yaml")]
    assert any(f.startswith("cluster.yaml: finetune.scaling (num_workers=8") for f in pipeline), pipeline
    assert any(f.startswith("cluster.yaml: serve.llm.engine") for f in pipeline), pipeline


def test_cluster_yaml_shape():
    c = yaml.safe_load(CLUSTER.read_text())
    types = c["available_node_types"]
    head = types[c["head_node_type"]]
    assert "GPU" not in head["resources"]
    workers = {n: t for n, t in types.items() if n != c["head_node_type"]}
    assert all(t["min_workers"] == 0 for t in workers.values())
    spot = {n for n, t in workers.items() if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"}
    gen = {n for n, t in workers.items() if any(k in t["resources"] for k in ("accelerator_type:L4", "accelerator_type:A10G"))}
    train = {n for n, t in workers.items() if any(k in t["resources"] for k in ("accelerator_type:A100", "accelerator_type:H100"))}
    assert gen and gen <= spot and train and not (train & spot)
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert re.fullmatch(r"rayproject/ray:2\.60\.0-py3\d+-gpu", c["docker"]["image"])
    assert c["idle_timeout_minutes"] > 0
    # what the nodes install: tests/unit/cluster/test_cluster_environment.py


def _kuberay(name: str) -> dict:
    return yaml.safe_load((REPO / "deploy" / "kuberay" / name).read_text())


def test_kuberay_raycluster_structure():
    rc = _kuberay("raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    spec = rc["spec"]
    assert spec["rayVersion"] == "2.60.0" and spec["enableInTreeAutoscaling"] is True
    # KubeRay reaches the dashboard through the head's ClusterIP Service (test_kuberay_manifests.py)
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert spec["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu") is None
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1 and group["groupName"]
        container = group["template"]["spec"]["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        label = yaml.safe_load(yaml.safe_load(group["rayStartParams"]["resources"]))
        assert any(k.startswith("accelerator_type:") for k in label)
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/mnt/shared" in mounts


def test_kuberay_one_rayjob_per_job():
    jobs = sorted((REPO / "deploy" / "kuberay").glob("rayjob-*.yaml"))
    scripts = set()
    for path in jobs:
        rj = yaml.safe_load(path.read_text())
        assert rj["apiVersion"] == "ray.io/v1" and rj["kind"] == "RayJob"
        assert rj["spec"]["clusterSelector"] == {"ray.io/cluster": _kuberay("raycluster.yaml")["metadata"]["name"]}
        m = re.fullmatch(r"python /home/ray/medforge/(ray_jobs/\w+\.py) --config /home/ray/medforge/(\S+)", rj["spec"]["entrypoint"])
        assert m, rj["spec"]["entrypoint"]
        assert (REPO / m.group(1)).is_file() and (REPO / m.group(2)).is_file()
        yaml.safe_load(rj["spec"]["runtimeEnvYAML"])
        scripts.add(m.group(1))
    # serve.py: on Kubernetes serving is the RayService (rayservice.yaml); evaluate_mc.py has no cluster
    # config. (pipeline.py's RayJob deploys the tuned model with Serve itself, and leaves it up.)
    not_yet = {"ray_jobs/serve.py", "ray_jobs/evaluate_mc.py"}
    assert scripts == {job.script for job in JOBS} - not_yet


def test_kuberay_rayservice_serves_the_cluster_serving_file():
    rs = _kuberay("rayservice.yaml")
    assert rs["apiVersion"] == "ray.io/v1" and rs["kind"] == "RayService"
    serve_cfg = yaml.safe_load(rs["spec"]["serveConfigV2"])
    shipped = yaml.safe_load((REPO / "configs" / "serve" / "cluster.yaml").read_text())
    # the two never drift apart, but for where the code comes from: on `ray up` nodes a copy on the
    # shared mount (`local://`, for `serve deploy`); in KubeRay's pods the image itself
    assert all(a.pop("runtime_env") == {"py_modules": ["local:///mnt/shared/medforge/code"]}
               for a in shipped["applications"])
    assert serve_cfg["applications"] == shipped["applications"]
    cluster = rs["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    llm = next(a for a in serve_cfg["applications"] if a["name"] == "llm")["args"]
    [group] = cluster["workerGroupSpecs"]
    assert group["minReplicas"] == llm["autoscaling"]["min_replicas"] and group["maxReplicas"] == llm["autoscaling"]["max_replicas"]
    container = group["template"]["spec"]["containers"][0]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    # the key file the apps read is the mounted Secret, on every pod that can run a replica
    key_file = llm["security"]["auth"]["api_keys_file"]
    for spec in (cluster["headGroupSpec"]["template"]["spec"], group["template"]["spec"]):
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        secret_vols = {v["name"] for v in spec["volumes"] if "secret" in v}
        assert any(key_file.startswith(path + "/") and name in secret_vols for path, name in mounts.items())


def test_placeholder_pattern_spots_template_values_only():
    assert PLACEHOLDER.findall("ImageId: REPLACE-ME-ami  # x") == ["REPLACE-ME-ami"]
    assert PLACEHOLDER.findall("ImageId: ami-0123") == []


def test_runtime_env_uploads_code_not_envs_runs_or_models(tmp_path):
    """Ray's own packaging (what `ray job submit --runtime-env` zips) applied to a checkout with the usual clutter."""
    from ray._private.runtime_env.packaging import create_package

    env = yaml.safe_load((REPO / "deploy" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and env["py_modules"] == ["src/medforge"]
    assert all((REPO / m).is_dir() for m in env["py_modules"])
    tree = {
        "ray_jobs/generate.py": "x", "configs/generate/local_tiny.yaml": "x", "src/medforge/io.py": "x",
        ".venv/lib/python3.11/site-packages/torch/x.py": "x", "runs/demo/out.jsonl": "x",
        ".tiny_models/tiny-llama/model.safetensors": "x", "models/llama/pytorch_model.bin": "x",
        ".small_models/smol/model.safetensors": "x", "shared/data/alpacare/med_seed.json": "x",
    }
    for rel, text in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    out = tmp_path.parent / f"{tmp_path.name}.zip"
    # .gitignore not consulted: the excludes must hold on their own (a checkout may have no .gitignore)
    create_package(str(tmp_path), out, include_gitignore=False, excludes=env["excludes"])
    names = {n for n in zipfile.ZipFile(out).namelist() if not n.endswith("/")}
    assert names == {"ray_jobs/generate.py", "configs/generate/local_tiny.yaml", "src/medforge/io.py"}


@pytest.mark.parametrize("doc", ["docs/cluster.md", "cluster.yaml"])
def test_docs_submit_with_the_runtime_env(doc):
    text = (REPO / doc).read_text()
    assert "--runtime-env deploy/runtime_env.yaml" in text
