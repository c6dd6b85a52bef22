"""The cluster configs chain: each stage reads exactly what the stage before it writes.

generate -> finetune (data.path) -> evaluate (model) and configs/serve/cluster.yaml / the RayService (llm
model, adapters); contexts -> attach-contexts -> finetune-mc (data) -> /v1/medqa (mc_model). Paths are
computed with the library's own output-path functions (what the jobs write), never re-derived here.
The RayJobs' entrypoints and the documented commands' overrides are applied as a user runs them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from doccmds import doc_commands, find_command

from medforge.config.base import _deep_merge, load_config, parse_overrides
from medforge.config.registry import config_model_for
from medforge.generate.pipeline import dataset_paths
from medforge.serve.config import LLMServeConfig
from medforge.serve.qa import QAServeConfig
from medforge.finetune.llm import export_paths
from medforge.finetune.slm import mc_export_dir

REPO = Path(__file__).resolve().parents[3]
GENERATE = "configs/generate/cluster_llama3_70b.yaml"
CONTEXTS = "configs/contexts/cluster_llama3_70b.yaml"
FINETUNE = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs/finetune").glob("cluster_*.yaml"))
FINETUNE_MC = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs/finetune_mc").glob("cluster_*.yaml"))
EVALUATE = "configs/evaluate/cluster.yaml"


@pytest.fixture(autouse=True)
def _cluster_paths_are_not_here(monkeypatch):
    """Model folders and seed files of a cluster config live on its shared mount; validate everything else."""
    import medforge.engines.config

    monkeypatch.setattr(medforge.engines.config, "_looks_like_local_path", lambda model: False)


def _load(rel: str, overrides: list[str] = ()):
    overrides = list(overrides)
    if "/generate/" in rel:
        overrides.append("seeds.path=null")  # the seed file is on the cluster's mount, and no stage reads it after
    return load_config(config_model_for(REPO / rel), REPO / rel, overrides)


def _serve_apps(data: dict) -> dict[str, object]:
    models = {"medforge.serve.llm:app_builder": LLMServeConfig, "medforge.serve.qa:app_builder": QAServeConfig}
    return {a["name"]: models[a["import_path"]].model_validate(a["args"]) for a in data["applications"]}


def _serving_files() -> list[tuple[str, dict]]:
    rs = yaml.safe_load((REPO / "deploy/kuberay/rayservice.yaml").read_text())
    return [("configs/serve/cluster.yaml", yaml.safe_load((REPO / "configs/serve/cluster.yaml").read_text())),
            ("deploy/kuberay/rayservice.yaml", yaml.safe_load(rs["spec"]["serveConfigV2"]))]


def _rayjob(name: str) -> tuple[str, list[str]]:
    """The config and overrides a RayJob's entrypoint runs."""
    rj = yaml.safe_load((REPO / "deploy/kuberay" / name).read_text())
    argv = shlex.split(rj["spec"]["entrypoint"])
    config = argv[argv.index("--config") + 1].removeprefix("/home/ray/medforge/")
    return config, [a for a in argv[argv.index("--config") + 2:] if "=" in a]


def test_there_is_one_cluster_config_per_stage():
    assert FINETUNE and FINETUNE_MC
    for rel in (GENERATE, CONTEXTS, EVALUATE, *FINETUNE, *FINETUNE_MC):
        assert (REPO / rel).is_file(), rel


def test_finetune_reads_what_generation_writes():
    written = set(dataset_paths(_load(GENERATE).output.dir).values())
    for rel in FINETUNE:
        ft = _load(rel)
        assert ft.data.path in written, f"{rel}: data.path={ft.data.path!r}; generation writes {sorted(written)}"


def test_evaluate_and_serving_load_what_the_finetune_exports():
    exports = [export_paths(_load(rel)) for rel in FINETUNE]
    models = {e["model"] for e in exports}
    adapters = {e["adapter"] for e in exports if e["adapter"]}
    ev = _load(EVALUATE)
    assert ev.engine.model in models, f"{EVALUATE}: engine.model={ev.engine.model!r}; exports {models}"
    for name, data in _serving_files():
        llm = _serve_apps(data)["llm"]
        lora_bases = {_load(rel).model for rel in FINETUNE if export_paths(_load(rel))["adapter"]}
        assert llm.engine.model in models | lora_bases, f"{name}: llm.engine.model={llm.engine.model!r}; exports {models}"
        for adapter, path in llm.adapters.items():
            assert path in adapters, f"{name}: adapter {adapter}={path!r} is no cluster fine-tune's export ({adapters})"


def test_medqa_serves_what_the_mc_finetune_exports_and_that_reads_the_attached_contexts():
    exports = {mc_export_dir(_load(rel)) for rel in FINETUNE_MC}
    for name, data in _serving_files():
        qa = _serve_apps(data)["medqa"]
        assert qa.mc_model in exports, f"{name}: medqa.mc_model={qa.mc_model!r}; finetune-mc exports {exports}"
    # contexts -> attach-contexts (the documented command in the MC config's header) -> finetune-mc's data
    cmds = doc_commands(REPO)
    contexts_dir = _load(CONTEXTS).output.dir
    for rel in FINETUNE_MC:
        slm = _load(rel)
        attach = find_command([c for c in cmds if c.path == rel], "attach-contexts")
        argv = attach.argv
        assert argv[argv.index("--contexts") + 1] == contexts_dir, f"{attach.where()}: --contexts is not {contexts_dir}"
        assert argv[argv.index("--output") + 1] == slm.data.train_path, f"{attach.where()}: --output is not data.train_path"


@pytest.mark.parametrize("rayjob,config", [
    ("rayjob-generate.yaml", GENERATE), ("rayjob-contexts.yaml", CONTEXTS),
    ("rayjob-finetune.yaml", None), ("rayjob-finetune-mc.yaml", None), ("rayjob-evaluate.yaml", EVALUATE),
])
def test_the_rayjobs_run_the_chained_configs_unchanged(rayjob, config):
    ran, overrides = _rayjob(rayjob)
    expected = {config} if config else set(FINETUNE if rayjob == "rayjob-finetune.yaml" else FINETUNE_MC)
    assert ran in expected and not overrides, f"{rayjob} runs {ran} {overrides}; the chain is {expected}"


def test_the_documented_cluster_commands_keep_the_chain():
    cmds = [c for c in doc_commands(REPO) if c.path == "docs/cluster.md"]

    def overrides(cmd):
        return [a for a in cmd.argv[cmd.argv.index("--config") + 2:] if "=" in a]

    # the whole path: the fine-tune's overrides leave the export where evaluate and serve read it
    ft_cmd = find_command(cmds, "finetune.py", "checkpoint.storage_path=")
    ft = _load(FINETUNE[0], overrides(ft_cmd))
    assert export_paths(ft)["model"] == _load(EVALUATE).engine.model, ft_cmd.where()
    # the bucket variant: generation's run folder in the bucket is the fine-tune's data
    gen_cmd = find_command(cmds, "generate.py", "output.dir=s3://")
    data_cmd = find_command(cmds, "finetune.py", "data.path=s3://")
    written = dataset_paths(_load(GENERATE, overrides(gen_cmd)).output.dir).values()
    assert _load(FINETUNE[0], overrides(data_cmd)).data.path in written, data_cmd.where()


def test_a_broken_link_is_caught():
    ft = _load(FINETUNE[0], ["output.dir=/mnt/shared/models/elsewhere"])
    assert export_paths(ft)["model"] != _load(EVALUATE).engine.model
    data = yaml.safe_load((REPO / "configs/serve/cluster.yaml").read_text())
    data = _deep_merge(data, {})  # plain copy
    data["applications"][0]["args"] = _deep_merge(data["applications"][0]["args"], parse_overrides(
        ["engine.model=/mnt/shared/runs/never_written/model"]))
    assert _serve_apps(data)["llm"].engine.model not in {export_paths(_load(r))["model"] for r in FINETUNE}


def test_output_path_functions_match_what_the_jobs_write():
    from medforge.generate.pipeline import DATASET_DIR, DATASET_FILES
    from medforge.finetune.llm import ADAPTER_DIR

    assert dataset_paths("s3://b/run/") == {"jsonl": f"s3://b/run/{DATASET_DIR}/{DATASET_FILES['jsonl']}",
                                            "parquet": f"s3://b/run/{DATASET_DIR}/{DATASET_FILES['parquet']}"}
    lora = _load(FINETUNE[0], ["lora.enabled=true", "output.dir=/mnt/shared/models/x"])
    assert export_paths(lora) == {"model": "/mnt/shared/models/x", "adapter": f"/mnt/shared/models/x/{ADAPTER_DIR}"}
    assert mc_export_dir(_load(FINETUNE_MC[0], ["output.dir=/mnt/shared/runs/mc"])) == "/mnt/shared/runs/mc/model"
