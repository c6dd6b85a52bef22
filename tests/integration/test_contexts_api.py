"""Context generation over an API teacher: a recording loopback server with injected faults."""

import json
import sys
from pathlib import Path

import pytest

from medforge.io import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from contexts_loopback import Faults, LoopbackServer  # noqa: E402

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "phi_vignettes.jsonl"
VIGNETTES = [json.loads(x) for x in DATA.read_text().splitlines() if x.strip()]
WINDOW_S, RPW, TPW = 2.0, 8, 16_000


@pytest.fixture(scope="module")
def ray_local(shared_ray):
    """The session's shared local Ray (tests/integration/conftest.py)."""
    yield


def _input(tmp_path: Path, copies: int) -> Path:
    path = tmp_path / "in.jsonl"
    with open(path, "w") as f:
        for c in range(copies):
            for v in VIGNETTES:
                f.write(json.dumps({**v, "id": f"{v['id']}-{c}"}) + "\n")
    return path


def _cfg(tmp_path, base_url, inp, **extra):
    from medforge.contexts.config import ContextsConfig

    data = {
        "engine": {"kind": "openai", "base_url": base_url, "model": "loopback", "concurrency": 2,
                    "max_concurrent_requests": 4, "batch_size": 8, "timeout_s": 1.0, "max_retries": 4,
                    "backoff_base_s": 0.05, "backoff_max_s": 0.2,
                    "rate_limit": {"requests_per_minute": RPW, "tokens_per_minute": TPW, "window_s": WINDOW_S,
                                   "safety_margin_s": 0.5}},  # > send-latency jitter on a loaded 2-core box
        "input": {"path": str(inp)},
        "keyword_concurrency": [1, 1],
        "generation": {"sampling": {"temperature": 0.0, "max_tokens": 300}},
        "output": {"dir": str(tmp_path / "run"), "chunk_rows": 10, "format": "jsonl"},
    }
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v}
    return ContextsConfig.model_validate(data)


def _max_in_window(times_tokens, window):
    times_tokens = sorted(times_tokens)
    worst_n = worst_tok = 0
    for i, (t, _) in enumerate(times_tokens):
        inside = [tok for (u, tok) in times_tokens[i:] if u < t + window]
        worst_n = max(worst_n, len(inside))
        worst_tok = max(worst_tok, sum(inside))
    return worst_n, worst_tok


def test_api_teacher_faults_rate_limit_and_no_phi(tmp_path, ray_local):
    from medforge.contexts import task
    from medforge.contexts.pipeline import run_contexts

    inp = _input(tmp_path, copies=3)  # 27 rows
    faults = Faults(period=6, slots={1: "429", 2: "500", 4: "timeout"}, timeout_sleep_s=2.0)
    with LoopbackServer(faults) as srv:
        summary = run_contexts(_cfg(tmp_path, srv.base_url, inp))
        log = list(srv.rec.requests)

    # every row complete, none twice
    rows = [r for p in sorted((tmp_path / "run" / "out").glob("part-*.jsonl")) for r in read_jsonl(p)]
    assert summary.rows_with_context == 27 and summary.rows_quarantined == 0
    # the dataset card: every row counted, the parse rate, the plots
    card = (tmp_path / "run" / "card.md").read_text()
    assert summary.paths.card.endswith("card.md") and "| rows with a context | 27 |" in card and "100.0%" in card
    assert (tmp_path / "run" / "card_plots" / "lengths.png").is_file()
    assert sorted(r["id"] for r in rows) == sorted(f"{v['id']}-{c}" for c in range(3) for v in VIGNETTES)
    assert all(set(r["option_contexts"]) == set(r["options"]) for r in rows)
    # faults really happened and were retried
    statuses = [e["status"] for e in log]
    assert statuses.count(429) >= 3 and statuses.count(500) >= 3 and statuses.count(0) >= 3
    # the shared limit held in every window, judged from the server's own log
    n, tok = _max_in_window([(e["t"], e["prompt_tokens"] + e["completion_tokens"]) for e in log], WINDOW_S)
    assert n <= RPW, f"{n} requests in one {WINDOW_S}s window > {RPW}"
    assert tok <= TPW, f"{tok} tokens in one window > {TPW}"
    # no PHI string of the fixtures in any request body (strings that the fixed few-shot
    # prompt itself contains, e.g. "Graves" of "Graves disease", are checked in the query part only)
    static = json.dumps(task.format_input([], {}, "json")).lower()
    for e in log:
        body = json.loads(e["body"])
        query = body["messages"][-1]["content"].lower()
        whole = e["body"].lower()
        for v in VIGNETTES:
            for phi in v["phi"]:
                assert phi.lower() not in query, f"{phi!r} sent in {query!r}"
                if phi.lower() not in static:
                    assert phi.lower() not in whole
        assert "question" not in body and all("id" not in m for m in body["messages"])


def test_api_teacher_empty_and_garbage_replies_are_quarantined(tmp_path, ray_local):
    from medforge.contexts.pipeline import run_contexts

    inp = _input(tmp_path, copies=1)  # 9 rows
    # first attempts 0..8 -> slots 0,1,2,3,0,1,2,3,0: 3 empty, 2 garbage, 2 lone-surrogate, 2 good
    faults = Faults(period=4, slots={0: "empty", 1: "garbage", 2: "surrogate"})
    with LoopbackServer(faults) as srv:
        summary = run_contexts(_cfg(tmp_path, srv.base_url, inp, output={"format": "parquet"}))
    assert summary.rows_with_context == 2 and summary.rows_quarantined == 7
    q = [r for p in (tmp_path / "run" / "quarantine").glob("part-*.jsonl") for r in read_jsonl(p)]
    reasons = {r["reason"] for r in q}
    assert "empty reply" in reasons and any("no overall context" in r for r in reasons)
    # a reply whose JSON holds a lone "\ud800" is kept (as U+FFFD) and judged, not a crash
    assert sum("lone \ufffd surrogate" in r["raw_text"] for r in q) == 2
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "run" / "out").to_pylist()
    assert len(out) == 2 and {r["id"] for r in out}.isdisjoint({r["id"] for r in q})
    # tokens spent on quarantined replies are accounted for too
    assert any(r["num_generated_tokens"] > 0 for r in q)
    assert summary.generated_tokens_this_run == sum(r["num_generated_tokens"] for r in out + q)
    # on site, the contexts (Parquet map columns) are joined back onto the local questions
    from medforge.contexts.attach import attach_contexts

    counts = attach_contexts(inp, tmp_path / "run", tmp_path / "train.jsonl")
    assert counts == {"rows": 2, "without_context": 7, "unreadable": 0}
    local = {r["id"]: r for r in read_jsonl(inp)}
    for r in read_jsonl(tmp_path / "train.jsonl"):
        assert r["question"] == local[r["id"]]["question"] and set(r["option_contexts"]) == set(r["options"])
