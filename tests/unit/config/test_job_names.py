"""One name per job: CLI subcommand, ray_jobs/ script, configs/ folder, package, config class,
run function and pipeline stage agree (medforge.config.registry.JOBS); the pre-0.2 names still
work, each with a deprecation message that names the new one; the docs use only the new names.

This file names the old names on purpose (medforge-old-names)."""

from __future__ import annotations

import ast
import importlib
import logging
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from medforge import cli
from medforge.config.base import load_config
from medforge.config.registry import (
    JOBS,
    OLD_COMMANDS,
    OLD_CONFIG_PATHS,
    OLD_SCRIPTS,
    config_model_for,
    renamed_config_path,
    resolve_config_path,
)
from medforge.pipeline.config import STAGES

REPO = Path(__file__).resolve().parents[3]
MARK = "medforge-old-names"


def _camel(name: str) -> str:
    return "".join(part.upper() if part == "mc" else part.capitalize() for part in name.split("-"))


def _attr(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.name)
def test_each_job_has_one_name_everywhere(job):
    snake = job.name.replace("-", "_")
    assert cli.COMMANDS[job.name][0] == job.cli
    assert callable(_attr(job.cli))
    script = REPO / job.script
    assert script.is_file(), f"{job.script} missing"
    # the script is the CLI's own entry point: it imports the module the subcommand runs
    cli_module = job.cli.split(":")[0]
    imported = {n.module for n in ast.walk(ast.parse(script.read_text())) if isinstance(n, ast.ImportFrom)}
    assert cli_module in imported or job.cli.split(":")[0].rsplit(".", 1)[0] in imported, (job.script, imported)
    folder = REPO / job.configs
    assert sorted(folder.glob("*.yaml")), f"{job.configs} holds no config"
    assert job.package == "medforge." + job.name.split("-")[0]
    for ref in (job.run, job.cli) + ((job.config,) if job.config else ()):
        assert ref.startswith(job.package + "."), (job.name, ref)
    run = _attr(job.run)
    assert run.__name__ == f"run_{snake}"
    if job.config:
        assert _attr(job.config).__name__ == f"{_camel(job.name)}Config"
        for path in folder.glob("*.yaml"):
            assert config_model_for(path) is _attr(job.config), path
    assert job.stage == (job.name in STAGES)


def test_the_pipeline_stages_are_the_jobs_in_order():
    assert list(STAGES) == [j.name for j in JOBS if j.stage]


def test_every_configs_folder_belongs_to_a_job():
    folders = {p.name for p in (REPO / "configs").iterdir() if p.is_dir()}
    assert folders == {j.configs.split("/")[1] for j in JOBS}


@pytest.mark.parametrize("old", sorted(OLD_COMMANDS))
def test_old_subcommands_work_and_name_the_new_one(old, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([old, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr()
    assert f"medforge {old} is deprecated" in out.err and f"use medforge {OLD_COMMANDS[old]}" in out.err
    assert f"medforge {OLD_COMMANDS[old]}" in out.out  # the new job's own help


@pytest.mark.parametrize("old", sorted(OLD_SCRIPTS))
def test_old_scripts_run_the_job_and_name_the_new_script(old, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [old, "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / old), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr()
    assert f"use {OLD_SCRIPTS[old]}" in out.err
    assert f"usage: {OLD_SCRIPTS[old]}" in out.out


def test_old_config_paths_resolve_to_the_new_files_with_a_warning(caplog):
    olds = ["configs/finetune/llm_local_tiny.yaml", "configs/finetune/slm_local_tiny.yaml",
            "configs/evaluate/mc_local_tiny.yaml", "serving/local_tiny.yaml"]
    assert all(any(o.startswith(prefix) for o in olds) for prefix in OLD_CONFIG_PATHS)  # every old prefix is tried
    for old in olds:
        with caplog.at_level(logging.WARNING, logger="medforge.config.registry"):
            caplog.clear()
            new = resolve_config_path(REPO / old)
        assert new.is_file() and new != REPO / old, old
        assert f"use {new}" in caplog.text and "deprecated" in caplog.text
    # a new path is left alone, silently; so is a path that was never a config
    assert resolve_config_path(REPO / "configs/finetune/local_tiny.yaml") == REPO / "configs/finetune/local_tiny.yaml"
    assert renamed_config_path("runs/serving/x.yaml") == Path("runs/configs/serve/x.yaml")
    assert renamed_config_path("myserving/x.yaml") is None
    assert renamed_config_path("configs/generate/local_tiny.yaml") is None


def test_load_config_reads_an_old_config_path(tiny_models, monkeypatch, caplog):
    from medforge.evaluate.config import EvaluateMCConfig

    with caplog.at_level(logging.WARNING):
        cfg = load_config(EvaluateMCConfig, REPO / "configs/evaluate/mc_local_tiny.yaml")
    assert cfg.models and "configs/evaluate_mc/local_tiny.yaml" in caplog.text


# pre-0.2 names that must not come back outside the files that keep them on purpose
OLD_NAME_PATTERNS = [
    r"\bmedforge\.(datagen|eval|train)\b", r"\bsrc/medforge/(datagen|eval|train)/",
    r"\b(InstructionJobConfig|ContextJobConfig|LLMFinetuneConfig|SLMFinetuneConfig|EvalConfig|MCEvalConfig)\b",
    r"\b(run_instruction_synthesis|run_context_generation|run_llm_finetune|run_slm_finetune|run_serve_file)\b",
    *(rf"medforge {re.escape(o)}\b" for o in OLD_COMMANDS),
    *(re.escape(o) for o in OLD_SCRIPTS),
    *(rf"(?<![\w/]){re.escape(o)}" for o in OLD_CONFIG_PATHS),
]


def test_no_old_name_left_in_code_docs_or_configs():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for rel in files:
        p = REPO / rel
        if p.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", "") or not p.is_file():
            continue
        if rel == "tests/unit/config/test_job_names.py":
            continue
        text = p.read_text(errors="ignore")
        if MARK in text:
            continue
        for pattern in OLD_NAME_PATTERNS:
            for m in re.finditer(pattern, text):
                found.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert not found, "old job names (use the new ones, medforge.config.registry):\n" + "\n".join(found[:40])
