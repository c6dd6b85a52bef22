"""Run the stages in order in one Ray cluster, skipping the ones whose output is already there.

Engines start as few times as the stages allow: one Ray cluster for everything, and one Serve
LLM engine (base model + the tuned LoRA adapter) that answers for the tuned model and the base
model in evaluation, judges them when ``evaluate.judge.engine: served``, and is the endpoint
the serve stage leaves up. Nothing starts at all when every stage is cached.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.cards.model import update_with_lineage
from medforge.config.base import ConfigError
from medforge.io import atomic_write_text
from medforge.pipeline import stages as S
from medforge.pipeline.config import STAGES, PipelineConfig
from medforge.pipeline.errors import PipelineIncomplete, PipelineRefused
from medforge.pipeline.plan import Plan, make_plan, wiring_problems
from medforge.pipeline.records import SHORT, code_version, now, read_record, write_record
from medforge.results import JobResult, ResultModel
from medforge.runtime import init_ray
from medforge.secrets import KeySource, read_key_file, write_new_key_file
from medforge.serve.cli import run_serve, without_ingress_drain

logger = logging.getLogger(__name__)

PIPELINE_RECORD = "pipeline.json"
DEFAULT_KEY_ENV = "MEDFORGE_API_KEYS"
GENERATED_KEY_FILE = "secrets/endpoint_key"  # under output.dir: the key a local run makes when it is given none

__all__ = ["PipelineIncomplete", "PipelineRefused", "PipelineResult", "PipelineRun", "endpoint_key", "open_run_dir",
           "select_stages"]


class StageSummary(ResultModel):
    status: str | None = Field(description="ran, resumed, cached, not selected (None: not reached).")
    fingerprint: str = Field(description="The stage's fingerprint (short).")
    seconds: float | None = Field(description="Time the stage took in this run (0 when it did not run).")
    folder: str = Field(description="The stage's folder.")


class PipelineResult(JobResult):
    """What ``PipelineRun.run`` returns (and writes to ``<output.dir>/summary.json``)."""

    pipeline: str = Field(description="The experiment's name.")
    seconds: float = Field(description="Wall time of this run.")
    stages: dict[str, StageSummary] = Field(description="Per stage, in order.")
    lineage: str = Field(description="lineage.json.")
    dataset_card: str | None = Field(description="The generated dataset's card.")
    model_card: str | None = Field(description="The tuned model's card.")
    judge_usable: dict[str, bool] | None = Field(description="Per reference: whether the judge passed its reliability checks.")
    win_rates: dict[str, Any] = Field(description="Per model (tuned, base): win rates per reference, with CIs.")


def select_stages(from_stage: str | None, only: str | None) -> list[str]:
    if from_stage and only:
        raise PipelineRefused("give --from or --only, not both")
    for given in (from_stage, only):
        if given is not None and given not in STAGES:
            raise PipelineRefused(f"unknown stage {given!r}; one of {', '.join(STAGES)}")
    if only:
        return [only]
    return list(STAGES[STAGES.index(from_stage):]) if from_stage else list(STAGES)


def open_run_dir(cfg: PipelineConfig, force_new: bool) -> None:
    """Create the run folder, or check it holds this experiment (``name``); ``force_new`` empties it."""
    root = Path(cfg.output.dir)
    force_new = force_new or cfg.output.overwrite
    rec_path = root / PIPELINE_RECORD
    if rec_path.is_file():
        old = json.loads(rec_path.read_text())
        if old.get("name") != cfg.name:
            if not force_new:
                raise PipelineRefused(
                    f"{root} holds the run of pipeline {old.get('name')!r}, not {cfg.name!r}; fix: pick another "
                    "output.dir, or pass --force-new (or output.overwrite=true) to delete that run and start this one there")
    if force_new and root.exists():
        logger.warning("--force-new / output.overwrite: deleting %s", root)
        shutil.rmtree(root)
    elif root.exists() and not rec_path.is_file() and any(root.iterdir()):
        raise PipelineRefused(f"{root} exists and is not a pipeline run folder; fix: pick another output.dir "
                              "(or pass --force-new to delete it)")
    root.mkdir(parents=True, exist_ok=True)
    if not rec_path.is_file():
        atomic_write_text(rec_path, json.dumps({"name": cfg.name, "created": now()}, indent=2))


def endpoint_key(cfg: PipelineConfig, environ: Mapping[str, str], on_cluster: bool) -> KeySource:
    """The endpoint's key source, checked before anything starts; nothing is written to ``environ``.

    ``serve.llm.security.auth.api_keys_file`` when set (on a cluster: a file on the shared storage,
    read by every Serve replica and client actor on its own node, so the key never travels in the
    job's runtime_env), else ``$<api_keys_env>`` when it holds one key, else (a local run only) a
    new key in ``<output.dir>/secrets/endpoint_key`` (mode 600), whose path the replicas and clients
    are given instead."""
    auth = cfg.serve.llm.security.auth
    env = auth.api_keys_env or DEFAULT_KEY_ENV
    if auth.api_keys_file:
        try:
            keys = read_key_file(auth.api_keys_file)
        except FileNotFoundError as exc:
            raise PipelineRefused(f"serve.llm.security.auth.api_keys_file: {exc}") from None
        if not keys:
            raise PipelineRefused(f"serve.llm.security.auth.api_keys_file = {auth.api_keys_file!r} holds no key; fix: "
                                  "put one key in it (openssl rand -hex 24 > FILE)")
        return KeySource(env=env, file=auth.api_keys_file)
    value = environ.get(env, "")
    if "," in value:
        raise PipelineRefused(f"${env} holds several keys; the pipeline's own requests use it as one bearer key; "
                              "fix: set it to one key (clients can be given others later)")
    if value:
        return KeySource(env=env)
    if on_cluster:
        raise PipelineRefused(
            f"no key for the endpoint: ${env} is not set and serve.llm.security.auth.api_keys_file names "
            "no key; fix: put one key in a file on the storage every node mounts and name it, e.g. "
            "`openssl rand -hex 24 > /mnt/shared/secrets/medforge_api_keys && chmod 600 "
            "/mnt/shared/secrets/medforge_api_keys` and serve.llm.security.auth.api_keys_file="
            "/mnt/shared/secrets/medforge_api_keys (never in the job's runtime_env: Ray shows it in `ray job list`)")
    path = write_new_key_file(Path(cfg.output.dir).resolve() / GENERATED_KEY_FILE)
    return KeySource(env=env, file=str(path), generated=True)


class PipelineRun:
    def __init__(self, plan: Plan, selected: list[str], rerun: bool = False):
        self.plan = plan
        self.cfg = plan.cfg
        self.selected = selected
        self.rerun = rerun
        self.records: dict[str, dict[str, Any] | None] = {
            name: read_record(sp.folder, sp.fingerprint) for name, sp in plan.stages.items()}
        self.status: dict[str, str] = {}
        self.serving = False
        self.started_ray = False
        self.key: KeySource | None = None  # the endpoint's key source, once ensure_key has resolved it
        # Called once before the endpoint is deployed (e.g. to wait for a model trained beside the first stages).
        self.before_serving: Callable[[], None] | None = None
        # Typical seconds per stage, for the progress lines' estimate (the demo knows its own; none: no estimate).
        self.estimates: dict[str, float] = {}
        self.t_start: float | None = None

    # ------------------------------------------------------------------ what runs
    def to_run(self) -> list[str]:
        out = []
        for name in self.selected:
            keep = name == "serve" and self.cfg.serve.keep_serving  # a live endpoint is never "cached"
            if self.rerun or keep or self.records[name] is None:
                out.append(name)
        return out

    def check_upstream(self, todo: list[str]) -> None:
        """A stage asked for without its upstream's output (``--from``/``--only``) is refused up front."""
        needs = {"finetune": ["generate"], "evaluate": ["finetune"], "serve": ["finetune"]}
        for name in todo:
            for up in needs.get(name, []):
                if up not in self.selected and self.records[up] is None:
                    sp = self.plan.stages[up]
                    raise PipelineRefused(
                        f"stage {name} needs the output of stage {up} for this config (fingerprint "
                        f"{sp.fingerprint[:SHORT]}, {sp.folder}), which is not there; fix: run without --from/--only, "
                        f"or with --from {up}")

    # ------------------------------------------------------------------ shared resources
    def ensure_key(self) -> KeySource:
        """Where the key the endpoint accepts and the pipeline's own requests carry is (see :func:`endpoint_key`)."""
        if self.key is None:
            on_cluster = bool(self.cfg.ray_address or os.environ.get("RAY_ADDRESS"))
            self.key = endpoint_key(self.cfg, os.environ, on_cluster)
        return self.key

    def ensure_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            self.started_ray = not (self.cfg.ray_address or os.environ.get("RAY_ADDRESS"))
            init_ray(self.cfg.ray_address, self.cfg.ray_num_cpus, self.cfg.ray_object_store_mib)

    def ensure_serving(self) -> None:
        """Deploy the LLM app (base + tuned adapter, or the merged model) once, and wait until it answers."""
        if self.serving:
            return
        key = self.ensure_key()
        self.ensure_ray()
        if self.before_serving is not None:
            hook, self.before_serving = self.before_serving, None
            hook()
        sv = self.cfg.serve
        data = {"proxy_location": "HeadOnly", "http_options": {"host": sv.host, "port": sv.port},
                "applications": self.plan.serve_apps(key)}
        if not sv.keep_serving:  # this run shuts its endpoint down itself: no load balancer to drain for
            data = without_ingress_drain(data)
        t0 = time.perf_counter()
        _progress(f"starting the endpoint at {sv.base_url} (models {', '.join(self.plan.served_ids.values())})")
        run_serve(data, self.cfg.ray_address, self.cfg.ray_num_cpus, blocking=False)
        self.serving = True
        wait_for_models(sv.base_url, key.read(), list(self.plan.served_ids.values()))
        _progress(f"endpoint up in {time.perf_counter() - t0:.0f} s")

    def stop_serving(self) -> None:
        if self.serving:
            from ray import serve

            serve.shutdown()
            self.serving = False

    # ------------------------------------------------------------------ run
    def run(self) -> PipelineResult:
        todo = self.to_run()
        self.check_upstream(todo)
        if any(s in todo for s in ("evaluate", "serve")):
            self.ensure_key()
        runners = {"generate": S.generate_stage, "finetune": S.finetune_stage, "evaluate": S.evaluate_stage, "serve": S.serve_stage}
        t_all = self.t_start if self.t_start is not None else time.perf_counter()
        try:
            for i, name in enumerate(STAGES, 1):
                sp = self.plan.stages[name]
                head = f"[{i}/{len(STAGES)}] {name} ({sp.fingerprint[:SHORT]})"
                if name not in self.selected:
                    self.status[name] = "not selected"
                    continue
                if name not in todo:
                    self.status[name] = "cached"
                    _progress(f"{head}: cached, skipped ({sp.folder})")
                    continue
                if self.rerun and sp.folder.exists():
                    shutil.rmtree(sp.folder)
                resuming = sp.folder.exists() and any(sp.folder.iterdir())
                _progress(f"{head}: {'resuming' if resuming else 'running'} in {sp.folder}"
                          + stage_clock(time.perf_counter() - t_all, self.estimates.get(name),
                                        sum(self.estimates.get(n, 0.0) for n in todo[todo.index(name):])))
                sp.folder.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                outputs = runners[name](self)
                record = {"stage": name, "fingerprint": sp.fingerprint, "upstream": sp.upstream, "config": sp.config,
                          "outputs": outputs, "seconds": round(time.perf_counter() - t0, 1), "finished_at": now(),
                          "resumed": resuming}
                write_record(sp.folder, record)
                self.records[name] = record
                self.status[name] = "resumed" if resuming else "ran"
                _progress(f"{head}: done in {record['seconds']:.0f} s (elapsed {time.perf_counter() - t_all:.0f} s)")
                if name == "generate" and outputs.get("card"):
                    _progress(f"dataset card: {outputs['card']} (and card.html beside it)")
        finally:
            if not (self.serving and self.cfg.serve.keep_serving):
                self.stop_serving()
        lineage = write_lineage(self)
        model_card = update_model_card(self, lineage)
        gen_out = (self.records.get("generate") or {}).get("outputs", {})
        if gen_out.get("card"):
            _progress(f"dataset card: {gen_out['card']}")
        if model_card:
            _progress(f"model card: {model_card}")
        result = PipelineResult(
            output_dir=self.cfg.output.dir, pipeline=self.cfg.name, seconds=round(time.perf_counter() - t_all, 1),
            stages={n: StageSummary(
                status=self.status.get(n), fingerprint=self.plan.stages[n].fingerprint[:SHORT],
                seconds=(self.records[n] or {}).get("seconds") if self.status.get(n) in ("ran", "resumed") else 0.0,
                folder=str(self.plan.stages[n].folder)) for n in STAGES},
            lineage=str(Path(self.cfg.output.dir) / "lineage.json"),
            dataset_card=gen_out.get("card"), model_card=str(model_card) if model_card else None,
            # the judge's verdict comes before the win rates it qualifies
            judge_usable=((self.records.get("evaluate") or {}).get("outputs") or {}).get("judge_usable"),
            win_rates=lineage.get("scores", {}))
        atomic_write_text(Path(self.cfg.output.dir) / "summary.json", result.summary_json())
        return result


def run_pipeline(cfg: PipelineConfig, stages: list[str] | None = None, *, rerun: bool = False,
                 force_new: bool = False, source: str = "<config>") -> tuple[PipelineResult, PipelineRun]:
    """Run ``stages`` (default: all) of the pipeline job; returns its result and the run.

    Raises:
        ConfigError: a stage section that the wiring cannot use (nothing has run).
        PipelineRefused: the run folder holds another pipeline, or the stages asked for do not fit.
        PipelineIncomplete: a stage left work to do (rerun to go on).
    """
    problems = wiring_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    plan = make_plan(cfg)
    open_run_dir(cfg, force_new)
    run = PipelineRun(plan, list(stages or STAGES), rerun=rerun)
    return run.run(), run


def wait_for_models(base_url: str, key: str, model_ids: list[str], timeout_s: float = 600) -> None:
    """Poll ``GET /v1/models`` until every id is listed."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            if r.status_code == 200:
                listed = {m["id"] for m in r.json().get("data", [])}
                if set(model_ids) <= listed:
                    return
                last = f"listed {sorted(listed)}"
            else:
                last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(2)
    raise RuntimeError(f"the endpoint {base_url} did not list {model_ids} within {timeout_s:.0f} s ({last})")


def write_lineage(run: PipelineRun) -> dict[str, Any]:
    """``lineage.json``: for the final model and report, the data, teacher, seed set, stage configs, code."""
    plan, cfg, rec = run.plan, run.cfg, run.records
    gen = (rec.get("generate") or {}).get("outputs", {})
    ft = (rec.get("finetune") or {}).get("outputs", {})
    ev = (rec.get("evaluate") or {}).get("outputs", {})
    sv = (rec.get("serve") or {}).get("outputs", {})
    seeds = cfg.generate.seeds.path
    lineage = {
        "pipeline": cfg.name,
        "written_at": now(),
        "code": code_version(),
        "data": {"fingerprint": gen.get("data_sha256"), "path": gen.get("dataset"), "rows": gen.get("rows"),
                 "teacher": {"kind": cfg.generate.engine.kind, "model": cfg.generate.engine.model},
                 "seed_set": {"path": seeds or "built-in (src/medforge/generate/data)",
                              "sha256": gen.get("seeds_sha256")}},
        "model": {"base_model": cfg.finetune.model, "export_dir": ft.get("export_dir"), "adapter_dir": ft.get("adapter_dir"),
                  "trained_on_data": ft.get("data_sha256"), "finetune_fingerprint": (rec.get("finetune") or {}).get("fingerprint"),
                  "served_as": sv.get("models")},
        "reports": {k: v.get("report") for k, v in ev.get("models", {}).items()},
        "judge_usable": ev.get("judge_usable"),
        "scores": {k: v.get("win_rates") for k, v in ev.get("models", {}).items()},
        "judge_reliability": {k: v.get("judge_reliability") for k, v in ev.get("models", {}).items()},
        "reference_scores": {k: v.get("reference_scores") for k, v in ev.get("models", {}).items()},
        "stages": {n: ({"fingerprint": r["fingerprint"], "upstream": r["upstream"], "folder": str(plan.stages[n].folder),
                        "finished_at": r["finished_at"], "seconds": r["seconds"], "config": r["config"]} if r else None)
                   for n, r in rec.items()},
    }
    atomic_write_text(Path(cfg.output.dir) / "lineage.json", json.dumps(lineage, indent=2, default=str))
    return lineage


def update_model_card(run: PipelineRun, lineage: dict[str, Any]) -> str | None:
    """Add the evaluation results (tuned vs base win rates) to the fine-tune export's model card."""
    export = (lineage.get("model") or {}).get("export_dir")
    scores = lineage.get("scores") or {}
    if not export or "://" in str(export) or not Path(export).is_dir():
        return None
    tuned, base = scores.get("tuned") or {}, scores.get("base") or {}
    evaluation = {ref: {**r, "base_model_win_rate": (base.get(ref) or {}).get("win_rate")} for ref, r in tuned.items()}
    try:
        path = update_with_lineage(export, Path(run.cfg.output.dir) / "lineage.json", evaluation or None)
    except Exception:  # noqa: BLE001 - the card must never fail the run it describes
        logger.exception("could not update the model card in %s", export)
        return None
    return str(path) if path else None


def stage_clock(elapsed: float, estimate: float | None, remaining: float) -> str:
    """`` (elapsed 312 s; this stage ~80 s, all ~150 s left)``: the progress line's clock (no estimate: elapsed only)."""
    if not estimate:
        return f" (elapsed {elapsed:.0f} s)"
    return f" (elapsed {elapsed:.0f} s; this stage usually ~{estimate:.0f} s, about {remaining:.0f} s of stages left)"


def _progress(msg: str) -> None:
    logger.info("pipeline: %s", msg)
    print(f"medforge pipeline: {msg}", flush=True)

