"""The four stages. Each calls the library function of its own job and returns what it produced.

A stage's return value is stored in its ``stage.json`` and is all later stages (and the
lineage) know of it, so it holds paths and fingerprints, never objects.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from medforge.generate.pipeline import InstructionRun, run_generate
from medforge.evaluate.freeform import run_evaluate as evaluate
from medforge.evaluate.refscores import NOTE as REFSCORES_NOTE
from medforge.evaluate.stats import reliability_line
from medforge.io import atomic_write_text, read_jsonl
from medforge.pipeline.config import PipelineConfig
from medforge.pipeline.errors import PipelineIncomplete
from medforge.pipeline.plan import Plan
from medforge.pipeline.records import SHORT, file_sha256
from medforge.secrets import KeySource
from medforge.finetune.llm import run_finetune

logger = logging.getLogger(__name__)


class StageHost(Protocol):
    """What a stage needs of the run that calls it (``runner.PipelineRun`` is the one there is)."""

    plan: Plan
    cfg: PipelineConfig
    records: dict[str, dict[str, Any] | None]

    def ensure_ray(self) -> None: ...

    def ensure_serving(self) -> None: ...

    def ensure_key(self) -> KeySource: ...


def generate_stage(run: StageHost) -> dict[str, Any]:
    """Tasks, novelty filter and responses (``medforge generate``), resumed in its folder."""
    cfg = run.plan.generate
    run.ensure_ray()
    result = run_generate(cfg)
    if result.incomplete:
        raise PipelineIncomplete(f"generate: {result.incomplete}")
    dataset = Path(result.paths.jsonl)
    if not result.dataset_rows:
        raise PipelineIncomplete(f"generate wrote no dataset rows ({result.rejected} rejected, see "
                                 f"{result.paths.quarantine}); fix: raise generate.budget.target_tasks or "
                                 "max_rounds, or check the teacher")
    return {"dataset": str(dataset), "data_sha256": file_sha256(dataset), "rows": result.dataset_rows,
            "accepted_tasks": result.accepted_tasks, "rejected": result.rejected,
            "responses_failed": result.responses_failed,
            "responses_failed_by_reason": result.responses_failed_by_reason,
            "card": result.paths.card,
            "seeds_sha256": InstructionRun(cfg).fingerprint()["seeds_sha256"]}


def finetune_stage(run: StageHost) -> dict[str, Any]:
    """LoRA or full fine-tune (``medforge finetune``); a killed run resumes from its latest checkpoint."""
    cfg = run.plan.finetune
    run.ensure_ray()
    result = run_finetune(cfg)
    export = Path(cfg.output.dir)
    history = export / "training_logs" / "history.json"
    resumed = history.is_file() and any(h.get("resumed_from_checkpoint") for h in json.loads(history.read_text()))
    return {"export_dir": str(export), "adapter_dir": str(run.plan.adapter_dir) if run.plan.lora else None,
            "base_model": cfg.model, "data_sha256": file_sha256(cfg.data.path),
            "first_train_loss": result.first_train_loss, "train_loss": result.train_loss,
            "eval_loss": result.eval_loss, "steps": result.step, "resumed_from_checkpoint": resumed}


def evaluate_stage(run: StageHost) -> dict[str, Any]:
    """The tuned model and its base model, same references, same judge (``medforge evaluate``), via the endpoint.

    The two evaluations run at the same time, each in its own thread: their Ray Data passes
    (answers, then verdicts) overlap, so the endpoint batches both models' requests together and
    the client actors start side by side instead of one after another.
    """
    run.ensure_serving()
    key = run.ensure_key()
    ft = run.records["finetune"]["outputs"]
    data_fp = run.records["generate"]["outputs"]["data_sha256"] if run.records.get("generate") else ft.get("data_sha256")
    ft_fp = run.records["finetune"]["fingerprint"]

    def one(which: str) -> dict[str, Any]:
        cfg = run.plan.eval_config(which, key)
        label = f"{which} model {cfg.engine.model} (finetune {ft_fp[:SHORT]}, data {str(data_fp)[:SHORT]})"
        cfg = cfg.model_copy(update={"answers": cfg.answers.model_copy(update={"label": label})})
        result = evaluate(cfg)
        scored = {"model": cfg.engine.model, "which": which, "base_model": ft["base_model"],
                  "export_dir": ft["export_dir"] if which == "tuned" else None, "finetune_fingerprint": ft_fp,
                  "data_fingerprint": data_fp, "test_set": cfg.data.test_path}
        path = Path(cfg.output.dir) / "report.json"
        full = json.loads(path.read_text())
        full["scored"] = scored
        atomic_write_text(path, json.dumps(full, indent=2, default=str))
        return model_entry(result.report, path)

    with ThreadPoolExecutor(2, thread_name_prefix="evaluate") as pool:
        futures = {which: pool.submit(one, which) for which in ("tuned", "base")}
        models = {which: f.result() for which, f in futures.items()}
    same = identical_answers(Path(models["tuned"]["report"]).parent / "answers.jsonl",
                             Path(models["base"]["report"]).parent / "answers.jsonl")
    atomic_write_text(run.plan.stages["evaluate"].folder / "comparison.md", comparison_markdown(models, same))
    return {"models": models, "comparison": str(run.plan.stages["evaluate"].folder / "comparison.md"),
            "judge_usable": judge_usable(models), "identical_answers": same}


def identical_answers(tuned: Path, base: Path) -> dict[str, int]:
    """``{"identical", "items"}``: on how many items tuned and base wrote the very same answer."""
    a = {r["id"]: r.get("answer") for r in read_jsonl(tuned)}
    b = {r["id"]: r.get("answer") for r in read_jsonl(base)}
    both = [i for i in a if i in b]
    return {"identical": sum(a[i] == b[i] for i in both), "items": len(both)}


def model_entry(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the pipeline keeps of one evaluation report (in stage.json, the lineage and the summary)."""
    refs = report["references"]
    return {"report": str(path), "report_html": str(path.parent / "report.html"),
            "plots": report.get("plots", []), "judge": report["judge"], "n_items": report["n_items"],
            "judge_reliability": {ref: r.get("judge_reliability") for ref, r in refs.items()},
            "win_rates": {ref: {k: r[k] for k in ("win_rate", "ci95", "n_scored")} for ref, r in refs.items()},
            "reference_scores": {ref: {k: ({kk: vv for kk, vv in v.items() if kk != "per_item"} if isinstance(v, dict) else v)
                                       for k, v in (r.get("reference_scores") or {}).items() if k != "ids"}
                                 for ref, r in refs.items()}}


def judge_usable(models: dict[str, Any]) -> dict[str, bool]:
    """Per reference: whether the judge was usable on every model's evaluation (the condition to call a winner)."""
    refs = sorted({ref for m in models.values() for ref in m["win_rates"]})
    return {ref: all((m.get("judge_reliability") or {}).get(ref, {}) and m["judge_reliability"][ref]["usable"]
                     for m in models.values()) for ref in refs}


def _ci_text(x: float | None, ci: list[float | None] | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    if x is None or ci is None or any(c is None for c in ci):
        return "n/a"
    return f"{scale * x:{fmt}} [{scale * ci[0]:{fmt}}, {scale * ci[1]:{fmt}}]"


def _apart(a: list[float], b: list[float]) -> bool:
    return a[0] > b[1] or b[0] > a[1]


def comparison_markdown(models: dict[str, Any], same: dict[str, int] | None = None) -> str:
    """Tuned vs base, per reference: the judge's reliability first, then the win rates; a winner is
    named only when the judge is usable on both and the CIs do not overlap. Reference-based scores after."""
    refs = sorted({ref for m in models.values() for ref in m["win_rates"]})
    usable = judge_usable(models)
    lines = ["# Tuned vs base", "",
             "Per reference: whether the judge can be trusted here (order consistency, position bias, unparsed share; "
             "thresholds in docs/evaluation.md), then the win rate (%) against the reference, judged in both orders, "
             "with its 95% bootstrap CI.", ""]
    if same and same["items"]:
        lines += [f"Tuned and base wrote the very same answer on {same['identical']} of {same['items']} items"
                  + (" (the fine-tune changed too little to alter greedy decoding there)." if same["identical"] else "."), ""]
    for ref in refs:
        lines += [f"## {ref}", ""]
        for which, m in models.items():
            rel = (m.get("judge_reliability") or {}).get(ref)
            lines.append(f"- judge on {which}: " + (reliability_line(rel) if rel else "no reliability measured"))
        cells = {which: m["win_rates"].get(ref) for which, m in models.items()}
        if not usable[ref]:
            lines += ["", "**No winner is called: the judge is not usable here.** The win rates below are shown for the "
                          "record, not as a result.", ""]
        else:
            wr = [c for c in cells.values() if c and c["win_rate"] is not None]
            if len(wr) == len(cells) == 2:
                (na, a), (nb, b) = [(w, c) for w, c in cells.items()]
                if _apart(a["ci95"], b["ci95"]):
                    best = na if a["win_rate"] > b["win_rate"] else nb
                    lines += ["", f"**{best} is ahead**: the two 95% CIs do not overlap.", ""]
                else:
                    lines += ["", "**No clear winner**: the two 95% CIs overlap.", ""]
            else:
                lines.append("")
        lines += ["| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        lines.append("| win rate % [95% CI] | " + " | ".join(
            "n/a" if not c or c["win_rate"] is None else f"{_ci_text(c['win_rate'], c['ci95'])} (n={c['n_scored']})"
            for c in cells.values()) + " |")
        rs = {which: (m.get("reference_scores") or {}).get(ref) or {} for which, m in models.items()}
        for key, label in (("rouge_l", "ROUGE-L F1"), ("embedding_cosine", "embedding cosine")):
            if any(key in r for r in rs.values()):
                lines.append(f"| {label} [95% CI] (reference-based) | " + " | ".join(
                    _ci_text(r[key]["mean"], r[key]["ci95"], 1.0, ".3f") if key in r else "n/a" for r in rs.values()) + " |")
        lines.append("")
    if any((m.get("reference_scores") or {}) for m in models.values()):
        lines.append(f"Reference-based scores: {REFSCORES_NOTE}. They need no judge, so they are the signal to read when the "
                     "judge is not usable; a higher score means closer to the reference's words (ROUGE-L) or meaning "
                     "(embedding), not a better answer.")
    return "\n".join(lines) + "\n"


def serve_stage(run: StageHost) -> dict[str, Any]:
    """Serve the tuned model (Ray Serve LLM) and ask it one question through the official ``openai`` client."""
    from openai import OpenAI

    run.ensure_serving()
    sv = run.cfg.serve
    source = run.ensure_key()
    key = source.read()
    client = OpenAI(base_url=sv.base_url, api_key=key, max_retries=2, timeout=300)
    reply = client.chat.completions.create(model=sv.tuned_id, temperature=0.0, max_tokens=96,
                                           messages=[{"role": "user", "content": sv.smoke_question}])
    answer = reply.choices[0].message.content or ""
    medqa = None
    if sv.medqa is not None:
        import httpx

        url = sv.base_url.removesuffix("/v1") + "/v1/medqa"
        auth = {"Authorization": f"Bearer {key}"}
        r = httpx.post(url, json={**sv.smoke_mc, "return_context": True}, headers=auth, timeout=300)
        # the same question in SLM-only mode: what the scorer answers when nothing leaves the site
        alone = httpx.post(url, json={**sv.smoke_mc, "slm_only": True}, headers=auth, timeout=300)
        # a context the small model could not write is a 502 with its reason: recorded, not fatal
        medqa = {"url": url, "question": sv.smoke_mc, "status": r.status_code, "reply": r.json(),
                 "slm_only": {"status": alone.status_code, "reply": alone.json()}}
    return {"base_url": sv.base_url, "models": run.plan.served_ids, "keep_serving": sv.keep_serving,
            "smoke": {"model": sv.tuned_id, "question": sv.smoke_question, "answer": answer}, "medqa": medqa,
            "api_key_env": source.env, "how_to_query": how_to_query(sv.base_url, sv.tuned_id, source.env)}


def how_to_query(base_url: str, model: str, key_env: str) -> str:
    return (f"curl {base_url}/chat/completions -H \"Authorization: Bearer ${key_env}\" -H 'Content-Type: application/json' "
            f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"What is hypertension?\"}}]}}'")


def dataset_preview(path: str, n: int) -> list[dict[str, Any]]:
    rows = []
    for row in read_jsonl(path):
        rows.append(row)
        if len(rows) >= n:
            break
    return rows
