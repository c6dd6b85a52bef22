"""Free-form evaluation: answers from the model under test, pairwise verdicts, statistics, report.

Flow (each step streams through the engine seam, :meth:`medforge.engines.engine.Engine.chat`,
over Ray Data; vLLM actors, an OpenAI-compatible endpoint or the scripted engine for either side):

1. load and check the test set and references (all problems at once, before any engine starts);
2. answers: cached ones are reused, the rest generated (greedy by default) and cached as they arrive;
3. verdicts: for every (item, reference, order) a judge request; cached ones are reused, the rest
   judged and cached as they arrive, so a killed or repeated run never pays twice;
4. per-item verdict records (``verdicts.jsonl``), statistics per reference, report files.

Quarantine, never silent loss: an answer the engine failed to produce is left out (counted, with
its reason); an empty answer loses without a judge call (counted); an answer cut at the length
limit is judged and counted; a verdict that cannot be parsed, or a judge call that failed, is
counted as ``unparsed`` with the judge's words in ``verdicts.jsonl``.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.config.base import ConfigError
from medforge.engines.engine import Engine, engine_for
from medforge.evaluate import judge as J
from medforge.evaluate.cache import CallCache, cache_key, messages_hash
from medforge.evaluate.config import EvaluateConfig
from medforge.evaluate.data import load_items, reference_names
from medforge.evaluate.refscores import embed_texts, reference_scores
from medforge.evaluate.report import write_freeform_report
from medforge.evaluate.stats import summarize
from medforge.io import atomic_write_jsonl, clear_output_folder, read_jsonl
from medforge.results import JobResult, ResultModel
from medforge.run_folder import RunFolder, pull_run_folder
from medforge.runtime import init_ray
from medforge.finetune.prompts import alpaca_prompt, chat_messages

logger = logging.getLogger(__name__)


def answer_request(item: dict[str, Any], prompt_format: str, system_prompt: str | None) -> dict[str, Any]:
    """The request columns for one item: ``messages`` (always) and ``prompt`` (alpaca format)."""
    row = {"instruction": item["instruction"], "input": item["input"]}
    req: dict[str, Any] = {"messages": chat_messages(row, system_prompt)}
    if prompt_format == "alpaca":
        req["prompt"] = alpaca_prompt(row)
    return req


def _run_engine(cfg: EvaluateConfig, rows: list[dict[str, Any]], engine: Engine, sampling: Any, json_schema: dict | None, on_row) -> None:
    """Send ``rows`` (with ``messages``, ``request_seed``) through the engine; ``on_row`` per result, as it streams.

    Ray is joined (or started) here, when there is a call to make: a run whose calls are all
    cached needs no cluster.
    """
    if not rows:
        return
    import ray.data

    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // 16, 64)))
    for out in engine.chat(ds, sampling, json_schema).iter_rows():
        on_row(out)


def _model_engine(cfg: EvaluateConfig) -> Engine:
    engine = engine_for(cfg.engine)
    # The Alpaca prompt is the whole input: no chat template on top of it.
    return engine.for_raw_prompt() if cfg.answers.prompt_format == "alpaca" else engine


def _structured(cfg: EvaluateConfig) -> bool:
    return engine_for(cfg.judge.engine).structured(cfg.judge.structured_output)


def get_answers(cfg: EvaluateConfig, items: list[dict[str, Any]], cache: CallCache) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """``{item id: answer record}`` and call counts; answers come from the cache, a file, or the engine."""
    m = cfg.answers
    counts = {"requested": len(items), "cached": 0, "generated": 0}
    if m.path is not None:
        answers = {}
        for rec in read_jsonl(m.path):
            if rec.get("id") is not None:
                text = rec.get("output") if rec.get("output") is not None else rec.get("answer")
                answers[str(rec["id"])] = {"answer": str(text or ""), "num_generated_tokens": 0, "engine_error": "", "cached": False}
        return answers, counts
    sampling_id = m.sampling.model_dump()
    keys, todo = {}, []
    for i, it in enumerate(items):
        req = answer_request(it, m.prompt_format, m.system_prompt)
        key = cache_key("answer", it["id"], engine_for(cfg.engine).identity, m.prompt_format, sampling_id, messages_hash(req["messages"]), req.get("prompt"))
        keys[it["id"]] = key
        if key not in cache:
            todo.append({"id": it["id"], "key": key, "request_seed": m.sampling.seed + i, **req})
    counts["cached"] = len(items) - len(todo)
    logger.info("answers: %d cached, %d to generate", counts["cached"], len(todo))

    def keep(row: dict[str, Any]) -> None:
        rec = {"id": row["id"], "answer": row["generated_text"], "num_generated_tokens": int(row["num_generated_tokens"]),
               "engine_error": row["engine_error"]}
        if not rec["engine_error"]:  # a failed call is retried next run, not cached
            cache.put(row["key"], rec)
        else:
            failed[row["id"]] = rec
        counts["generated"] += 1

    failed: dict[str, dict[str, Any]] = {}
    _run_engine(cfg, todo, _model_engine(cfg), m.sampling, None, keep)
    fresh = {r["id"] for r in todo}
    answers = {}
    for it in items:
        rec = cache.get(keys[it["id"]]) or failed.get(it["id"])
        if rec is not None:
            answers[it["id"]] = {k: v for k, v in rec.items() if k != "key"} | {"cached": it["id"] not in fresh}
    return answers, counts


def plan_judgements(cfg: EvaluateConfig, items: list[dict[str, Any]], answers: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One record per (item, reference, order) to judge, and the quarantine counts.

    Records of items whose answer is missing or failed are not made (counted); an empty answer
    gets its outcome (loss) here, without a judge request.
    """
    structured = _structured(cfg)
    judge_id = engine_for(cfg.judge.engine).identity + ":" + J.prompt_hash()
    max_tokens = cfg.answers.sampling.max_tokens
    quarantine: dict[str, Any] = {"missing_answer": [], "answer_error": [], "empty_answer": [], "truncated_answer": [],
                                  "missing_reference": {}}
    plan = []
    refs = reference_names(items)
    for it in items:
        ans = answers.get(it["id"])
        if ans is None:
            quarantine["missing_answer"].append(it["id"])
            continue
        if ans["engine_error"]:
            quarantine["answer_error"].append({"id": it["id"], "reason": ans["engine_error"][:300]})
            continue
        text = ans["answer"]
        empty = not text.strip()
        if empty:
            quarantine["empty_answer"].append(it["id"])
        if cfg.engine is not None and ans["num_generated_tokens"] >= max_tokens:
            quarantine["truncated_answer"].append(it["id"])
        for ref in refs:
            if ref not in it["references"]:
                quarantine["missing_reference"].setdefault(ref, []).append(it["id"])
                continue
            reference = it["references"][ref]
            for order in J.ORDERS:
                a, b = J.outputs_for_order(order, text, reference)
                msgs = J.judge_messages(it["instruction"], it["input"], a, b, structured)
                rec = {"id": it["id"], "reference": ref, "order": order, "difficulty": it["difficulty"],
                       "model_length": len(text), "reference_length": len(reference), "prompt_hash": J.prompt_hash(),
                       "key": cache_key("verdict", it["id"], ref, order, judge_id, messages_hash(msgs))}
                if empty:
                    rec.update({"verdict": None, "outcome": "loss", "reason": "empty model answer: a loss without a judge call",
                                "judge_reply": "", "cached": False})
                else:
                    rec["messages"] = msgs
                plan.append(rec)
    return plan, quarantine


def judge_all(cfg: EvaluateConfig, plan: list[dict[str, Any]], cache: CallCache) -> dict[str, int]:
    """Fill ``verdict``/``outcome``/``reason``/``judge_reply`` of every planned record (cache first)."""
    todo = []
    calls = {"requested": 0, "cached": 0, "made": 0, "errors": 0}
    for i, rec in enumerate(plan):
        if "messages" not in rec:
            continue
        calls["requested"] += 1
        hit = cache.get(rec["key"])
        if hit is not None:
            calls["cached"] += 1
            _apply(rec, hit["judge_reply"], "", cached=True, finish_reason=hit.get("finish_reason", ""))
        else:
            todo.append({"key": rec["key"], "messages": rec["messages"], "request_seed": cfg.judge.sampling.seed + i})
    logger.info("judge: %d verdicts cached, %d to request", calls["cached"], len(todo))
    by_key: dict[str, list[dict[str, Any]]] = {}
    for rec in plan:
        by_key.setdefault(rec["key"], []).append(rec)

    def keep(row: dict[str, Any]) -> None:
        calls["made"] += 1
        if row["engine_error"]:
            calls["errors"] += 1
        else:
            cache.put(row["key"], {"judge_reply": row["generated_text"], "finish_reason": row.get("finish_reason", "")})
        for rec in by_key[row["key"]]:
            _apply(rec, row["generated_text"], row["engine_error"], cached=False, finish_reason=row.get("finish_reason", ""))

    _run_engine(cfg, todo, engine_for(cfg.judge.engine), cfg.judge.sampling, J.VERDICT_SCHEMA if _structured(cfg) else None, keep)
    for rec in plan:
        rec.pop("messages", None)
        if "outcome" not in rec:  # a request the engine never answered
            _apply(rec, "", "no reply from the judge engine", cached=False)
    return calls


def _apply(rec: dict[str, Any], reply: str, error: str, cached: bool, finish_reason: str = "") -> None:
    if error:
        verdict, reason = None, f"judge call failed: {error[:300]}"
    else:
        verdict, reason = J.parse_verdict(reply, finish_reason)
    rec.update({"verdict": verdict, "outcome": J.model_outcome(rec["order"], verdict), "reason": reason,
                "judge_reply": reply, "cached": cached})


def item_records(plan: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    """Per-item records of one reference (the input of :func:`medforge.evaluate.stats.summarize`)."""
    items: dict[str, dict[str, Any]] = {}
    for rec in plan:
        if rec["reference"] != ref:
            continue
        it = items.setdefault(rec["id"], {"id": rec["id"], "difficulty": rec["difficulty"], "outcomes": {}, "verdicts": {},
                                          "model_length": rec["model_length"], "reference_length": rec["reference_length"]})
        it["outcomes"][rec["order"]] = rec["outcome"]
        it["verdicts"][rec["order"]] = rec["verdict"]
    return list(items.values())


class JudgeCalls(ResultModel):
    requested: int = Field(description="Judge calls the plan holds (items x references x 2 orders).")
    cached: int = Field(description="Answered from the cache.")
    made: int = Field(description="Made in this run.")
    errors: int = Field(description="Failed (their verdicts count as unparsed).")


class WinRate(ResultModel):
    win_rate: float | None = Field(description="Share of wins over the reference (ties count half), both orders.")
    ci95: list[float | None] | None = Field(description="Bootstrap 95% interval over items.")
    lc_win_rate: float | None = Field(description="Length-controlled win rate.")
    n_scored: int = Field(description="Items scored.")


class EvaluateResult(JobResult):
    """What ``run_evaluate`` returns. ``report`` is the whole ``report.json`` (not printed)."""

    model: str = Field(description="Label of the model under test.")
    judge: str = Field(description="Label of the judge.")
    n_items: int = Field(description="Test items.")
    judge_calls: JudgeCalls
    references: dict[str, WinRate] = Field(description="Per reference set.")
    report_path: str = Field(description="report.json (report.md / report.html and plots beside it).")
    report: dict[str, Any] = Field(exclude=True, description="The full report, as written to report.json.")


def run_evaluate(cfg: EvaluateConfig) -> EvaluateResult:
    """Run the whole evaluation; returns its result (the report is written to ``output.dir``)."""
    t0 = time.perf_counter()
    items = load_items(cfg.data.test_path, cfg.data.format, cfg.data.reference_fields, cfg.data.reference_files, cfg.data.max_items)
    if cfg.answers.path is not None and not Path(cfg.answers.path).is_file():
        raise ConfigError("answers", [f"answers.path = {cfg.answers.path!r}: file not found; fix: point it at a JSONL of id/output"])
    emb = cfg.reference_scores.embedding_model
    if emb and not (Path(emb) / "config.json").is_file():
        raise ConfigError("reference_scores", [f"reference_scores.embedding_model = {emb!r}: not a Hugging Face model folder "
                                               "(no config.json); fix: medforge make-small-models builds all-MiniLM-L6-v2, "
                                               "or set it to null"])
    _check_endpoints(cfg)
    folder = RunFolder(cfg.output.dir, cfg.output.staging_dir)  # a URI: a staging copy, pushed after each pass
    pull_run_folder(folder, "output.dir")
    out = folder.local
    if cfg.output.overwrite:
        clear_output_folder(out)  # a URI: the next push deletes there what was deleted here
    cache_dir = Path(cfg.output.cache_dir) if cfg.output.cache_dir else out / "cache"
    answers_cache, verdict_cache = CallCache(cache_dir / "answers.jsonl"), CallCache(cache_dir / "verdicts.jsonl")
    try:
        t1 = time.perf_counter()
        answers, answer_calls = get_answers(cfg, items, answers_cache)
        folder.push()
        t2 = time.perf_counter()
        plan, quarantine = plan_judgements(cfg, items, answers)
        judge_calls = judge_all(cfg, plan, verdict_cache)
        t3 = time.perf_counter()
    finally:
        answers_cache.close()
        verdict_cache.close()
        folder.push()  # the calls paid for so far reach the URI even when a pass failed
    atomic_write_jsonl(out / "answers.jsonl", [{"id": it["id"], "instruction": it["instruction"], "input": it["input"],
                                                **{k: v for k, v in answers.get(it["id"], {}).items() if k != "cached"}}
                                               for it in items])
    atomic_write_jsonl(out / "verdicts.jsonl", [{k: v for k, v in r.items() if k != "key"} for r in plan])
    references = {ref: summarize(item_records(plan, ref), cfg.stats.n_boot, cfg.stats.seed, cfg.stats.lc_l2,
                                 cfg.stats.thresholds())
                  for ref in reference_names(items)}
    t4 = time.perf_counter()
    for ref, block in references.items():
        block["missing_reference"] = len(quarantine["missing_reference"].get(ref, []))
        block["reference_scores"] = reference_based_scores(cfg, items, answers, plan, ref)
    report = {
        "model": cfg.label,
        "judge": cfg.judge.label,
        "judge_prompt_hash": J.prompt_hash(),
        "structured_output": _structured(cfg),
        "test_path": cfg.data.test_path,
        "format": cfg.data.format,
        "n_items": len(items),
        "answers": {**answer_calls, "missing": len(quarantine["missing_answer"]), "errors": len(quarantine["answer_error"]),
                    "empty": len(quarantine["empty_answer"]), "truncated": len(quarantine["truncated_answer"]),
                    "max_tokens": cfg.answers.sampling.max_tokens},
        "judge_calls": judge_calls,
        "references": references,
        "quarantine": quarantine,
        "seconds": {"answers": round(t2 - t1, 3), "judge": round(t3 - t2, 3),
                    "reference_scores": round(time.perf_counter() - t4, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    write_freeform_report(report, out)
    folder.push()
    return EvaluateResult(
        output_dir=cfg.output.dir, model=report["model"], judge=report["judge"], n_items=report["n_items"],
        judge_calls=JudgeCalls(**judge_calls),
        references={ref: WinRate(**{k: r[k] for k in WinRate.model_fields}) for ref, r in references.items()},
        report_path=folder.home(out / "report.json"), report=report)


def reference_based_scores(cfg: EvaluateConfig, items: list[dict[str, Any]], answers: dict[str, dict[str, Any]],
                           plan: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """ROUGE-L and embedding similarity against ``ref``, over the items the judge saw for it (same ids)."""
    judged = {r["id"] for r in plan if r["reference"] == ref}
    kept = [it for it in items if it["id"] in judged]
    rs = cfg.reference_scores
    embed = partial(embed_texts, rs.embedding_model, max_length=rs.max_length) if rs.embedding_model else None
    block = reference_scores([(answers[it["id"]]["answer"], it["references"][ref]) for it in kept], cfg.stats.n_boot,
                             cfg.stats.seed, rs.rouge_l, embed)
    block["ids"] = [it["id"] for it in kept]
    if rs.embedding_model:
        block["embedding_model"] = rs.embedding_model
    return block


def _check_endpoints(cfg: EvaluateConfig) -> None:
    for engine in (cfg.engine, cfg.judge.engine):
        if engine is None:  # answers.path: nothing to reach
            continue
        try:
            engine_for(engine).check_endpoint()
        except (ConnectionError, PermissionError) as exc:
            raise ConfigError("endpoints", [str(exc)]) from None
