"""deploy/kuberay/ against the CRD schemas of the KubeRay release the docs name, and the rules that keep
the cluster reachable by KubeRay but by nobody else, with no key in a manifest.

The CRD YAMLs are KubeRay's (Apache-2.0), not vendored here: the test reads them from
``$MEDFORGE_KUBERAY_CRDS`` or ``../shared/kuberay-crds/<version>/`` beside the repository, and is
skipped with the way to get them when they are absent. Plain Kubernetes objects (the PVC) are checked
with ``kubernetes-validate`` when it is installed.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
KUBERAY = REPO / "deploy" / "kuberay"
KUBERAY_VERSION = "v1.7.0"  # the release docs/cluster.md names; authOptions (token auth) needs >= v1.5
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}
SECRET_NAME = re.compile(r"(^|_)(API_?KEYS?|KEYS?|TOKEN|SECRET|PASSWORD)(_|$)", re.I)


def _manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


MANIFESTS = _manifests()
RAY_MANIFESTS = [(n, d) for n, d in MANIFESTS if d["kind"] in CRD_FILES]


def _crd_dir() -> Path:
    env = os.environ.get("MEDFORGE_KUBERAY_CRDS")
    folder = Path(env) if env else REPO.parent / "shared" / "kuberay-crds" / KUBERAY_VERSION
    if not all((folder / f).is_file() for f in CRD_FILES.values()):
        pytest.skip(
            f"KubeRay {KUBERAY_VERSION} CRDs not found in {folder}: copy ray-operator/config/crd/bases/"
            f"{{{','.join(CRD_FILES.values())}}} of the kuberay repository at tag {KUBERAY_VERSION} there "
            f"(git -C kuberay show {KUBERAY_VERSION}:ray-operator/config/crd/bases/ray.io_rayclusters.yaml > ...), "
            "or point MEDFORGE_KUBERAY_CRDS at a folder that holds them")
    return folder


def _to_json_schema(node):
    """A CRD's openAPIV3Schema as JSON Schema: unknown fields are errors (kubectl's strict field
    validation) unless x-kubernetes-preserve-unknown-fields; int-or-string and nullable as Kubernetes
    reads them; embedded resources may carry apiVersion/kind/metadata."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _validator(kind: str, version: str):
    import jsonschema

    crd = yaml.safe_load((_crd_dir() / CRD_FILES[kind]).read_text())
    [ver] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert ver.get("served") and not ver.get("deprecated"), f"{kind} {version} is not a served, current version"
    schema = _to_json_schema(ver["schema"]["openAPIV3Schema"])

    def cel(validator, rules, instance, schema):  # CEL rules cannot be evaluated here: say so, never pass silently
        yield jsonschema.ValidationError(
            f"this field carries CEL rules the offline check cannot evaluate: {[r.get('message') for r in rules]}")

    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-validations": cel})
    return cls(schema)


def _errors(doc: dict) -> list[str]:
    group, _, version = doc["apiVersion"].partition("/")
    assert group == "ray.io", doc["apiVersion"]
    validator = _validator(doc["kind"], version)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


@pytest.mark.parametrize("name,doc", RAY_MANIFESTS, ids=[n for n, _ in RAY_MANIFESTS])
def test_manifest_validates_against_the_kuberay_crd(name, doc):
    problems = _errors(doc)
    assert not problems, f"{name} against KubeRay {KUBERAY_VERSION}'s {doc['kind']} CRD:\n  " + "\n  ".join(problems)


def test_the_validator_catches_what_it_is_for():
    rc = next(d for n, d in RAY_MANIFESTS if d["kind"] == "RayCluster")
    bad = yaml.safe_load(yaml.safe_dump(rc))
    bad["spec"]["headGroupSpec"]["rayStartParam"] = {"x": "1"}  # misspelt field
    bad["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "four"  # wrong type
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = 8  # int-or-string: fine
    problems = "\n".join(_errors(bad))
    assert "rayStartParam" in problems and "maxReplicas" in problems
    assert "limits.cpu" not in problems


def test_kubernetes_objects_validate():
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate to check the PVC")
    plain = [(n, d) for n, d in MANIFESTS if d["kind"] not in CRD_FILES]
    assert plain
    for name, doc in plain:
        kv.validate(doc, kv.latest_version(), strict=True)


def test_the_docs_name_the_release_the_manifests_are_checked_against():
    text = (REPO / "docs" / "cluster.md").read_text()
    assert f"KubeRay {KUBERAY_VERSION}" in text
    assert f"KubeRay {KUBERAY_VERSION}" in (KUBERAY / "raycluster.yaml").read_text()


# -- reachable by KubeRay, by nobody else; token auth managed by KubeRay ------------------------------


def _cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for name, doc in RAY_MANIFESTS:
        if doc["kind"] == "RayCluster":
            out.append((name, doc["spec"]))
        elif "rayClusterConfig" in doc["spec"]:
            out.append((name, doc["spec"]["rayClusterConfig"]))
        elif "rayClusterSpec" in doc["spec"]:
            out.append((name, doc["spec"]["rayClusterSpec"]))
    return out


def _pods(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"]["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]


@pytest.mark.parametrize("name,spec", _cluster_specs(), ids=[n for n, _ in _cluster_specs()])
def test_dashboard_reachable_through_the_cluster_ip_service_only(name, spec):
    head = spec["headGroupSpec"]
    # KubeRay's RayJob submitter (K8sJobMode) and its RayService controller reach the dashboard at
    # <head-svc>.<namespace>.svc.cluster.local:8265 (utils.FetchHeadServiceURL); a head bound to
    # 127.0.0.1 inside the pod is unreachable to both. KubeRay defaults to 0.0.0.0 when unset.
    assert head["rayStartParams"].get("dashboard-host", "0.0.0.0") == "0.0.0.0", name
    # ... and that Service stays inside the cluster: ClusterIP (the default), no ingress
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{name}: never a LoadBalancer/NodePort for the head"
    assert not head.get("enableIngress"), f"{name}: no ingress in front of the dashboard"
    # token auth managed by KubeRay: it creates the token Secret and gives RAY_AUTH_TOKEN to every pod
    # and to the RayJob submitter. RAY_AUTH_MODE set by hand on the head alone locks workers out.
    assert spec.get("authOptions", {}).get("mode") == "token", f"{name}: authOptions: {{mode: token}}"
    for group, pod in _pods(spec):
        for c in pod["containers"]:
            envs = {e["name"] for e in c.get("env", [])}
            assert not envs & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}, f"{name}/{group}: leave the auth env to KubeRay"


@pytest.mark.parametrize("name,spec", _cluster_specs(), ids=[n for n, _ in _cluster_specs()])
def test_keys_reach_every_pod_as_secrets_never_as_values(name, spec):
    for group, pod in _pods(spec):
        secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for c in pod["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            for ename, e in env.items():
                if SECRET_NAME.search(ename):
                    assert "value" not in e, f"{name}/{group}: {ename} has a literal value; use secretKeyRef"
            # the gated models' token from a Secret, on every pod that can run a model
            hf = env.get("HF_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
            assert hf.get("name") and hf.get("key"), f"{name}/{group}: HF_TOKEN from a secretKeyRef"
            # the serving API keys: the Secret mounted as a file under /mnt/shared/secrets
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert secret_volumes.get(mounts.get("/mnt/shared/secrets")) == "medforge-api-keys", (
                f"{name}/{group}: mount the medforge-api-keys Secret at /mnt/shared/secrets")


@pytest.mark.parametrize("name,doc", [(n, d) for n, d in RAY_MANIFESTS if d["kind"] == "RayJob"],
                         ids=[n for n, d in RAY_MANIFESTS if d["kind"] == "RayJob"])
def test_no_secret_in_a_rayjob_runtime_env(name, doc):
    env = yaml.safe_load(doc["spec"].get("runtimeEnvYAML") or "{}") or {}
    leaked = [k for k in (env.get("env_vars") or {}) if SECRET_NAME.search(k)]
    assert not leaked, (f"{name}: {leaked} in runtimeEnvYAML lands in Ray's job table (`ray job list`, the "
                        "dashboard); give pods the Secret instead (raycluster.yaml)")


# -- checks KubeRay's controller makes on top of the schema (ray-operator/controllers/ray/utils/validation.go) --

MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}  # MaxRay*NameLength in KubeRay's constant.go
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("name,doc", RAY_MANIFESTS, ids=[n for n, _ in RAY_MANIFESTS])
def test_kuberay_controller_rules(name, doc):
    meta = doc["metadata"]["name"]
    assert len(meta) <= MAX_NAME[doc["kind"]] and DNS1035.match(meta), f"{name}: name {meta!r}"
    for cname, spec in _cluster_specs():
        if cname != name:
            continue
        for group, pod in _pods(spec):
            assert pod.get("containers"), f"{name}/{group}: at least one container"
        for g in spec.get("workerGroupSpecs", []):
            assert 0 <= g["minReplicas"] <= g["maxReplicas"], f"{name}/{g['groupName']}: replicas"
            assert "labels" not in g.get("rayStartParams", {}), f"{name}/{g['groupName']}: top-level labels only"
            if g.get("resources"):
                assert not set(g.get("rayStartParams", {})) & {"num-cpus", "num-gpus", "memory", "resources"}, (
                    f"{name}/{g['groupName']}: resources in both rayStartParams and the group's resources")
    if doc["kind"] == "RayJob":
        spec = doc["spec"]
        assert bool(spec.get("rayClusterSpec")) != bool(spec.get("clusterSelector")), f"{name}: one of the two"
        if spec.get("clusterSelector"):
            assert spec["clusterSelector"].get("ray.io/cluster"), f"{name}: cluster name in clusterSelector"
