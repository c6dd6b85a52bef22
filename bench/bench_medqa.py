"""``POST /v1/medqa`` throughput and latency, context LLM on loopback, and where the time goes.

    PYTHONPATH=src .venv/bin/python bench/bench_medqa.py --clients 8 --seconds 20

Starts a local Ray + Serve with the QA app (tiny multiple-choice export built on the fly from
the tiny BERT) and the recording OpenAI-compatible loopback server of the tests as the context
LLM (``tests/integration/contexts_loopback.py``, canned replies: it stands in for a paid API, so
the figure is medforge's own cost). N clients post for M seconds; reports requests/s, p50/p99
latency and the mean share of each step from the endpoint's ``timings_ms`` (keywords, context,
SLM). Timings are never asserted anywhere; see docs/benchmarks.md for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--out", default="runs/bench_medqa")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    import httpx
    import ray
    import torch
    from contexts_loopback import LoopbackServer
    from ray import serve
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    from medforge.engines.tiny import make_tiny_models
    from medforge.mc.encoding import MCFormat
    from medforge.mc.scorer import save_mc_export
    from medforge.serve.cli import run_serve

    tiny = make_tiny_models(os.environ.get("MEDFORGE_TINY_MODELS") or ROOT / ".tiny_models")
    tmp = Path(tempfile.mkdtemp(prefix="bench-medqa-"))
    torch.manual_seed(0)
    export = save_mc_export(tmp / "mc", AutoModelForMultipleChoice.from_pretrained(tiny["bert"]),
                            AutoTokenizer.from_pretrained(tiny["bert"]),
                            MCFormat(max_length=128, use_context=True, num_options=4, labels=list("ABCD")))
    os.environ["MEDFORGE_API_KEYS"] = KEY
    port = _free_port()
    question = ("A 45-year-old woman has fever, productive cough and pleuritic chest pain for 3 days; "
                "crackles over the right lower lobe.")
    options = {"A": "Community-acquired pneumonia", "B": "Pulmonary embolism", "C": "Asthma", "D": "Pneumothorax"}
    lat: list[float] = []
    steps: dict[str, list[float]] = {}
    codes: dict[int, int] = {}
    with LoopbackServer(log_bodies=False) as llm:
        data = {"http_options": {"host": "127.0.0.1", "port": port}, "applications": [{
            "name": "medqa", "route_prefix": "/v1/medqa", "import_path": "medforge.serve.qa:app_builder",
            "args": {"mc_model": str(export), "max_batch_size": a.max_batch_size,
                     "context_llm": {"kind": "openai", "base_url": llm.base_url, "model": "loopback"}}}]}
        ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False)
        try:
            run_serve(data, None, None, blocking=False)

            async def client(i: int) -> None:
                async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as c:
                    end = time.perf_counter() + a.seconds
                    while time.perf_counter() < end:
                        t0 = time.perf_counter()
                        r = await c.post(f"http://127.0.0.1:{port}/v1/medqa",
                                         json={"question": f"Case {i}. {question}", "options": options})
                        lat.append(time.perf_counter() - t0)
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1
                        if r.status_code == 200:
                            for k, v in r.json()["timings_ms"].items():
                                steps.setdefault(k, []).append(v)

            async def run() -> float:
                t0 = time.perf_counter()
                await asyncio.gather(*(client(i) for i in range(a.clients)))
                return time.perf_counter() - t0

            wall = asyncio.run(run())
        finally:
            serve.shutdown()
            ray.shutdown()
    lat.sort()
    total = sum(statistics.mean(v) for v in steps.values())
    result = {
        "clients": a.clients, "seconds": a.seconds, "requests": len(lat), "codes": codes,
        "requests_per_s": round(len(lat) / wall, 2),
        "p50_ms": round(statistics.median(lat) * 1000, 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 1),
        "mean_step_ms": {k: round(statistics.mean(v), 2) for k, v in steps.items()},
        "step_share_of_measured": {k: round(statistics.mean(v) / total, 3) for k, v in steps.items()},
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
