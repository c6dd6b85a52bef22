"""Fast checks of the fine-tuning building blocks (issue 5): no Ray, no model weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforge.config.base import ConfigError, load_config
from medforge.finetune.config import DeepSpeedSection, FinetuneConfig, OptimSection, FinetuneMCConfig
from medforge.finetune.deepspeed_config import build_deepspeed_config, merge_user_deepspeed_config, resolve_deepspeed_config
from medforge.finetune.packing import collate_packed, collate_padded, iter_packed_rows, pack_greedy, packed_position_ids
from medforge.finetune.prompts import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    IGNORE_INDEX,
    alpaca_prompt,
    build_example,
    chat_messages,
    tokenize_example,
)
from medforge.mc.encoding import normalize_row, option_text
from medforge.finetune.slm import few_shot_subset

REPO = Path(__file__).resolve().parents[3]


class CharTok:
    """A character tokenizer with the bits of the HF interface the formatting code uses."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + (ord(c) % 200) for c in text]}

    def apply_chat_template(self, msgs, tokenize=False, add_generation_prompt=False):
        s = "".join(f"<{m['role']}>{m['content']}|" for m in msgs)
        return s + ("<assistant>" if add_generation_prompt else "")


def test_alpaca_prompt_with_and_without_input():
    assert alpaca_prompt({"instruction": "Do X", "input": ""}) == ALPACA_PROMPT_NO_INPUT.format(instruction="Do X")
    assert alpaca_prompt({"instruction": "Do X", "input": "ctx"}) == ALPACA_PROMPT_INPUT.format(instruction="Do X", input="ctx")
    assert "### Input:" not in alpaca_prompt({"instruction": "Do X"})


def test_loss_masked_on_prompt_alpaca():
    tok = CharTok()
    row = {"instruction": "Hi", "input": "", "output": "ok"}
    ex, status = tokenize_example(row, tok, "alpaca", 1024, "truncate")
    prompt_len = 1 + len(alpaca_prompt(row))
    assert status == "ok"
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"][-1] == tok.eos_token_id
    assert ex["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert ex["labels"][prompt_len:] == ex["input_ids"][prompt_len:]
    assert len(ex["labels"]) == prompt_len + 3  # "ok" + eos


def test_loss_masked_on_prompt_chat_with_system():
    tok = CharTok()
    row = {"instruction": "Q", "input": "more", "output": "A"}
    assert chat_messages(row, "sys")[0] == {"role": "system", "content": "sys"}
    assert chat_messages(row)[0]["content"] == "Q\n\nmore"
    ex, _ = tokenize_example(row, tok, "chat", 1024, "truncate", system_prompt="sys")
    targets = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX]
    assert targets == tok("A|")["input_ids"]


def test_overflow_truncate_drop_and_first_label_masked():
    ex, st = build_example([5, 6], [7, 8, 9, 10], 4, "truncate")
    assert st == "truncated" and ex["input_ids"] == [5, 6, 7, 8] and ex["labels"] == [-100, -100, 7, 8]
    assert build_example([5, 6], [7, 8, 9], 4, "drop") == (None, "dropped")
    assert build_example([5, 6, 7, 8], [9], 4, "truncate") == (None, "dropped")  # nothing left to learn
    ex, _ = build_example([], [7, 8], 8, "truncate")
    assert ex["labels"][0] == IGNORE_INDEX  # never learn across a packed boundary


def test_packing_position_ids_reset_and_fit():
    exs = [{"input_ids": [1] * n, "labels": [-100] + [1] * (n - 1)} for n in (5, 3, 4, 2, 6)]
    packs = pack_greedy(exs, 8)
    assert all(sum(len(e["input_ids"]) for e in p) <= 8 for p in packs)
    assert sorted(len(e["input_ids"]) for p in packs for e in p) == [2, 3, 4, 5, 6]
    assert packed_position_ids([3, 2], 7) == [0, 1, 2, 0, 1, 0, 1]
    batch = collate_packed(packs, pad_id=0)
    assert batch["num_tokens"] == 20 and "attention_mask" not in batch
    for row_ids, row_pos, pack in zip(batch["input_ids"], batch["position_ids"], packs, strict=True):
        starts = [i for i, p in enumerate(row_pos.tolist()) if p == 0]
        assert len(starts) >= len(pack)
    assert len(list(iter_packed_rows(iter(exs), 8, buffer_size=2))) >= len(packs)


def test_collate_padded_counts_non_pad_tokens():
    b = collate_padded([{"input_ids": [4, 5, 6], "labels": [-100, 5, 6]}, {"input_ids": [7], "labels": [-100]}], pad_id=0)
    assert b["num_tokens"] == 4
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist()[1] == [-100, -100, -100]


def test_deepspeed_config_generation():
    optim = OptimSection(micro_batch_size=4, grad_accum_steps=8, lr=2e-5)
    cpu = build_deepspeed_config(DeepSpeedSection(zero_stage=3, offload_optimizer=True), optim, 4, False, 100)
    assert cpu["train_batch_size"] == 128 and cpu["bf16"]["enabled"] is False
    assert "offload_optimizer" not in cpu["zero_optimization"]  # meaningless on CPU workers
    assert cpu["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    gpu = build_deepspeed_config(DeepSpeedSection(zero_stage=2, offload_optimizer=True), optim, 4, True, 100)
    assert gpu["bf16"]["enabled"] and gpu["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert gpu["optimizer"]["params"]["torch_adam"] is False
    assert gpu["scheduler"]["type"] == "WarmupCosineLR" and gpu["scheduler"]["params"]["warmup_num_steps"] == 3


def test_user_deepspeed_config_auto_and_contradictions(tmp_path):
    optim = OptimSection(micro_batch_size=2, grad_accum_steps=1)
    ours = build_deepspeed_config(DeepSpeedSection(zero_stage=2), optim, 2, False, 10)
    merged, problems = merge_user_deepspeed_config({"train_batch_size": "auto", "zero_optimization": {"stage": "auto"}}, ours)
    assert not problems and merged["train_batch_size"] == 4 and merged["zero_optimization"]["stage"] == 2
    _, problems = merge_user_deepspeed_config({"train_batch_size": 64, "zero_optimization": {"stage": 3}, "bf16": {"enabled": True}}, ours)
    assert len(problems) == 3 and "train_batch_size=64" in problems[0]
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"gradient_accumulation_steps": 4}))
    _, problems = resolve_deepspeed_config(DeepSpeedSection(zero_stage=2, config_path=str(path)), optim, 2, False, 10)
    assert problems and "gradient_accumulation_steps" in problems[0]
    _, problems = resolve_deepspeed_config(DeepSpeedSection(config_path=str(tmp_path / "missing.json")), optim, 2, False, 10)
    assert "file not found" in problems[0]


def test_config_validation_reports_all_problems():
    with pytest.raises(ConfigError) as exc:
        load_config(FinetuneConfig, None, ["model=x", "data.path=y", "data.formt=alpaca", "deepspeed.zero_stage=1"])
    text = str(exc.value)
    assert "data.formt" in text and "deepspeed.zero_stage" in text and "checkpoint" in text
    with pytest.raises(ConfigError, match="offload_params"):
        load_config(
            FinetuneConfig,
            None,
            ["model=x", "data.path=y", "checkpoint.storage_path=s", "checkpoint.name=n", "output.dir=e",
             "deepspeed.zero_stage=2", "deepspeed.offload_params=true"],
        )


def test_local_paths_become_absolute_uris_and_hub_ids_stay(tmp_path, monkeypatch):
    # Ray Train fails at start-up on a relative storage path ("URI has empty scheme"): the shipped
    # tiny configs use relative ones, so a user's first run from the README crashed there.
    monkeypatch.chdir(tmp_path)
    base = ["data.path=y", "checkpoint.name=n"]
    cfg = load_config(FinetuneConfig, None, base + ["model=x", "checkpoint.storage_path=runs/ck", "output.dir=runs/m"])
    assert cfg.checkpoint.storage_path == str(tmp_path / "runs/ck") and cfg.output.dir == str(tmp_path / "runs/m")
    cfg = load_config(FinetuneConfig, None, base + ["model=x", "checkpoint.storage_path=s3://b/ck", "output.dir=gs://b/m"])
    assert cfg.checkpoint.storage_path == "s3://b/ck" and cfg.output.dir == "gs://b/m"
    slm = load_config(FinetuneMCConfig, REPO / "configs/finetune_mc/local_tiny.yaml")
    assert Path(slm.checkpoint.storage_path).is_absolute() and Path(slm.output.dir).is_absolute()
    # Ray Train workers run elsewhere: data and a local model folder are made absolute too; a hub id is not
    assert all(Path(p).is_absolute() for p in (slm.data.train_path, slm.data.dev_path, slm.data.test_path))
    (tmp_path / "m").mkdir()
    cfg = load_config(FinetuneConfig, None, base + ["checkpoint.storage_path=c", "output.dir=e", "model=m"])
    assert cfg.model == str(tmp_path / "m") and cfg.data.path == str(tmp_path / "y")
    hub = load_config(FinetuneConfig, None, ["model=meta-llama/Llama-2-7b-hf", "data.path=y", "checkpoint.name=n",
                                                "checkpoint.storage_path=c", "output.dir=e"])
    assert hub.model == "meta-llama/Llama-2-7b-hf"


@pytest.mark.parametrize("path", sorted([*(REPO / "configs" / "finetune").glob("*.yaml"),
                                          *(REPO / "configs" / "finetune_mc").glob("*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_finetune_configs_validate(path):
    model = FinetuneConfig if path.parent.name == "finetune" else FinetuneMCConfig
    load_config(model, path)
    head = path.read_text().splitlines()[:8]
    assert any("ray job submit --working-dir ." in line or "--runtime-env deploy/runtime_env.yaml" in line for line in head)


def test_slm_row_normalisation_and_context_text():
    q, pairs, idx, overall, ctx = normalize_row(
        {"question": "Q?", "options": ["a", "b"], "answer": "B", "overall_context": "O", "option_contexts": ["ca"]}
    )
    assert pairs == [("A", "a"), ("B", "b")] and idx == 1 and ctx == ["ca", ""]
    assert option_text("a", "O", "ca", True) == "a O ca" and option_text("a", "O", "ca", False) == "a"
    with pytest.raises(ValueError, match="not one of the options"):
        normalize_row({"question": "Q", "options": {"A": "x"}, "answer": "C"})
    assert few_shot_subset(list(range(50)), 10, 1) == few_shot_subset(list(range(50)), 10, 1)
    assert few_shot_subset(list(range(50)), 10, 1) != few_shot_subset(list(range(50)), 10, 2)
    assert few_shot_subset(list(range(5)), None, 0) == list(range(5))


@pytest.mark.parametrize("row", [
    {"instruction": "List three symptoms of type 2 diabetes.", "input": "", "output": "x"},
    {"instruction": "Summarise the note.", "input": "Fever for 3 days, productive cough.", "output": "x"},
])
def test_exported_alpaca_chat_template_renders_the_training_prompt_token_for_token(row, tiny_models):
    from transformers import AutoTokenizer

    from medforge.finetune.prompts import alpaca_chat_template, prompt_and_response_ids

    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    train_ids, _ = prompt_and_response_ids(row, tok, "alpaca")
    tok.chat_template = alpaca_chat_template()
    messages = [{"role": "user", "content": row["instruction"]}]
    if row["input"]:
        messages.append({"role": "user", "content": row["input"]})
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # as a chat server does it: render, then tokenize without adding special tokens again
    served_ids = tok(text, add_special_tokens=False)["input_ids"]
    assert served_ids == train_ids
    assert ("### Input:" in text) == bool(row["input"])


def test_dataset_path_kind_local_and_uri(tmp_path):
    from medforge.finetune.llm import is_parquet_path

    (tmp_path / "parquet").mkdir()
    assert is_parquet_path(str(tmp_path / "parquet")) and is_parquet_path("x/part-00000.parquet")
    assert not is_parquet_path(str(tmp_path / "medinstruct.jsonl"))
    # what generate writes on a bucket: a prefix of shards, and the JSONL beside it
    assert is_parquet_path("s3://b/runs/gen/dataset/parquet") and is_parquet_path("gs://b/runs/gen/dataset/parquet/")
    assert not is_parquet_path("s3://b/runs/gen/dataset/medinstruct.jsonl")
