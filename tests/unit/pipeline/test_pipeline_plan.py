"""Pipeline config and plan: wiring fields, cross-stage refusals, fingerprints that follow the right changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforge.config.base import ConfigError, load_config
from medforge.pipeline.config import PipelineConfig
from medforge.pipeline.plan import make_plan, wiring_problems
from medforge.pipeline.runner import PipelineRefused, open_run_dir, select_stages
from medforge.secrets import KeySource

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "pipeline"


@pytest.fixture
def test_set(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    rows = [{"instruction": f"Explain condition {i}.", "input": "", "reference": f"Condition {i} is ..."} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _load(tmp_path, test_set, *overrides, config="local_tiny.yaml"):
    return load_config(PipelineConfig, CONFIGS / config, [
        f"output.dir={tmp_path / 'run'}", f"evaluate.data.test_path={test_set}", "evaluate.data.format=generic",
        "evaluate.data.reference_fields=[reference]", *overrides])


def test_shipped_configs_validate_and_fit_their_stages(tmp_path, test_set):
    for path in sorted(CONFIGS.glob("*.yaml")):
        extra = ["generate.seeds.path=null"] if path.name == "cluster.yaml" else []  # /mnt/shared is the cluster's
        if path.name == "local_small.yaml":  # .small_models is built by the set-up, not in a test checkout
            extra.append("evaluate.reference_scores.embedding_model=null")
        cfg = load_config(PipelineConfig, path, [f"evaluate.data.test_path={test_set}", *extra])
        problems = [p for p in wiring_problems(cfg) if "file not found" not in p]  # data lives on the cluster
        assert problems == [], (path.name, problems)


def test_a_wiring_field_set_by_the_user_is_refused_with_the_reason(tmp_path, test_set):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, test_set, "generate.output.dir=/elsewhere", "finetune.data.path=/x.jsonl", "finetune.ray_num_cpus=4")
    text = str(err.value)
    assert "generate.output.dir = '/elsewhere': set by the pipeline" in text
    assert "finetune.data.path = '/x.jsonl': set by the pipeline" in text
    assert "finetune.ray_num_cpus" in text and "top level" in text


def test_stages_that_do_not_fit_are_refused_naming_both_sides(tmp_path, test_set):
    with pytest.raises(ConfigError, match="prompt_format=alpaca needs engine.kind=vllm"):
        _load(tmp_path, test_set, "evaluate.answers.prompt_format=alpaca")  # the endpoint the pipeline evaluates through
    cfg = _load(tmp_path, test_set, "finetune.data.format=alpaca",
                "serve.llm.max_lora_rank=4", "generate.responses.enabled=false")
    problems = wiring_problems(cfg)
    joined = "\n".join(problems)
    assert "finetune.data.format = 'alpaca' with finetune.lora.enabled = true" in joined
    assert "serve.llm.max_lora_rank = 4 < finetune.lora.r = 8" in joined
    assert "generate.responses.enabled = false" in joined and "finetune trains on the answers" in joined
    prompt = wiring_problems(_load(tmp_path, test_set, "evaluate.answers.system_prompt=Be brief."))
    assert len(prompt) == 1 and "evaluate.answers.system_prompt = 'Be brief.' but finetune.data.system_prompt = None" in prompt[0]
    missing = wiring_problems(_load(tmp_path, test_set, f"evaluate.data.test_path={tmp_path / 'nope.jsonl'}"))
    assert len(missing) == 1 and "nope.jsonl" in missing[0] and "file not found" in missing[0]
    full = wiring_problems(_load(tmp_path, test_set, "finetune.lora.enabled=false"))
    assert any("evaluate.judge.engine = served" in p for p in full)


def test_fingerprints_change_with_the_stage_and_everything_downstream_only(tmp_path, test_set):
    base = make_plan(_load(tmp_path, test_set))
    fps = {n: s.fingerprint for n, s in base.stages.items()}
    assert make_plan(_load(tmp_path, test_set)).stages["serve"].fingerprint == fps["serve"]  # deterministic

    lr = make_plan(_load(tmp_path, test_set, "finetune.optim.lr=5e-3")).stages
    assert lr["generate"].fingerprint == fps["generate"]
    assert all(lr[n].fingerprint != fps[n] for n in ("finetune", "evaluate", "serve"))

    judge = make_plan(_load(tmp_path, test_set, "evaluate.judge.sampling.max_tokens=20")).stages
    assert [n for n in fps if judge[n].fingerprint != fps[n]] == ["evaluate"]

    teacher = make_plan(_load(tmp_path, test_set, "generate.budget.target_tasks=9")).stages
    assert all(teacher[n].fingerprint != fps[n] for n in fps)

    # where and how fast it runs is not what it makes
    runtime = make_plan(_load(tmp_path, test_set, "ray_num_cpus=16", "serve.keep_serving=true")).stages
    assert {n: s.fingerprint for n, s in runtime.items()} == fps

    # the test set's content, not only its path
    test_set.write_text(test_set.read_text().replace("Condition 0", "Condition zero"))
    assert make_plan(_load(tmp_path, test_set)).stages["evaluate"].fingerprint != fps["evaluate"]


def test_plan_wires_each_output_into_the_next_stage(tmp_path, test_set):
    plan = make_plan(_load(tmp_path, test_set))
    gen, ft = plan.stages["generate"].folder, plan.stages["finetune"].folder
    assert plan.generate.output.dir == str(gen) and plan.generate.output.overwrite is False
    assert plan.finetune.data.path == str(gen / "dataset" / "medinstruct.jsonl")
    assert plan.finetune.checkpoint.storage_path == str(ft / "checkpoints")
    args = plan.serve_args(KeySource(env="K"))
    assert args["engine"]["model"] == plan.finetune.model
    assert args["adapters"] == {"tiny-llama-tuned": str(ft / "model" / "lora_adapter")}
    tuned, base = plan.eval_config("tuned", KeySource(env="K")), plan.eval_config("base", KeySource(env="K"))
    assert (tuned.engine.model, base.engine.model) == ("tiny-llama-tuned", "tiny-llama")
    assert tuned.judge.engine == base.judge.engine and tuned.judge.engine.model == "tiny-llama"
    assert tuned.data == base.data and tuned.output.dir != base.output.dir


def test_run_folder_of_another_pipeline_is_refused_unless_force_new(tmp_path, test_set):
    cfg = _load(tmp_path, test_set)
    open_run_dir(cfg, force_new=False)
    (Path(cfg.output.dir) / "generate").mkdir()
    other = cfg.model_copy(update={"name": "another-experiment"})
    with pytest.raises(PipelineRefused, match="holds the run of pipeline 'alpacare-local-tiny'.*--force-new"):
        open_run_dir(other, force_new=False)
    open_run_dir(other, force_new=True)
    assert not (Path(cfg.output.dir) / "generate").exists()
    assert json.loads((Path(cfg.output.dir) / "pipeline.json").read_text())["name"] == "another-experiment"


def test_stage_selection():
    assert select_stages(None, None) == ["generate", "finetune", "evaluate", "serve"]
    assert select_stages("evaluate", None) == ["evaluate", "serve"]
    assert select_stages(None, "finetune") == ["finetune"]
    with pytest.raises(PipelineRefused):
        select_stages("generate", "serve")


def test_a_stage_asked_for_without_its_upstream_output_is_refused_before_anything_starts(tmp_path, test_set):
    from medforge.pipeline.runner import PipelineRun

    plan = make_plan(_load(tmp_path, test_set))
    for selected in (["serve"], ["evaluate", "serve"], ["finetune"]):
        run = PipelineRun(plan, selected)
        with pytest.raises(PipelineRefused, match="needs the output of stage (finetune|generate) for this config"):
            run.check_upstream(run.to_run())
    assert PipelineRun(plan, ["generate"]).to_run() == ["generate"]
    # a finished stage is not run again, a live endpoint always is
    (plan.stages["generate"].folder).mkdir(parents=True)
    from medforge.pipeline.records import write_record

    write_record(plan.stages["generate"].folder, {"fingerprint": plan.stages["generate"].fingerprint, "outputs": {}})
    assert PipelineRun(plan, ["generate", "finetune"]).to_run() == ["finetune"]
    assert PipelineRun(plan, ["generate"], rerun=True).to_run() == ["generate"]
    live = make_plan(_load(tmp_path, test_set, "serve.keep_serving=true"))
    assert "serve" in PipelineRun(live, ["serve"]).to_run()


def test_a_missing_embedding_model_is_a_wiring_problem(tmp_path, test_set):
    cfg = _load(tmp_path, test_set, f"evaluate.reference_scores.embedding_model={tmp_path / 'nope'}")
    assert any("evaluate.reference_scores.embedding_model" in p and "make-small-models" in p for p in wiring_problems(cfg))
