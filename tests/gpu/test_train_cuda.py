"""Issue 5's training checks on CUDA with bf16 (skipped without a GPU; see conftest.py).

One worker per GPU, up to 2. Same tiny models and synthetic data as the CPU tier.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforge.io import atomic_write_jsonl
from medforge.finetune.config import FinetuneMCConfig
from medforge.finetune.synthetic import instruction_rows, write_mc_splits
from trainutils import history, llm_cfg


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_sft") / "medinstruct.jsonl"
    atomic_write_jsonl(path, instruction_rows(64, seed=0, median_words=12))
    return path


def _gpu_cfg(tmp_path, tiny_models, sft_data, workers, **over):
    return llm_cfg(tmp_path, tiny_models["llama"], sft_data,
                   **{"scaling.use_gpu": True, "scaling.num_workers": workers, "scaling.cpus_per_worker": 1, **over})


@pytest.mark.parametrize("stage", [2, 3])
def test_gpu_sft_bf16_loss_down_params_changed_bf16_export(tmp_path, tiny_models, gpu_ray_cluster, sft_data, stage):
    from safetensors.torch import load_file

    from medforge.finetune.llm import run_finetune

    workers = min(2, gpu_ray_cluster)
    cfg = _gpu_cfg(tmp_path, tiny_models, sft_data, workers, **{"deepspeed.zero_stage": stage, "optim.max_steps": 8})
    summary = run_finetune(cfg)
    hist = history(cfg.output.dir)
    losses = [h["train_loss"] for h in hist if "train_loss" in h]
    assert summary.step == 8 and losses[-1] < losses[0] - 0.1, losses
    import torch

    from medforge.finetune.common import peak_flops

    if peak_flops(torch.cuda.get_device_name()) is not None:  # MFU needs the card's known peak
        assert all(h.get("mfu", 0) > 0 for h in hist if "train_loss" in h)
    before = load_file(str(tiny_models["llama"] / "model.safetensors"))
    after = load_file(str(Path(cfg.output.dir) / "model.safetensors"))
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    changed = [k for k in before if not torch.equal(before[k].to(torch.bfloat16), after[k])]
    assert len(changed) > len(before) // 2


@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_gpu_packed_loss_equals_padded_loss_bf16(tiny_models, attn):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medforge.finetune.packing import collate_packed, collate_padded, pack_greedy
    from medforge.finetune.prompts import tokenize_example

    if attn == "flash_attention_2":
        pytest.importorskip("flash_attn", reason="flash-attn is not installed")
    path = tiny_models["llama"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation=attn).cuda().eval()
    exs = [tokenize_example(r, tok, "alpaca", 256, "truncate")[0] for r in instruction_rows(8, seed=3, median_words=10)]
    packs = pack_greedy(exs, 512)
    assert any(len(p) > 1 for p in packs)
    padded = {k: v.cuda() for k, v in collate_padded(exs, tok.pad_token_id).items() if hasattr(v, "cuda")}
    packed = {k: v.cuda() for k, v in collate_packed(packs, tok.pad_token_id).items() if hasattr(v, "cuda")}
    with torch.no_grad():
        loss_pad = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], labels=padded["labels"], use_cache=False).loss
        loss_pack = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], labels=packed["labels"], use_cache=False).loss
    assert torch.allclose(loss_pad.float(), loss_pack.float(), atol=2e-2), (loss_pad, loss_pack)  # bf16 tolerance


def test_gpu_packed_lora_zero2_then_resume(tmp_path, tiny_models, gpu_ray_cluster, sft_data):
    from medforge.finetune.llm import run_finetune

    over = {"deepspeed.zero_stage": 2, "data.packing": True, "lora.enabled": True, "lora.r": 4, "lora.alpha": 8,
            "lora.target_modules": ["q_proj", "v_proj"], "optim.max_steps": 2, "checkpoint.every_steps": 2,
            "data.eval_fraction": 0.0}
    workers = min(2, gpu_ray_cluster)
    assert run_finetune(_gpu_cfg(tmp_path, tiny_models, sft_data, workers, **over)).step == 2
    cfg2 = _gpu_cfg(tmp_path, tiny_models, sft_data, workers, **{**over, "optim.max_steps": 4, "output.overwrite": True})
    assert run_finetune(cfg2).step == 4
    hist = history(cfg2.output.dir)
    assert [h["step"] for h in hist if "train_loss" in h] == [1, 2, 3, 4]
    assert [h["step"] for h in hist if h.get("resumed_from_checkpoint")] == [2]


def test_gpu_slm_context_beats_chance(tmp_path, tiny_models, gpu_ray_cluster):
    from medforge.finetune.slm import run_finetune_mc

    write_mc_splits(tmp_path)
    cfg = FinetuneMCConfig.model_validate({
        "model": str(tiny_models["bert"]),
        "data": {"train_path": str(tmp_path / "train.jsonl"), "dev_path": str(tmp_path / "dev.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl"), "use_context": True, "max_length": 48},
        "optim": {"lr": 1e-3, "epochs": 3, "micro_batch_size": 8, "warmup_ratio": 0.1},
        "seeds": [0], "patience": 2,
        "scaling": {"num_workers": min(2, gpu_ray_cluster), "use_gpu": True, "cpus_per_worker": 1},
        "checkpoint": {"storage_path": str(tmp_path / "ckpt"), "name": "mc-gpu", "max_failures": 0},
        "output_dir": str(tmp_path / "out"),
    })
    result = run_finetune_mc(cfg)
    assert result.mean_accuracy >= 0.8, result
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["mean_accuracy"] == result.mean_accuracy


def test_gpu_export_loads_in_vllm_and_generates(tmp_path, tiny_models, gpu_ray_cluster, sft_data):
    """A bf16 export from a GPU run loads in (GPU) vLLM. Skipped where vllm is not installed."""
    pytest.importorskip("vllm")
    import subprocess
    import sys
    import textwrap

    from medforge.finetune.llm import run_finetune

    cfg = _gpu_cfg(tmp_path, tiny_models, sft_data, 1, **{"deepspeed.zero_stage": 2, "optim.max_steps": 2})
    run_finetune(cfg)
    script = tmp_path / "gen.py"
    script.write_text(textwrap.dedent(f"""
        if __name__ == "__main__":
            from vllm import LLM, SamplingParams
            llm = LLM({cfg.output.dir!r}, enforce_eager=True, gpu_memory_utilization=0.3, max_model_len=512)
            out = llm.generate(["### Instruction:\\nExplain fever."], SamplingParams(max_tokens=8, ignore_eos=True))
            print("GENERATED", len(out[0].outputs[0].token_ids))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert "GENERATED 8" in proc.stdout, proc.stderr[-3000:]
