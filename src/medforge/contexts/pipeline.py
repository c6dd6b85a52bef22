"""Context generation at million scale: read -> keywords -> teacher -> parse -> write, streamed.

Run folder layout (``output.dir``)::

    run.json                      fingerprint of everything that shapes the data
    staged/chunk_NNNNN.parquet    normalised input rows, ``output.chunk_rows`` per chunk
    staged/manifest.json          chunk -> row count (written when staging finished)
    out/part-NNNNN.parquet|jsonl  one output shard per chunk (atomic)
    quarantine/input.jsonl        input lines that could not be read, with the reason
    quarantine/part-NNNNN.jsonl   rows of chunk N whose generation failed or did not parse
    summary.json

How it stays flat in memory and resumable:

1. **Stage** (driver, streaming): the input is read line by line as bytes, normalised by
   :mod:`medforge.datasets.mcq` and written in fixed-size chunks by row order. Only one chunk
   is in memory. Chunk N always holds the same rows, so chunks are the unit of resume.
2. **Generate** (Ray Data, streaming, every stage in long-lived actors): one block per chunk
   that has no output shard yet -> ``map_batches`` keyword actors (read the chunk, apply the
   guard; the question text is dropped here and never reaches the teacher stage) ->
   the teacher engine (:meth:`medforge.engines.engine.Engine.chat`) -> ``map_batches`` parse actor. The driver
   consumes the stream with ``iter_batches`` and buffers rows per chunk; a complete chunk is written atomically (quarantine part first, output
   shard last -- the shard is the "done" marker) and dropped from memory.
3. **Resume**: a restart skips chunks whose shard exists. A kill loses at most the chunks in
   flight; they are regenerated with the same request seeds. No row is written twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.cards.contexts import stats_from_folder, write_contexts_card
from medforge.contexts import task
from medforge.contexts.config import ContextsConfig
from medforge.contexts.request import build_context_request, structured_output_wanted
from medforge.generate.response_checks import ResponseCheckConfig, check_response
from medforge.datasets.mcq import iter_mcq_file, quarantine_record
from medforge.engines.breaker import classify
from medforge.engines.engine import engine_for
from medforge.io import atomic_write_jsonl, atomic_write_text, open_run_folder
from medforge.privacy.vocab import load_vocabulary
from medforge.progress import progress, progress_line
from medforge.results import EngineRef, JobResult, ResultModel
from medforge.run_folder import RunFolder

logger = logging.getLogger(__name__)

ENGINE_ERROR = "engine error:"
#: the dataset card is rewritten after a chunk at most this often (and always at the end)
CARD_INTERVAL_S = 30.0
STAGED_COLUMNS = ("id", "row_index", "chunk", "question", "options_json", "answer")


def request_seed(base: int, row_id: str) -> int:
    digest = hashlib.sha256(f"context:{base}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def fingerprint(cfg: ContextsConfig) -> dict[str, Any]:
    return {
        "input": cfg.input.model_dump(mode="json"),
        "chunk_rows": cfg.output.chunk_rows,
        "teacher_kind": cfg.engine.kind,
        "teacher_model": cfg.engine.model,
        "keywords": cfg.keywords.model_dump(mode="json", exclude={"cache_dir"}),
        "generation": cfg.generation.model_dump(mode="json"),
        "prompt_sha256": task.prompt_hash(),
        "seed": cfg.seed,
        "format": cfg.output.format,
    }


# ----------------------------------------------------------------------------- stage
def _write_parquet_atomic(path: Path, rows: list[dict[str, Any]], schema=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _staged_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("row_index", pa.int64()), ("chunk", pa.int64()),
                      ("question", pa.string()), ("options_json", pa.string()), ("answer", pa.string())])


def stage_input(cfg: ContextsConfig, root: Path) -> dict[int, int]:
    """Normalise the input into fixed-size chunks (streaming). Returns chunk -> row count."""
    staged = root / "staged"
    manifest = staged / "manifest.json"
    if manifest.is_file():
        return {int(k): v for k, v in json.loads(manifest.read_text())["chunks"].items()}
    staged.mkdir(parents=True, exist_ok=True)
    ic = cfg.input
    counts: dict[int, int] = {}
    buf: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    n_good = 0
    schema = _staged_schema()

    def flush() -> None:
        chunk = len(counts)
        _write_parquet_atomic(staged / f"chunk_{chunk:05d}.parquet", buf, schema)
        counts[chunk] = len(buf)
        buf.clear()

    for index, row, reason in iter_mcq_file(ic.path, ic.format, ic.cop_base, ic.max_question_chars):
        if row is None:
            bad.append(quarantine_record(index, reason, ic.path))
            continue
        buf.append({"id": row["id"], "row_index": n_good, "chunk": len(counts), "question": row["question"],
                    "options_json": json.dumps(row["options"], ensure_ascii=False), "answer": row["answer"]})
        n_good += 1
        if len(buf) == cfg.output.chunk_rows:
            flush()
        if ic.max_rows is not None and n_good >= ic.max_rows:
            break
    if buf:
        flush()
    atomic_write_jsonl(root / "quarantine" / "input.jsonl", bad)
    atomic_write_text(manifest, json.dumps({"chunks": counts, "rows": n_good, "quarantined": len(bad)}))
    logger.info("staged %d rows in %d chunk(s); %d input line(s) quarantined", n_good, len(counts), len(bad))
    return counts


# ----------------------------------------------------------------------------- Ray stages
class KeywordStage:
    """Ray Data actor UDF: reads staged chunks and applies the trust boundary. Loads the
    vocabulary once per actor.

    In: ``path`` of staged chunk files (one per call), whose rows are ``id, chunk, row_index,
    question, options_json, answer``. Out: those minus ``question``, plus ``keywords_json``,
    ``sent_options_json``, ``privacy_budget``, ``n_words``, ``phi_kinds_json``, ``redactions_json``, ``messages``, ``request_seed``, ``json_schema``, ``letters_json``.
    """

    def __init__(self, cfg: ContextsConfig):
        self.cfg = cfg
        self.vocab = load_vocabulary(tuple(cfg.keywords.sources), cfg.keywords.cache_dir)
        self.structured = structured_output_wanted(cfg.generation, cfg.engine)

    def __call__(self, batch):
        # Reading here rather than in a stage of its own saves a worker process for the
        # whole run (the read is ~1 ms per chunk).
        return self.process(read_chunks(batch).to_pydict())

    def process(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in (
            "id", "chunk", "row_index", "answer", "keywords_json", "sent_options_json", "privacy_budget", "n_words",
            "phi_kinds_json", "redactions_json", "messages", "request_seed", "json_schema", "letters_json")}
        for rid, chunk, ridx, question, opts_json, answer in zip(
                batch["id"], batch["chunk"], batch["row_index"], batch["question"], batch["options_json"],
                batch["answer"], strict=True):
            req = build_context_request(question, json.loads(opts_json), self.cfg.keywords, self.vocab,
                                        self.cfg.generation, self.structured)
            sent = req.sent()
            out["id"].append(rid)
            out["chunk"].append(int(chunk))
            out["row_index"].append(int(ridx))
            out["answer"].append(answer)
            # JSON text, not a list: ragged list columns make Ray Data fall back to pickling
            out["keywords_json"].append(json.dumps(sent["keywords"], ensure_ascii=False))
            out["sent_options_json"].append(json.dumps(sent["options"], ensure_ascii=False))
            out["privacy_budget"].append(req.guarded.privacy_budget)
            out["n_words"].append(req.guarded.n_words)
            out["phi_kinds_json"].append(json.dumps(req.guarded.phi_kinds))
            out["redactions_json"].append(json.dumps(req.guarded.redactions))
            out["messages"].append(req.messages)
            out["request_seed"].append(request_seed(self.cfg.seed, rid))
            out["json_schema"].append(json.dumps(req.json_schema) if req.json_schema else "")
            out["letters_json"].append(json.dumps(req.letters))
        return out


def parse_stage(batch, checks: ResponseCheckConfig | None = None):
    """Ray Data UDF: parse replies. Adds ``overall_context``, ``option_contexts_json``,
    ``preliminary_answer``, ``response_truncated`` and ``error`` (empty when the row is good).

    With ``checks``, a parsed reply's overall context goes through the reply gates
    (:mod:`medforge.generate.response_checks`): a context that loops, refuses, is not English or
    was cut at the token limit is not a context, and the row is quarantined with ``<gate>: why``.
    The echo gate has nothing to compare with here (the question never reaches the teacher)."""
    n = len(batch["id"])
    overall, contexts, prelim, truncated, errors = [], [], [], [], []
    finish = batch.get("finish_reason")
    for i in range(n):
        letters = json.loads(batch["letters_json"][i])
        err = batch["engine_error"][i]
        parsed, reason = (None, f"{ENGINE_ERROR} {err}") if err else task.format_output(batch["generated_text"][i], letters)
        cut = False
        if parsed is not None and checks is not None:
            verdict = check_response(parsed["overall_context"], checks,
                                     finish_reason=str(finish[i]) if finish is not None else "")
            if not verdict.ok:
                parsed, reason = None, f"{verdict.gate}: {verdict.detail}"
            cut = verdict.truncated
        overall.append(parsed["overall_context"] if parsed else "")
        contexts.append(json.dumps(parsed["option_contexts"], ensure_ascii=False) if parsed else "")
        prelim.append(parsed["preliminary_answer"] if parsed else "")
        truncated.append(cut)
        errors.append(reason)
    out = {k: v for k, v in batch.items() if k != "messages"}
    out.update(overall_context=overall, option_contexts_json=contexts, preliminary_answer=prelim,
               response_truncated=truncated, error=errors)
    return out


# ----------------------------------------------------------------------------- writing
def _output_schema():
    import pyarrow as pa

    m = pa.map_(pa.string(), pa.string())
    return pa.schema([
        ("id", pa.string()), ("row_index", pa.int64()), ("keywords", pa.list_(pa.string())), ("options", m),
        ("answer", pa.string()), ("overall_context", pa.string()), ("option_contexts", m),
        ("preliminary_answer", pa.string()), ("privacy_budget", pa.float64()), ("n_words", pa.int64()),
        ("redactions", pa.map_(pa.string(), pa.int64())),
        ("num_input_tokens", pa.int64()), ("num_generated_tokens", pa.int64()), ("teacher_model", pa.string()),
        ("teacher_engine", pa.string()), ("prompt_sha256", pa.string()), ("request_seed", pa.int64()),
        ("sampling_json", pa.string()), ("response_truncated", pa.bool_()),
    ])


class ChunkWriter:
    """Buffers streamed rows per chunk and writes a chunk as soon as all its rows are in."""

    def __init__(self, cfg: ContextsConfig, folder: RunFolder, expected: dict[int, int]):
        self.cfg, self.folder, self.root, self.expected = cfg, folder, folder.local, expected
        self.buf: dict[int, list[dict[str, Any]]] = {}
        self.written = 0
        self.rows_ok = 0
        self.rows_bad = 0
        self.reasons: dict[str, int] = {}
        self.generated_tokens = 0  # every row's, quarantined ones too: the teacher spent them
        self.redactions: dict[str, int] = {}  # what the guard withheld, by identifier type (never values)
        self.sampling_json = json.dumps(cfg.generation.sampling.model_dump())
        self.pending_chunks: set[int] = set()  # chunks left undone because a request failed (retried on resume)
        self.pending_errors: dict[str, int] = {}
        # the card's numbers: the chunks already written (a resumed run), then each chunk as it is written
        self.card_stats = stats_from_folder(self.root)
        self.total_rows = sum(expected.values())
        self.rows_before = self.card_stats.replies
        self.t0 = time.perf_counter()
        self.card_written_at, self.card_last_s = -float("inf"), 0.0
        self.card_seconds = 0.0

    def out_path(self, chunk: int) -> Path:
        return self.root / "out" / f"part-{chunk:05d}.{self.cfg.output.format}"

    def add(self, row: dict[str, Any]) -> None:
        chunk = int(row["chunk"])
        rows = self.buf.setdefault(chunk, [])
        rows.append(row)
        if len(rows) >= self.expected[chunk]:
            self.flush(chunk)

    def flush(self, chunk: int, missing_reason: str | None = None) -> None:
        """Write a chunk, or leave it pending when a row is missing or its request failed in a way
        a rerun can fix (endpoint down, 401, engine died): a failed request never marks its chunk done."""
        rows = sorted(self.buf.pop(chunk, []), key=lambda r: int(r["row_index"]))
        failed = [classify(r["error"]).key for r in rows
                  if str(r["error"]).startswith(ENGINE_ERROR) and classify(r["error"]).pending]
        if missing_reason is not None:
            failed.append("engine died")  # rows that never came back (an engine replica died)
        if failed:
            self.pending_chunks.add(chunk)
            for key in failed:
                self.pending_errors[key] = self.pending_errors.get(key, 0) + 1
            logger.warning("chunk %d left pending: %d request(s) failed (%s); it is redone on resume",
                           chunk, len(failed), ", ".join(sorted(set(failed))))
            return
        good, bad = [], []
        for r in rows:
            n_gen = int(r.get("num_generated_tokens") or 0)
            self.generated_tokens += n_gen
            for kind, n in json.loads(r.get("redactions_json") or "{}").items():
                self.redactions[kind] = self.redactions.get(kind, 0) + int(n)
            if r["error"]:
                reason = r["error"].split(":")[0]
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
                bad.append({"id": r["id"], "row_index": int(r["row_index"]), "reason": r["error"],
                            "raw_text": str(r.get("generated_text") or "")[:2000], "num_generated_tokens": n_gen,
                            "finish_reason": str(r.get("finish_reason") or "")})
                continue
            good.append({
                "id": r["id"], "row_index": int(r["row_index"]), "keywords": json.loads(r["keywords_json"]),
                "options": json.loads(r["sent_options_json"]), "answer": r["answer"],
                "overall_context": r["overall_context"], "option_contexts": json.loads(r["option_contexts_json"]),
                "preliminary_answer": r["preliminary_answer"], "privacy_budget": float(r["privacy_budget"]),
                "n_words": int(r["n_words"]), "redactions": json.loads(r.get("redactions_json") or "{}"),
                "num_input_tokens": int(r["num_input_tokens"]),
                "num_generated_tokens": n_gen, "teacher_model": self.cfg.engine.model,
                "teacher_engine": self.cfg.engine.kind, "prompt_sha256": task.prompt_hash(),
                "request_seed": int(r["request_seed"]), "sampling_json": self.sampling_json,
                # cut at the token limit and kept (checks.keep_truncated)
                "response_truncated": bool(r.get("response_truncated", False)),
            })
        # quarantine first, shard last: the shard marks the chunk done
        atomic_write_jsonl(self.root / "quarantine" / f"part-{chunk:05d}.jsonl", bad)
        path = self.out_path(chunk)
        if self.cfg.output.format == "parquet":
            _write_parquet_atomic(path, good, _output_schema())
        else:
            atomic_write_jsonl(path, good)
        self.written += 1
        self.rows_ok += len(good)
        self.rows_bad += len(bad)
        self.card_stats.add_chunk(chunk, good, bad)
        self.write_card()
        self.folder.push(last=(path,))
        done = self.card_stats.replies
        rate = (done - self.rows_before) / max(time.perf_counter() - self.t0, 1e-9)
        progress(progress_line("contexts", done, self.total_rows, rate, unit="rows",
                               extra=f"{self.card_stats.rows_ok} with context, {self.card_stats.rows_bad} quarantined"))

    def write_card(self, summary: dict[str, Any] | None = None) -> None:
        """Rewrite the dataset card: at most every ``CARD_INTERVAL_S`` s mid-run, always with the summary."""
        t0 = time.perf_counter()
        if summary is None and t0 - self.card_written_at < max(CARD_INTERVAL_S, 50 * self.card_last_s):
            return  # at most every CARD_INTERVAL_S, and never more than ~2% of the time
        try:
            write_contexts_card(self.root, self.card_stats, summary)
        except Exception:  # noqa: BLE001 - a card must never stop the data it describes
            logger.exception("could not write the dataset card; the data is unaffected")
        self.card_written_at = time.perf_counter()
        self.card_last_s = self.card_written_at - t0
        self.card_seconds += self.card_last_s


# ----------------------------------------------------------------------------- run
def prepare_folder(cfg: ContextsConfig, folder: RunFolder) -> Path:
    root = folder.local
    open_run_folder(root, fingerprint(cfg), cfg.output.overwrite)
    (root / "quarantine").mkdir(exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    return root


def read_chunks(batch):
    """``path`` rows (a pyarrow batch) -> the rows of those staged chunk files, as one table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _staged_schema()
    return pa.concat_tables([pq.read_table(str(p), schema=schema) for p in batch["path"].to_pylist()])


class ParseStage:
    """:func:`parse_stage` in a Ray Data actor (one long-lived process; see :func:`build_dataset`)."""

    def __init__(self, checks: ResponseCheckConfig | None = None):
        self.checks = checks

    def __call__(self, batch):
        return parse_stage(batch, self.checks)


def build_dataset(cfg: ContextsConfig, paths: list[str]):
    """The lazy Ray Data pipeline over staged chunk files (nothing runs until consumed)."""
    import ray

    # Parse batches never span more than a chunk's worth of rows, so small chunks still stream
    # (a larger batch would bundle several chunks and finish them all at once).
    batch = min(256, cfg.output.chunk_rows)
    if cfg.object_store_budget_mib is not None:
        # Backpressure on bytes in flight: the stream holds at most this much whatever the input size.
        opts = ray.data.DataContext.get_current().execution_options
        opts.resource_limits = opts.resource_limits.copy(object_store_memory=cfg.object_store_budget_mib * 1024 * 1024)
    # One block per staged chunk, read by one keyword-actor call. ``read_parquet`` would coalesce
    # small files into one read task -- one block holding many (or all) chunks -- and every map task
    # emits its output as one block when it finishes, so no chunk could be written before all
    # the chunks in its block were generated: no streaming, and a kill would lose them all.
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, len(paths)))
    # Every stage runs in long-lived actors, none as tasks: uncapped, Ray Data launches up to 4
    # tasks per logical CPU at start-up, each in a new worker process (~200 MiB), for ~1 ms of
    # work, and even capped tasks come and go in pooled workers. Fixed actors keep the process
    # set -- and so the memory -- the same from the first chunk to the millionth row.
    ds = ds.map_batches(KeywordStage, fn_constructor_kwargs={"cfg": cfg}, concurrency=tuple(cfg.keyword_concurrency),
                        batch_size=1, batch_format="pyarrow", num_cpus=0.5)
    ds = engine_for(cfg.engine).chat(ds, cfg.generation.sampling)
    return ds.map_batches(ParseStage, fn_constructor_kwargs={"checks": cfg.checks}, batch_format="numpy",
                          batch_size=batch, num_cpus=0.25, concurrency=1)


class ContextsPaths(ResultModel):
    out: str = Field(description="Output shards: id, overall_context, option_contexts, provenance.")
    quarantine: str = Field(description="Rows quarantined, each with its reason.")
    card: str | None = Field(None, description="The dataset card (card.md; card.html beside it).")


class ContextsResult(JobResult):
    """What ``run_contexts`` returns (and writes to ``summary.json``)."""

    input_rows: int = Field(description="Questions read (staged).")
    input_quarantined: int = Field(description="Questions quarantined while staging.")
    chunks: int = Field(description="Chunks in the run.")
    chunks_this_run: int = Field(description="Chunks written by this run.")
    chunks_pending: int = Field(description="Chunks left pending (their requests failed).")
    rows_with_context: int = Field(description="Rows that got contexts.")
    rows_quarantined: int = Field(description="Rows quarantined.")
    reasons_this_run: dict[str, int] = Field(description="Quarantine reasons of this run.")
    generated_tokens_this_run: int = Field(description="Tokens the teacher generated in this run.")
    redactions_this_run: dict[str, int] = Field(description="Identifiers redacted from the keywords, by type.")
    teacher: EngineRef = Field(description="The teacher engine.")
    wall_time_s: float = Field(description="Wall time of this run.")
    paths: ContextsPaths = Field(description="Where the outputs are (URIs for a URI output.dir).")


def run_contexts(cfg: ContextsConfig) -> ContextsResult:
    """Run (or resume) the job. Ray must already be initialised."""
    t0 = time.perf_counter()
    engine = engine_for(cfg.engine)
    # Staged chunks are read back by keyword actors on any node: output.dir must be shared storage there
    # (a URI, or a shared mount); a URI is pulled into the driver's staging copy first.
    engine.preflight("contexts", {"output.dir": cfg.output.dir})
    folder = RunFolder(cfg.output.dir, cfg.output.staging_dir)
    folder.pull()  # the preflight above has already probed a URI with a real write
    root = prepare_folder(cfg, folder)
    engine.start()  # the endpoint check, and the cluster-wide limiter this job holds
    counts = stage_input(cfg, root)
    # the staged chunks reach the URI before any worker reads them, the manifest (staging done) last
    folder.push(last=(root / "staged" / "manifest.json",))
    writer = ChunkWriter(cfg, folder, counts)
    pending = [c for c in sorted(counts) if not writer.out_path(c).is_file()]
    logger.info("%d of %d chunk(s) to generate", len(pending), len(counts))
    if pending:
        ds = build_dataset(cfg, [folder.home(root / "staged" / f"chunk_{c:05d}.parquet") for c in pending])
        keep = ("id", "chunk", "row_index", "answer", "keywords_json", "sent_options_json", "privacy_budget", "n_words",
                "redactions_json", "request_seed", "generated_text", "num_input_tokens", "num_generated_tokens", "overall_context",
                "option_contexts_json", "preliminary_answer", "response_truncated", "finish_reason", "error")
        breaker = engine.breaker()
        # batch_size=None: take blocks as they arrive, so finished chunks are written at once
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            cols = {k: batch[k] for k in keep if k in batch}
            for i in range(len(cols["id"])):
                row = {k: v[i] for k, v in cols.items()}
                err = str(row["error"])
                breaker.record(err if err.startswith(ENGINE_ERROR) else "", "context requests")
                writer.add(row)
            if writer.written and writer.written % 10 == 0:
                logger.debug("%d chunk(s) written", writer.written)
        for chunk in list(writer.buf):
            writer.flush(chunk, missing_reason="no reply returned by the pipeline")
        for chunk in pending:  # a chunk with no row back at all
            if not writer.out_path(chunk).is_file():
                writer.flush(chunk, missing_reason="no reply returned by the pipeline")
    result = _summarise(cfg, root, counts, time.perf_counter() - t0, writer)
    if writer.pending_chunks:
        errs = ", ".join(f"{k}={v}" for k, v in sorted(writer.pending_errors.items()))
        result.incomplete = (f"{len(writer.pending_chunks)} chunk(s) left pending because requests failed ({errs}); "
                             "run the same command again to redo them")
    result.paths.card = folder.home(root / "card.md")
    atomic_write_text(root / "summary.json", result.summary_json())
    writer.write_card(result.summary())
    folder.push()
    logger.info("dataset card: %s (and card.html)", result.paths.card)
    return result


def _summarise(cfg: ContextsConfig, root: Path, counts: dict[int, int], elapsed: float, writer: ChunkWriter) -> ContextsResult:
    manifest = json.loads((root / "staged" / "manifest.json").read_text())
    ok = bad = 0
    for c in counts:
        if not writer.out_path(c).is_file():
            continue  # pending: neither done nor quarantined
        qpath = root / "quarantine" / f"part-{c:05d}.jsonl"
        n_bad = sum(1 for _ in open(qpath, encoding="utf-8")) if qpath.is_file() else 0
        bad += n_bad
        ok += counts[c] - n_bad
    return ContextsResult(
        output_dir=cfg.output.dir,
        input_rows=manifest["rows"],
        input_quarantined=manifest["quarantined"],
        chunks=len(counts),
        chunks_this_run=writer.written,
        chunks_pending=len([c for c in counts if not writer.out_path(c).is_file()]),
        rows_with_context=ok,
        rows_quarantined=bad,
        reasons_this_run=writer.reasons,
        generated_tokens_this_run=writer.generated_tokens,
        redactions_this_run=dict(sorted(writer.redactions.items())),
        teacher=EngineRef(kind=cfg.engine.kind, model=cfg.engine.model),
        wall_time_s=round(elapsed, 2),
        paths=ContextsPaths(out=writer.folder.home(root / "out"), quarantine=writer.folder.home(root / "quarantine")),
    )
