"""Tokens/s and MFU of SFT on one GPU: a random LLaMA-shaped ~1.1B model, bf16, ZeRO-2, seq 2048.

Goal (issue 5): >= 45% MFU on one H100/H200. Runs in under 5 minutes, needs no network
(random weights, random tokens) and only torch + transformers; DeepSpeed is used when it is
installed (single process, ZeRO-2, bf16), otherwise it falls back to a plain torch loop and
says so in its output.

    python bench/gpu/bench_llm_mfu.py                 # the real measurement (GPU)
    python bench/gpu/bench_llm_mfu.py --no-deepspeed  # plain torch loop
    python bench/gpu/bench_llm_mfu.py --smoke         # tiny shapes, 2 steps, works on CPU

Prints one JSON line: card, mode, params, tokens_per_s, mfu, peak_mem_gib, ...
MFU = tokens/s * (6 N + 12 L H S) / peak bf16 FLOP/s (dense; H100/H200 SXM: 989 TFLOP/s), where
N excludes the input embedding (a lookup) and the attention term is not halved for causality.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_for(name: str) -> float | None:
    up = name.upper()
    if "H100" in up and "PCIE" in up:
        return 756e12
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in up:
            return PEAK_BF16[key]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, CPU ok")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="measured steps (after warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-deepspeed", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing (less memory, ~25%% more FLOPs not counted)")
    p.add_argument("--time-budget", type=float, default=240.0, help="stop measuring after this many seconds in all")
    args = p.parse_args()
    t_start = time.perf_counter()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    notes = []
    if args.smoke:
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=512)
        args.seq_len, args.micro_batch, args.steps, args.warmup = 64, 2, 2, 1
        args.no_compile = True
    else:
        # TinyLlama-1.1B's shape.
        shape = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)
    if not cuda and not args.smoke:
        notes.append("no CUDA device: this measures CPU speed and reports no MFU")
    dtype = torch.bfloat16 if cuda else torch.float32
    attn = "sdpa"
    if cuda:
        try:
            import flash_attn  # noqa: F401

            attn = "flash_attention_2"
        except ImportError:
            notes.append("flash_attn not installed: SDPA (its flash backend) is used")
    cfg = LlamaConfig(**shape, max_position_embeddings=max(args.seq_len, 128), use_cache=False, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype)
    model.config._attn_implementation = attn
    if args.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_params = sum(p.numel() for p in model.parameters())

    mode = "torch"
    engine = None
    if not args.no_deepspeed:
        try:
            import deepspeed

            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("LOCAL_RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            ds_config = {
                "train_micro_batch_size_per_gpu": args.micro_batch,
                "gradient_accumulation_steps": 1,
                "train_batch_size": args.micro_batch,
                "bf16": {"enabled": cuda},
                "zero_optimization": {"stage": 2, "overlap_comm": cuda, "contiguous_gradients": True, "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8},
                "optimizer": {"type": "AdamW", "params": {"lr": 1e-5, "weight_decay": 0.0, "torch_adam": True, "adam_w_mode": True}},
                "gradient_clipping": 1.0,
                "steps_per_print": 10**9,
            }
            engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds_config)
            mode = "deepspeed-zero2"
            if not args.no_compile:
                engine.compile()
        except ImportError as exc:
            notes.append(f"deepspeed not importable ({exc}): FALLBACK to a plain torch loop (bf16 weights, fused AdamW)")
    if engine is None:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
        fwd = model if args.no_compile else torch.compile(model)

    def step(batch: torch.Tensor) -> float:
        if engine is not None:
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)
            engine.step()
        else:
            loss = fwd(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.detach()

    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [torch.randint(0, cfg.vocab_size, (args.micro_batch, args.seq_len), generator=gen).to(device) for _ in range(4)]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for i in range(args.warmup):
        step(batches[i % 4])
    sync()
    t0 = time.perf_counter()
    done = 0
    for i in range(args.steps):
        last = step(batches[i % 4])
        done += 1
        if time.perf_counter() - t_start > args.time_budget:
            sync()
            notes.append(f"time budget hit after {done} measured steps")
            break
    sync()
    dt = time.perf_counter() - t0
    tokens_per_s = done * args.micro_batch * args.seq_len / dt
    # The input embedding is a lookup, not a matmul: its parameters do no FLOPs.
    n_matmul = n_params - model.get_input_embeddings().weight.numel()
    flops_per_token = 6 * n_matmul + 12 * cfg.num_hidden_layers * cfg.hidden_size * args.seq_len
    card = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_for(card) if cuda else None
    print(
        json.dumps(
            {
                "bench": "llm_mfu",
                "card": card,
                "mode": mode,
                "attn": attn,
                "compiled": not args.no_compile,
                "dtype": str(dtype).replace("torch.", ""),
                "params": n_params,
                "params_matmul": n_matmul,
                "seq_len": args.seq_len,
                "micro_batch": args.micro_batch,
                "measured_steps": done,
                "step_s": dt / max(done, 1),
                "tokens_per_s": tokens_per_s,
                "tflops_per_s": tokens_per_s * flops_per_token / 1e12,
                "mfu": tokens_per_s * flops_per_token / peak if peak else None,
                "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                "final_loss": float(last),
                "wall_s": time.perf_counter() - t_start,
                "notes": notes,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
