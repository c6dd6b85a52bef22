"""Tiny random models for tests and the offline demo.

Nothing can be downloaded here, so the project builds its own models, offline and
deterministically:

* a random LLaMA (2 layers, hidden 128, 2 heads of head_dim 64, 1 KV head): vLLM's CPU
  attention kernels reject head_dim 16, 64 works; plus a byte-level BPE tokenizer trained
  locally on text this package ships, with a chat template;
* a random BERT with a multiple-choice head and a WordPiece tokenizer trained the same way.

Their weights are random: **what they write is noise**. They exist to exercise the real
engines (vLLM, Ray Data LLM, DeepSpeed) end to end, not to produce meaningful text.
"""

from __future__ import annotations

import argparse
import json
import logging
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

LLAMA_DIR = "tiny-llama"
BERT_DIR = "tiny-bert-mc"
_STAMP = ".medforge-tiny-version"
# Bump when the recipe changes so cached copies are rebuilt.
TINY_VERSION = "1"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_LLAMA_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def _corpus() -> list[str]:
    """Training text for the tokenizers: the seeds and prompt templates this package ships."""
    texts: list[str] = []
    data = resources.files("medforge.generate") / "data"
    for entry in sorted(data.iterdir(), key=lambda p: p.name):
        if entry.name.endswith((".jsonl", ".txt")):
            texts.extend(line for line in entry.read_text().splitlines() if line.strip())
    templates = resources.files("medforge.generate") / "templates"
    for entry in sorted(templates.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".jinja"):
            texts.append(entry.read_text())
    # JSON punctuation and digits, so structured output has short tokens to use.
    texts.append('{"tasks": [{"type": "", "topic": "", "view": "", "difficulty": 1, "instruction": "", "input": ""}]} 0123456789')
    return texts


def build_tiny_llama(out: Path, vocab_size: int = 2048, seed: int = 0) -> Path:
    """Write a random LLaMA + BPE tokenizer + chat template as a Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_LLAMA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|end|>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.model_max_length = 4096
    hf_tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_bert(out: Path, vocab_size: int = 2048, seed: int = 0) -> Path:
    """Write a random BERT with a multiple-choice head + WordPiece tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMultipleChoice, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        _corpus(), trainer=trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    hf_tok.model_max_length = 512
    hf_tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(hf_tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=hf_tok.pad_token_id,
    )
    BertForMultipleChoice(config).save_pretrained(out, safe_serialization=True)
    return out


def make_tiny_models(out_dir: str | Path, force: bool = False) -> dict[str, Path]:
    """Build both tiny models under ``out_dir`` (skipped when an up-to-date copy exists).

    Returns:
        ``{"llama": path, "bert": path}``.
    """
    out_dir = Path(out_dir)
    stamp = out_dir / _STAMP
    paths = {"llama": out_dir / LLAMA_DIR, "bert": out_dir / BERT_DIR}
    if not force and stamp.is_file() and stamp.read_text().strip() == TINY_VERSION:
        logger.info("tiny models already built in %s", out_dir)
        return paths
    logger.info("building tiny random models in %s (offline, deterministic)", out_dir)
    build_tiny_llama(paths["llama"])
    build_tiny_bert(paths["bert"])
    stamp.write_text(TINY_VERSION)
    (out_dir / "README.txt").write_text(
        "Tiny RANDOM models built by `medforge make-tiny-models`. Their output is noise; they exist to\n"
        "exercise the real engines offline. Point configs at a real checkpoint for real work.\n"
    )
    return paths


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge make-tiny-models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".tiny_models", help="output folder (default: .tiny_models)")
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date copy exists")
    args = parser.parse_args(argv)
    paths = make_tiny_models(args.out, force=args.force)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0
