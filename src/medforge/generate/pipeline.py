"""Instruction synthesis, round by round, resumable at any moment.

How resume works (also in docs/resume.md):

1. Every round's requests are a pure function of ``(config.seed, round index)``: which seed
   triples are shown and each request's sampling seed. A round's raw teacher replies are
   saved, atomically, as ``raw/round_NNNNN.jsonl`` once the whole round is back.
2. Parsing, filtering and the greedy novelty filter are deterministic, so the accepted set
   is *recomputed* from the saved raw rounds on every start. It therefore equals what an
   uninterrupted run accepts from the same generations, with nothing lost or duplicated.
3. Responses are saved in chunks (``responses/part_NNNNN.jsonl``) keyed by task id; a restart
   answers only the tasks that have none.
4. A kill loses at most the round or chunk in flight, which is regenerated with the same
   request seeds.

``run.json`` holds a fingerprint of everything that shapes the data; resuming with a config
that changes it is refused (raising the target or the budget is allowed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.cards.instructions import write_instruction_card
from medforge.generate import instruction_task, response_task
from medforge.generate.config import GenerateConfig
from medforge.generate.filters import TaskFilters
from medforge.generate.novelty import NoveltyFilter, make_novelty_actor
from medforge.generate.prompts import template_hash
from medforge.generate.response_checks import check_response
from medforge.generate.seeds import NO_INPUT, load_seeds
from medforge.engines.breaker import classify
from medforge.engines.engine import Engine, engine_for
from medforge.io import (
    atomic_write_jsonl,
    atomic_write_parquet_shards,
    atomic_write_text,
    check_run_folder,
    open_run_folder,
    read_jsonl,
)
from medforge.progress import progress, progress_line
from medforge.results import EngineRef, JobResult, ResultModel
from medforge.run_folder import RunFolder, pull_run_folder

logger = logging.getLogger(__name__)

#: stop after this many rounds in a row in which every request failed (each is requested again)
MAX_FAILED_ROUNDS = 3
#: the dataset card is rewritten after a round or chunk at most this often (and always at the end)
CARD_INTERVAL_S = 30.0

# Where a run folder's dataset lands, relative to output.dir (what finetune's data.path names).
DATASET_DIR = "dataset"
DATASET_FILES = {"jsonl": "medinstruct.jsonl", "parquet": "parquet"}


class GeneratePaths(ResultModel):
    jsonl: str = Field(description="The dataset as one JSONL file (instruction, input, output, provenance).")
    parquet: str = Field(description="The dataset as Parquet shards.")
    quarantine: str = Field(description="Rejected tasks and failed responses, each with its reason.")
    card: str = Field(description="The dataset card (card.md; card.html beside it).")


class GenerateResult(JobResult):
    """What ``run_generate`` returns (and writes to ``summary.json``)."""

    dataset_rows: int = Field(description="Rows in the dataset.")
    accepted_tasks: int = Field(description="Tasks that passed every filter.")
    target_tasks: int = Field(description="budget.target_tasks.")
    rounds: int = Field(description="Task-generation rounds done.")
    rejected: dict[str, int] = Field(description="Rejected tasks by reason.")
    responses_failed: int = Field(description="Tasks whose response failed a gate (quarantined).")
    responses_failed_by_reason: dict[str, int] = Field(description="Failed responses by gate.")
    responses_retried: int = Field(description="Responses asked for a second time.")
    responses_truncated_kept: int = Field(description="Responses cut at the token limit and kept.")
    responses_pending: int = Field(description="Tasks with no response yet (their requests failed).")
    generated_tokens_tasks: int = Field(description="Tokens the teacher generated for tasks.")
    teacher: EngineRef = Field(description="The teacher engine.")
    wall_time_s: float = Field(description="Wall time of this run.")
    reply_gates_cpu_s: float = Field(description="CPU time spent in the reply gates.")
    paths: GeneratePaths = Field(description="Where the outputs are (URIs for a URI output.dir).")
    card_s: float | None = Field(None, description="Time spent writing dataset cards in this run.")


def dataset_paths(output_dir: str) -> dict[str, str]:
    """The dataset a generation run with ``output.dir=output_dir`` writes: ``{"jsonl": ..., "parquet": ...}``,
    as paths or URIs in the same form as ``output_dir`` (what a fine-tune's ``data.path`` should name)."""
    root = output_dir.rstrip("/")
    return {kind: f"{root}/{DATASET_DIR}/{name}" for kind, name in DATASET_FILES.items()}


@dataclass
class RoundResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    generated_tokens: int = 0


class _RemoteNovelty:
    """The driver's view of a novelty-filter actor: same ``filter`` call, decided in the actor."""

    def __init__(self, handle: Any):
        self.handle = handle

    def filter(self, texts: list[str], ids: list[str]) -> list[Any]:
        import ray

        return ray.get(self.handle.filter.remote(list(texts), list(ids)))


def _request_seed(base: int, round_idx: int, index: int, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{base}:{round_idx}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def build_request(cfg: GenerateConfig, seeds: list[dict[str, Any]], round_idx: int, index: int,
                  structured: bool) -> dict[str, Any]:
    """Request ``index`` of round ``round_idx``: a pure function of (config, seeds, round, index)."""
    rng = random.Random(f"{cfg.seed}:{round_idx}:{index}")
    examples = rng.sample(seeds, min(cfg.seeds.per_prompt, len(seeds)))
    return {
        # not "request_id": the vLLM stage uses that column name for its own ids
        "req_id": f"r{round_idx:05d}-q{index:04d}",
        "round": round_idx,
        "request_index": index,
        "seed_ids": [e["id"] for e in examples],
        "request_seed": _request_seed(cfg.seed, round_idx, index, "task"),
        "messages": instruction_task.format_input(examples, cfg.generation.tasks_per_request, structured),
    }


class InstructionRun:
    """One run folder: its checkpoints, its filter state and its outputs."""

    def __init__(self, cfg: GenerateConfig):
        self.cfg = cfg
        self.engine: Engine = engine_for(cfg.engine)
        self.folder = RunFolder(cfg.output.dir, cfg.output.staging_dir)  # staging copy + URI home, if any
        self.root = self.folder.local
        self.raw_dir = self.root / "raw"
        self.resp_dir = self.root / "responses"
        self.quarantine_dir = self.root / "quarantine"
        self.dataset_dir = self.root / DATASET_DIR
        self.seedset = load_seeds(cfg.seeds.path)
        if len(self.seedset.seeds) < cfg.seeds.per_prompt:
            raise ValueError(
                f"only {len(self.seedset.seeds)} usable seeds but seeds.per_prompt={cfg.seeds.per_prompt}; "
                "add seeds or lower seeds.per_prompt"
            )
        self.filters = TaskFilters(cfg.filters)
        self.structured = self.engine.structured(cfg.generation.structured_output)
        self.seeded = False  # set once Ray is up: do per-request seeds reach the engine?
        self.gate_seconds = 0.0  # CPU time spent in the reply gates (bench/bench_response_checks.py)
        self.card_seconds = 0.0  # time spent writing the dataset card after rounds and chunks
        self._card_written_at, self._card_last_s = -math.inf, 0.0
        self.reset_state()

    # ---------------------------------------------------------------- state
    def reset_state(self) -> None:
        self.novelty = NoveltyFilter(self.cfg.filters.novelty_threshold)
        self.novelty.add([s["instruction"] for s in self.seedset.seeds], [s["id"] for s in self.seedset.seeds])
        self.accepted: list[dict[str, Any]] = []
        self.kept_pool: list[tuple[str, str]] = []  # (id, instruction) the novelty filter kept, past the target too
        self.rejected: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.generated_tokens = 0
        self.rounds_done = 0

    def fingerprint(self) -> dict[str, Any]:
        cfg = self.cfg
        seeds_hash = hashlib.sha256(json.dumps(self.seedset.seeds, sort_keys=True).encode()).hexdigest()[:16]
        return {
            "teacher_kind": cfg.engine.kind,
            "teacher_model": cfg.engine.model,
            "seeds_sha256": seeds_hash,
            "seeds_per_prompt": cfg.seeds.per_prompt,
            "generation": cfg.generation.model_dump(mode="json"),
            "filters": cfg.filters.model_dump(mode="json", exclude={"novelty_actor"}),
            "response_sampling": cfg.responses.sampling.model_dump(mode="json"),
            "structured_multiple_choice": cfg.responses.structured_multiple_choice,
            "seed": cfg.seed,
            "templates": {
                name: template_hash(name)
                for name in (instruction_task.TEMPLATE, response_task.SYSTEM_TEMPLATE, response_task.USER_TEMPLATE)
            },
        }

    def prepare_folder(self) -> None:
        """Create the run folder, or check that an existing one belongs to this config."""
        open_run_folder(self.root, self.fingerprint(), self.cfg.output.overwrite)
        for d in (self.raw_dir, self.resp_dir, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.seedset.quarantined:
            atomic_write_jsonl(self.quarantine_dir / "seeds.jsonl", self.seedset.quarantined)
        self.folder.push()

    # ---------------------------------------------------------------- rounds
    def raw_path(self, round_idx: int) -> Path:
        return self.raw_dir / f"round_{round_idx:05d}.jsonl"

    def process_round(self, raw_rows: list[dict[str, Any]]) -> RoundResult:
        """Parse, filter and novelty-check one round's replies, in request order (deterministic)."""
        result = RoundResult()
        candidates: list[dict[str, Any]] = []
        target = self.cfg.budget.target_tasks
        for req in sorted(raw_rows, key=lambda r: r["request_index"]):
            result.generated_tokens += int(req.get("num_generated_tokens") or 0)
            base = {"request_id": req["req_id"], "seed_ids": list(req["seed_ids"])}
            if req.get("engine_error"):
                result.rejected.append({**base, "reason": "engine_error", "detail": req["engine_error"]})
                continue
            tasks, reasons = instruction_task.format_output(req["generated_text"], self.structured)
            for r in reasons:
                result.rejected.append({**base, "reason": "parse_error", "detail": r,
                                        "raw_text": req["generated_text"][:2000]})
            for j, task in enumerate(tasks):
                row = {
                    "id": f"{req['req_id']}-t{j:02d}",
                    **task,
                    "seed_ids": list(req["seed_ids"]),
                    "request_id": req["req_id"],
                    "request_seed": int(req["request_seed"]),
                }
                reason = self.filters.reject_reason(task)
                if reason:
                    result.rejected.append({**base, "reason": reason, "task": row})
                else:
                    candidates.append(row)
        decisions = self.novelty.filter([c["instruction"] for c in candidates], [c["id"] for c in candidates])
        for cand, dec in zip(candidates, decisions, strict=True):
            cand["novelty_best_rouge_l"] = round(float(dec.best_score), 6)
            cand["novelty_nearest_id"] = dec.nearest_id
            if dec.keep:
                result.kept.append((cand["id"], cand["instruction"]))
            if not dec.keep:
                result.rejected.append({"request_id": cand["request_id"], "seed_ids": cand["seed_ids"],
                                        "reason": "novelty", "task": cand})
            elif len(self.accepted) + len(result.accepted) < target:
                result.accepted.append(cand)
        return result

    def absorb(self, result: RoundResult) -> None:
        self.accepted.extend(result.accepted)
        self.kept_pool.extend(result.kept)
        self.rejected.extend(result.rejected)
        self.reasons.update(r["reason"] for r in result.rejected)
        self.generated_tokens += result.generated_tokens
        self.rounds_done += 1

    def replay(self) -> int:
        """Rebuild the accepted set from saved rounds. Returns the number of rounds replayed."""
        self.reset_state()
        idx = 0
        while self.raw_path(idx).is_file():
            self.absorb(self.process_round(list(read_jsonl(self.raw_path(idx)))))
            idx += 1
        if idx:
            logger.info("replayed %d saved round(s): %d tasks accepted so far", idx, len(self.accepted))
        return idx

    def use_novelty_actor(self) -> None:
        """Move the novelty pool into a Ray actor (``filters.novelty_actor``); decisions are unchanged."""
        seeds = self.seedset.seeds
        texts = [s["instruction"] for s in seeds] + [t for _, t in self.kept_pool]
        ids = [s["id"] for s in seeds] + [i for i, _ in self.kept_pool]
        handle = make_novelty_actor(self.cfg.filters.novelty_threshold, seed_texts=texts, seed_ids=ids, num_cpus=0.25)
        self.novelty = _RemoteNovelty(handle)

    def budget_left(self) -> str | None:
        """``None`` while generation should go on, else why it stops."""
        b = self.cfg.budget
        if len(self.accepted) >= b.target_tasks:
            return f"target of {b.target_tasks} tasks reached"
        if self.rounds_done >= max_rounds(self.cfg):
            return f"round budget of {max_rounds(self.cfg)} spent"
        if b.max_generated_tokens is not None and self.generated_tokens >= b.max_generated_tokens:
            return f"token budget of {b.max_generated_tokens} spent"
        return None

    def progress_line(self, tok_per_s: float | None = None, elapsed_s: float | None = None,
                      accepted_before: int = 0) -> str:
        """``round N: accepted a/target (pct) | tasks/min | ETA | rejected: ... | tok/s``.

        The rate counts the tasks accepted in this process over ``elapsed_s`` (a resumed run's
        replayed rounds are not new work)."""
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        speed = f" | {tok_per_s:,.0f} generated tok/s" if tok_per_s is not None else ""
        target = self.cfg.budget.target_tasks
        accepted = len(self.accepted)
        if elapsed_s:
            rate = max(accepted - accepted_before, 0) / elapsed_s
            line = f"round {self.rounds_done}: " + progress_line("accepted", accepted, target, rate, unit="tasks")
        else:
            line = f"round {self.rounds_done}: accepted {accepted}/{target}"
        return f"{line} | rejected: {reasons}{speed}"

    def write_card(self, responses: dict[str, dict[str, Any]] | None = None, force: bool = False) -> Path | None:
        """(Re)write ``card.md`` / ``card.html`` with plots from the run's state; at most every
        :data:`CARD_INTERVAL_S` seconds unless ``force`` (the end of the run)."""
        t0 = time.perf_counter()
        # at most every CARD_INTERVAL_S, and never more than ~2% of the time (a 52k run's card takes seconds)
        if not force and t0 - self._card_written_at < max(CARD_INTERVAL_S, 50 * self._card_last_s):
            return None
        try:
            path = write_instruction_card(self, responses, final=force)
        except Exception:  # noqa: BLE001 - a card must never stop the data it describes
            logger.exception("could not write the dataset card; the data is unaffected")
            path = None
        self._card_written_at = time.perf_counter()
        self._card_last_s = self._card_written_at - t0
        self.card_seconds += self._card_last_s
        return path


_KEEP = ("req_id", "request_index", "round", "seed_ids", "request_seed", "task_id",
         "generated_text", "num_input_tokens", "num_generated_tokens", "finish_reason", "engine_error")


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else v


def _stream_replies(ds, run: InstructionRun, sampling, json_schema: dict | None) -> Iterator[dict[str, Any]]:
    """Stream teacher replies for ``ds`` (one engine start for the whole stream)."""
    for r in run.engine.chat(ds, sampling, json_schema).iter_rows():
        yield {k: _plain(r[k]) for k in _KEEP if k in r}


def _rounds_for_next_stream(run: InstructionRun) -> int:
    cfg = run.cfg
    if cfg.budget.max_rounds is not None:
        return cfg.budget.max_rounds - run.rounds_done
    return min(_auto_stream_rounds(run), max_rounds(cfg) - run.rounds_done)


def max_rounds(cfg: GenerateConfig) -> int:
    """``budget.max_rounds``, or when it is null a finite bound: 10x the rounds the target needs if
    every generated task were accepted, at least 20 (a job whose tasks are all rejected stops)."""
    if cfg.budget.max_rounds is not None:
        return cfg.budget.max_rounds
    per_round = cfg.generation.tasks_per_request * cfg.generation.requests_per_round
    return max(20, 10 * math.ceil(cfg.budget.target_tasks / per_round))


def _auto_stream_rounds(run: InstructionRun) -> int:
    cfg = run.cfg
    # Enough rounds for twice the remaining target at one task per request slot; a stream
    # that ends short of the target is simply followed by another.
    per_round = cfg.generation.tasks_per_request * cfg.generation.requests_per_round
    remaining = cfg.budget.target_tasks - len(run.accepted)
    return max(2, math.ceil(2 * remaining / per_round))


def generate_tasks(run: InstructionRun) -> None:
    """Generate rounds until the target or a budget is reached.

    All rounds of a stream go through one Ray Data execution, so the engine starts once;
    replies arrive out of order and are buffered until their round is complete, then that
    round is saved and filtered in order.
    """
    import ray

    cfg = run.cfg
    rpr = cfg.generation.requests_per_round
    schema = (instruction_task.task_json_schema(cfg.generation.tasks_per_request, cfg.generation.max_instruction_chars,
                                                cfg.generation.max_input_chars) if run.structured else None)
    logger.info(run.progress_line())
    t_gen, accepted_before = time.perf_counter(), len(run.accepted)
    seeds, structured = run.seedset.seeds, run.structured
    breaker = run.engine.breaker()
    failed_rounds = 0
    while (stop := run.budget_left()) is None:
        first, n_rounds = run.rounds_done, _rounds_for_next_stream(run)
        logger.info("streaming rounds %d..%d through the teacher", first, first + n_rounds - 1)

        def to_request(row: dict[str, Any], _first: int = first) -> dict[str, Any]:
            i = int(row["id"])
            return build_request(cfg, seeds, _first + i // rpr, i % rpr, structured)

        # One block per round: rounds then stream back one by one instead of all at the end.
        ds = ray.data.range(n_rounds * rpr, override_num_blocks=n_rounds).map(to_request)
        buffers: dict[int, list[dict[str, Any]]] = {}
        t_start, stream_tokens = time.perf_counter(), 0  # tok/s since the stream started (incl. engine start)
        replies = _stream_replies(ds, run, cfg.generation.sampling, schema)
        round_failed, last_error = False, ""
        try:
            for reply in replies:
                breaker.record(reply.get("engine_error"), "task-generation requests")
                buffers.setdefault(int(reply["round"]), []).append(reply)
                while len(buffers.get(run.rounds_done, ())) == rpr:
                    idx = run.rounds_done
                    rows = sorted(buffers.pop(idx), key=lambda r: r["request_index"])
                    if all(r.get("engine_error") for r in rows):
                        # A round in which every request failed is no progress: not saved, not counted
                        # (rounds must stay contiguous on disk), and requested again.
                        round_failed, last_error = True, str(rows[-1].get("engine_error") or "")
                        break
                    atomic_write_jsonl(run.raw_path(idx), rows)
                    run.folder.push()
                    result = run.process_round(rows)
                    run.absorb(result)
                    failed_rounds = 0
                    stream_tokens += result.generated_tokens
                    run.write_card()
                    progress(run.progress_line(stream_tokens / max(time.perf_counter() - t_start, 1e-9),
                                               time.perf_counter() - t_gen, accepted_before))
                    if run.budget_left() is not None:
                        break
                if round_failed or run.budget_left() is not None:
                    break
        finally:
            replies.close()  # stops the Ray Data execution (and its engine actors)
        if round_failed:
            failed_rounds += 1
            # the failed round's own rows were popped from the buffers: its last error is kept
            logger.warning("round %d: every request failed (%s); not saved, requested again",
                           run.rounds_done, (last_error or "see above")[:200])
            if failed_rounds >= MAX_FAILED_ROUNDS:
                breaker.trip(f"{failed_rounds} rounds in a row had every request fail", last_error,
                             classify(last_error), "engine.breaker")
            continue
        if run.rounds_done == first:
            raise RuntimeError("the teacher stream ended without completing a round; see the engine errors above")
    logger.info("task generation stops: %s", stop)


# -------------------------------------------------------------------- responses
def _load_responses(run: InstructionRun) -> tuple[dict[str, dict[str, Any]], int]:
    done: dict[str, dict[str, Any]] = {}
    parts = sorted(run.resp_dir.glob("part_*.jsonl"))
    for p in parts:
        for row in read_jsonl(p):
            done[row["task_id"]] = row
    return done, len(parts)


def response_retry_ids(run: InstructionRun, done: dict[str, dict[str, Any]]) -> list[str]:
    """Tasks whose saved reply failed a gate or did not parse on the first attempt: asked once more
    (``responses.checks.retry``), in accepted order. An engine error is not retried here (a pending
    one is asked again as a missing reply; a lasting one, a prompt too long, would fail again)."""
    checks = run.cfg.responses.checks
    if not (checks.enabled and checks.retry):
        return []
    return [t["id"] for t in run.accepted
            if (r := done.get(t["id"])) is not None and r["output"] is None and int(r.get("attempt", 0)) == 0
            and r.get("gate") not in (None, "", "engine_error")]


def judge_reply(run: InstructionRun, task: dict[str, Any], rep: dict[str, Any], structured: bool) -> dict[str, Any]:
    """One teacher reply -> the saved response row: parsed, then through the reply gates (pure)."""
    checks = run.cfg.responses.checks
    truncated = False
    if rep["engine_error"]:
        kind = classify(rep["engine_error"])
        output, reason, gate = None, f"engine error ({kind.key}): {rep['engine_error']}", "engine_error"
    else:
        output, reason = response_task.format_output(task, rep["generated_text"], structured)
        gate = "" if output is not None else "parse_error"
        if output is None and checks.enabled and "empty" in checks.gates and not rep["generated_text"].strip():
            gate = "empty"
        if output is not None:
            verdict = check_response(output, checks, instruction=task["instruction"],
                                     input_text="" if task["input"] == NO_INPUT else task["input"],
                                     finish_reason=str(rep.get("finish_reason") or ""))
            if not verdict.ok:
                output, reason, gate = None, f"{verdict.gate}: {verdict.detail}", str(verdict.gate)
            truncated = verdict.truncated
    return {
        "task_id": task["id"],
        "output": output,
        "error": reason,
        "gate": gate,
        "raw_text": rep["generated_text"][:4000] if output is None else "",
        "num_generated_tokens": int(rep["num_generated_tokens"] or 0),
        "request_seed": int(rep["request_seed"]),
        "finish_reason": str(rep.get("finish_reason") or ""),
        "truncated": truncated,
        "attempt": int(rep.get("attempt", 0)),
    }


def generate_responses(run: InstructionRun) -> dict[str, dict[str, Any]]:
    """Answer every accepted task without a saved response, in one stream, saving chunk by chunk;
    then ask once more for the replies that failed a gate (``responses.checks``)."""
    done, next_part = _load_responses(run)
    pending = [t for t in run.accepted if t["id"] not in done]
    logger.info("responses: %d already answered, %d to go", len(done), len(pending))
    next_part = _answer_tasks(run, pending, done, next_part, attempt=0)
    retry = response_retry_ids(run, done)
    if retry:
        logger.info("responses: %d failed a reply gate or did not parse; asking once more with another seed", len(retry))
        by_id = {t["id"]: t for t in run.accepted}
        _answer_tasks(run, [by_id[i] for i in retry], done, next_part, attempt=1)
    return done


def _answer_tasks(run: InstructionRun, pending: list[dict[str, Any]], done: dict[str, dict[str, Any]],
                  next_part: int, attempt: int) -> int:
    """Stream replies for ``pending`` into ``done``, saving chunk by chunk; returns the next part number."""
    import ray

    cfg = run.cfg
    if not pending:
        return next_part
    use_schema = run.engine.structured(cfg.responses.structured_multiple_choice)
    cs = cfg.responses.chunk_size
    salt = "response" if attempt == 0 else f"response-retry{attempt}"
    rows = []
    for i, task in enumerate(pending):
        mc_schema = (response_task.mc_json_schema(task) if cfg.responses.structured_multiple_choice and use_schema
                     and response_task.is_multiple_choice(task) else None)
        rows.append({
            "task_id": task["id"],
            "request_index": i,
            "request_seed": _request_seed(cfg.seed, 0, 0, f"{salt}:{task['id']}"),
            "messages": response_task.format_input(task),
            "json_schema": json.dumps(mc_schema) if mc_schema else "",
        })
    tasks = {t["id"]: t for t in pending}
    structured_ids = {r["task_id"] for r in rows if r["json_schema"]}
    # An engine that cannot mix rows with and without a schema in one stream (vLLM, see
    # VLLMEngine) gets two homogeneous streams (one more engine start). Each streams chunk by
    # chunk: one block per chunk, a chunk saved as soon as its rows are back. A kill loses the
    # chunks in flight.
    if run.engine.one_schema_per_stream and structured_ids and len(structured_ids) < len(rows):
        groups = [[r for r in rows if r["json_schema"]], [r for r in rows if not r["json_schema"]]]
    else:
        groups = [rows]
    breaker = run.engine.breaker()
    t0, stream_tokens, pending_failed = time.perf_counter(), 0, 0
    n_answered = 0
    first_chunk = 0
    for group in groups:
        chunk_of = {r["task_id"]: first_chunk + k // cs for k, r in enumerate(group)}
        n_chunks = math.ceil(len(group) / cs)
        expected = {first_chunk + c: len(group[c * cs:(c + 1) * cs]) for c in range(n_chunks)}
        first_chunk += n_chunks
        chunks: dict[int, list[dict[str, Any]]] = {}
        ds = ray.data.from_items(group, override_num_blocks=n_chunks)
        for rep in _stream_replies(ds, run, cfg.responses.sampling, None):
            breaker.record(rep.get("engine_error"), "response requests")
            c = chunk_of[rep["task_id"]]
            chunks.setdefault(c, []).append(rep)
            if len(chunks[c]) < expected[c]:
                continue
            part_rows = []
            for rep in sorted(chunks.pop(c), key=lambda r: r["request_index"]):
                task = tasks[rep["task_id"]]
                if rep["engine_error"] and classify(rep["engine_error"]).pending:
                    pending_failed += 1  # not saved: the task stays pending and is asked again on resume
                    continue
                t_gate = time.perf_counter()
                part_rows.append(judge_reply(run, task, {**rep, "attempt": attempt}, task["id"] in structured_ids))
                run.gate_seconds += time.perf_counter() - t_gate
            if not part_rows:
                continue
            atomic_write_jsonl(run.resp_dir / f"part_{next_part:05d}.jsonl", part_rows)
            next_part += 1
            done.update({r["task_id"]: r for r in part_rows})
            n_answered += len(part_rows)
            run.write_card(done)
            run.folder.push()
            # Since the stream started (engine start included): chunks can complete together, and a
            # per-chunk rate would then divide a chunk's tokens by the microseconds between two writes.
            stream_tokens += sum(r["num_generated_tokens"] for r in part_rows)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            rate = stream_tokens / elapsed
            what = "responses" if attempt == 0 else "retried responses"
            progress(progress_line(what, n_answered, len(pending), n_answered / elapsed, unit="replies",
                                   extra=f"{rate:,.0f} generated tok/s"))
    if pending_failed:
        logger.warning("responses: %d request(s) failed and stay pending; the same command retries them", pending_failed)
    return next_part


# -------------------------------------------------------------------- outputs
def _provenance(run: InstructionRun, task: dict[str, Any], response: dict[str, Any] | None) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "teacher_model": cfg.engine.model,
        "teacher_engine": cfg.engine.kind,
        "generation_template": instruction_task.TEMPLATE,
        "generation_template_sha256": template_hash(instruction_task.TEMPLATE),
        "response_template_sha256": template_hash(response_task.SYSTEM_TEMPLATE) + ":" + template_hash(response_task.USER_TEMPLATE),
        "seed_ids": task["seed_ids"],
        "request_id": task["request_id"],
        "generation_sampling": {**cfg.generation.sampling.model_dump(), "seed": task["request_seed"] if run.seeded else None},
        "response_sampling": {**cfg.responses.sampling.model_dump(),
                              "seed": (response or {}).get("request_seed") if run.seeded else None},
        "structured_output": run.structured,
    }


def write_outputs(run: InstructionRun, responses: dict[str, dict[str, Any]] | None, elapsed_s: float) -> GenerateResult:
    cfg = run.cfg
    rows, resp_errors = [], []
    pending = 0
    gates: Counter[str] = Counter()
    for task in run.accepted:
        resp = (responses or {}).get(task["id"])
        if responses is not None and resp is None:
            pending += 1  # its request failed: neither done nor quarantined, retried on resume
            continue
        if responses is not None and resp["output"] is None:
            gate = resp.get("gate") or ("engine_error" if str(resp.get("error", "")).startswith("engine error") else "parse_error")
            gates[gate] += 1
            resp_errors.append({"task_id": task["id"], "reason": resp.get("error", ""), "gate": gate,
                                "attempts": int(resp.get("attempt", 0)) + 1, "finish_reason": resp.get("finish_reason", ""),
                                "raw_text": resp.get("raw_text", ""), "task": task})
            continue
        rows.append({
            "instruction": task["instruction"],
            "input": "" if task["input"] == NO_INPUT else task["input"],
            "output": resp["output"] if resp else "",
            "id": task["id"],
            "type": task["type"],
            "topic": task["topic"],
            "view": task["view"],
            "difficulty": task["difficulty"],
            "novelty_best_rouge_l": task["novelty_best_rouge_l"],
            "novelty_nearest_id": task["novelty_nearest_id"],
            # cut at the token limit and kept (responses.checks.keep_truncated); false otherwise
            "response_truncated": bool(resp.get("truncated", False)) if resp else False,
            "provenance": _provenance(run, task, resp),
        })
    atomic_write_jsonl(run.dataset_dir / DATASET_FILES["jsonl"], rows)
    atomic_write_parquet_shards(run.dataset_dir / DATASET_FILES["parquet"], rows, cfg.output.shard_rows)
    atomic_write_jsonl(run.quarantine_dir / "tasks_rejected.jsonl", run.rejected)
    atomic_write_jsonl(run.quarantine_dir / "responses_failed.jsonl", resp_errors)
    result = GenerateResult(
        output_dir=cfg.output.dir,
        incomplete=(f"{pending} task(s) have no response yet (their requests failed); "
                    "run the same command again to retry them") if pending else None,
        dataset_rows=len(rows),
        accepted_tasks=len(run.accepted),
        target_tasks=cfg.budget.target_tasks,
        rounds=run.rounds_done,
        rejected=dict(sorted(run.reasons.items())),
        responses_failed=len(resp_errors),
        responses_failed_by_reason=dict(sorted(gates.items())),
        responses_retried=sum(1 for r in (responses or {}).values() if int(r.get("attempt", 0)) > 0),
        responses_truncated_kept=sum(1 for r in rows if r["response_truncated"]),
        responses_pending=pending,
        generated_tokens_tasks=run.generated_tokens,
        teacher=EngineRef(kind=cfg.engine.kind, model=cfg.engine.model),
        wall_time_s=round(elapsed_s, 2),
        reply_gates_cpu_s=round(run.gate_seconds, 4),
        paths=GeneratePaths(
            **{kind: run.folder.home(run.dataset_dir / name) for kind, name in DATASET_FILES.items()},
            quarantine=run.folder.home(run.quarantine_dir),
            card=run.folder.home(run.root / "card.md"),
        ),
    )
    atomic_write_text(run.root / "summary.json", result.summary_json())
    run.write_card(responses, force=True)
    result.card_s = round(run.card_seconds, 3)  # every card of this run, the final one included
    atomic_write_text(run.root / "summary.json", result.summary_json())
    run.folder.push()
    logger.info("dataset card: %s (and card.html)", result.paths.card)
    return result


def run_generate(cfg: GenerateConfig) -> GenerateResult:
    """Run (or resume) the whole pipeline. Ray must already be initialised."""
    t0 = time.perf_counter()
    run = InstructionRun(cfg)
    pull_run_folder(run.folder, "output.dir")
    # A run folder of another config is refused first (that needs no cluster), then the preflight
    # runs before anything is written.
    check_run_folder(run.root, run.fingerprint(), cfg.output.overwrite)
    run.engine.preflight("generate", {"output.dir": cfg.output.dir})
    run.prepare_folder()
    run.seeded = run.engine.seeds_applied()
    run.engine.start()
    run.replay()
    if cfg.filters.novelty_actor:
        run.use_novelty_actor()
    generate_tasks(run)
    responses = generate_responses(run) if cfg.responses.enabled else None
    return write_outputs(run, responses, time.perf_counter() - t0)
