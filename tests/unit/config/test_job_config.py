"""The common job-config base: shared keys declared once, and old keys moved to new ones for one release."""

import json
import logging
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from medforge.config.base import ConfigError, JobConfig, OutputBase, load_config, move_renamed_keys
from medforge.contexts.config import ContextsConfig
from medforge.generate.config import GenerateConfig
from medforge.evaluate.config import EvaluateConfig, EvaluateMCConfig
from medforge.pipeline.config import PipelineConfig
from medforge.finetune.config import FinetuneConfig, FinetuneMCConfig

REPO = Path(__file__).resolve().parents[3]
JOBS = (GenerateConfig, ContextsConfig, FinetuneConfig, FinetuneMCConfig, EvaluateConfig, EvaluateMCConfig,
        PipelineConfig)


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.__name__)
def test_every_job_declares_ray_and_output_through_the_base(job):
    assert issubclass(job, JobConfig)
    fields = job.model_fields
    for name in ("ray_address", "ray_num_cpus", "ray_object_store_mib", "output"):
        assert name in fields, name
    output = fields["output"].annotation
    assert issubclass(output, OutputBase) and {"dir", "overwrite"} <= set(output.model_fields)
    # no job keeps a second key for its folder
    assert not {"output_dir", "run_dir"} & set(fields)
    assert "export_dir" not in output.model_fields


def test_a_job_may_narrow_a_base_field(tmp_path):
    cfg = load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml", [f"output.dir={tmp_path}"])
    assert cfg.ray_num_cpus == 8
    with pytest.raises(ConfigError, match="ray_num_cpus"):
        load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml", [f"output.dir={tmp_path}", "ray_num_cpus=2"])
    ctx = ContextsConfig.model_validate({"engine": {"kind": "scripted"}, "input": {"path": "q.jsonl"},
                                           "output": {"dir": str(tmp_path)}})
    assert ctx.ray_object_store_mib == 256
    gen = GenerateConfig.model_validate({"engine": {"kind": "scripted"}, "output": {"dir": str(tmp_path)}})
    assert gen.ray_object_store_mib is None and gen.ray_num_cpus is None


def _old_style(tmp_path: Path, rel: str, old_key: str) -> Path:
    """A shipped config rewritten with its output folder under ``old_key`` (as configs read before this release)."""
    data = yaml.safe_load((REPO / rel).read_text())
    folder = data["output"].pop("dir")
    if not data["output"]:
        del data["output"]
    node = data
    parts = old_key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = folder
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("job,rel,old_key", [
    (FinetuneConfig, "configs/finetune/local_tiny.yaml", "output.export_dir"),
    (FinetuneMCConfig, "configs/finetune_mc/local_tiny.yaml", "output_dir"),
    (EvaluateMCConfig, "configs/evaluate_mc/local_tiny.yaml", "output_dir"),
    (PipelineConfig, "configs/pipeline/local_tiny.yaml", "run_dir"),
])
def test_an_old_output_key_still_works_and_warns_naming_the_new_one(tmp_path, caplog, job, rel, old_key):
    new = load_config(job, REPO / rel)
    with caplog.at_level(logging.WARNING, logger="medforge.config.base"):
        old = load_config(job, _old_style(tmp_path, rel, old_key))
    assert old.output.dir == new.output.dir
    assert old.model_dump() == new.model_dump()
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warned) == 1 and old_key in warned[0] and "use output.dir" in warned[0]

    # given twice, it is refused: which one is meant is not clear
    with pytest.raises(ConfigError, match=f"{old_key} and output.dir are both set.*keep output.dir only"):
        load_config(job, _with_both(tmp_path, rel, old_key))


def _with_both(tmp_path: Path, rel: str, old_key: str) -> Path:
    data = yaml.safe_load(_old_style(tmp_path, rel, old_key).read_text())
    data.setdefault("output", {})["dir"] = "/elsewhere"
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_old_override_applies_over_a_file_written_with_the_new_key(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="medforge.config.base"):
        cfg = load_config(FinetuneMCConfig, REPO / "configs/finetune_mc/local_tiny.yaml", [f"output_dir={tmp_path / 'o'}"])
    assert cfg.output.dir == str(tmp_path / "o")
    assert any("output_dir is deprecated" in r.getMessage() for r in caplog.records)


def test_both_keys_in_a_dict_are_a_validation_error():
    with pytest.raises(ValidationError, match="output_dir and output.dir are both set"):
        EvaluateMCConfig.model_validate({"few_shot_runs": ["r"], "output_dir": "a", "output": {"dir": "b"}})


def test_move_renamed_keys_moves_sections_and_drops_emptied_parents(caplog):
    data = {"model": {"engine": {"kind": "vllm"}}, "output": {"export_dir": "e"}, "keep": 1}
    with caplog.at_level(logging.WARNING, logger="medforge.config.base"):
        moved = move_renamed_keys(data, {"model.engine": "engine", "output.export_dir": "output.dir", "absent": "x"}, "Job")
    assert moved == {"engine": {"kind": "vllm"}, "output": {"dir": "e"}, "keep": 1}
    assert data == {"model": {"engine": {"kind": "vllm"}}, "output": {"export_dir": "e"}, "keep": 1}  # input untouched
    assert len([r for r in caplog.records if "deprecated" in r.getMessage()]) == 2


def test_the_pipeline_moves_a_stage_old_key_before_it_checks_the_wiring(tmp_path):
    # finetune.output.* is set by the pipeline: the old key is refused as the new one would be
    with pytest.raises(ConfigError, match=r"finetune.output.dir = '/mine': set by the pipeline"):
        load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml",
                    [f"output.dir={tmp_path}", "finetune.output.export_dir=/mine"])


def test_output_overwrite_of_the_pipeline_is_force_new(tmp_path):
    from medforge.pipeline.runner import open_run_dir

    cfg = load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml", [f"output.dir={tmp_path / 'run'}"])
    open_run_dir(cfg, force_new=False)
    (tmp_path / "run" / "left-over").write_text("x")
    other = load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml",
                        [f"output.dir={tmp_path / 'run'}", "name=another", "output.overwrite=true"])
    open_run_dir(other, force_new=False)
    assert not (tmp_path / "run" / "left-over").exists()
    assert json.loads((tmp_path / "run" / "pipeline.json").read_text())["name"] == "another"


SCRIPTED = {"kind": "scripted"}


@pytest.mark.parametrize("job,extra", [
    (GenerateConfig, {}),
    (ContextsConfig, {"input": {"path": "q.jsonl"}}),
])
def test_the_old_teacher_section_is_the_engine(tmp_path, caplog, job, extra):
    with caplog.at_level(logging.WARNING, logger="medforge.config.base"):
        old = job.model_validate({"teacher": {**SCRIPTED, "model": "t"}, "output": {"dir": str(tmp_path)}, **extra})
    assert old.engine.model == "t" and "teacher" not in job.model_fields
    assert any("teacher is deprecated" in r.getMessage() and "use engine" in r.getMessage() for r in caplog.records)


def test_evaluate_model_section_moves_to_engine_and_answers(tmp_path, caplog):
    old = {"model": {"name": "mine", "engine": {**SCRIPTED, "model": "m"}, "prompt_format": "alpaca",
                     "system_prompt": None, "sampling": {"max_tokens": 7}},
           "judge": {"engine": SCRIPTED}, "data": {"test_path": "t.jsonl"}, "output": {"dir": str(tmp_path)}}
    with caplog.at_level(logging.WARNING, logger="medforge.config.base"):
        cfg = EvaluateConfig.model_validate(old)
    assert (cfg.engine.model, cfg.answers.label, cfg.answers.prompt_format, cfg.answers.sampling.max_tokens) == \
        ("m", "mine", "alpaca", 7)
    assert cfg.label == "mine" and "model" not in EvaluateConfig.model_fields
    warned = {r.getMessage().split("config key ")[1].split(" ")[0] for r in caplog.records if "deprecated" in r.getMessage()}
    assert warned == {"model.name", "model.engine", "model.prompt_format", "model.system_prompt", "model.sampling"}
    given = EvaluateConfig.model_validate({**old, "model": {"answers_path": "a.jsonl"}})
    assert given.engine is None and given.answers.path == "a.jsonl" and given.label == "a"
    with pytest.raises(ValidationError, match="exactly one of engine .* or answers.path"):
        EvaluateConfig.model_validate({**old, "model": {"answers_path": "a.jsonl", "engine": SCRIPTED}})


def test_the_pipeline_reads_its_stages_old_engine_keys(tmp_path):
    cfg = load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml",
                      [f"output.dir={tmp_path}", "generate.teacher.model=other", "evaluate.model.sampling.max_tokens=9"])
    assert cfg.generate.engine.model == "other" and cfg.evaluate.answers.sampling.max_tokens == 9
    with pytest.raises(ConfigError, match=r"evaluate.engine = .*set by the pipeline"):
        load_config(PipelineConfig, REPO / "configs/pipeline/local_tiny.yaml",
                    [f"output.dir={tmp_path}", "evaluate.model.engine.model=mine"])
