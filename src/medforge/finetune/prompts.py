"""Turn instruction rows into token ids with the loss masked on the prompt.

Input columns: ``instruction``, ``input`` ("" or missing when none), ``output``.
Output of :func:`tokenize_example`: ``input_ids`` and ``labels`` (``-100`` on every prompt
token and on the first token, so that a packed row never learns across an example boundary).
"""

from __future__ import annotations

from typing import Any, Literal

IGNORE_INDEX = -100

# Stanford Alpaca's templates, as AlpaCare trains with them.
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(row: dict[str, Any]) -> str:
    """The Alpaca prompt for ``row``: the with-input template when ``input`` is non-empty."""
    inp = (row.get("input") or "").strip()
    if inp:
        return ALPACA_PROMPT_INPUT.format(instruction=row["instruction"], input=inp)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=row["instruction"])


def alpaca_chat_template() -> str:
    """A Jinja chat template that renders the Alpaca training prompt (exported with the model).

    A chat endpoint applies the tokenizer's chat template; a model trained on Alpaca prompts
    must see the same text at serving time. The first user message is the instruction, an
    optional second user message is the input; system and assistant messages are not part
    of the Alpaca format and are ignored. Built from the training templates, so the two
    cannot drift apart.
    """

    def jinja(template: str) -> str:
        return template.replace("{instruction}", "{{ ns.instruction }}").replace("{input}", "{{ ns.input }}")

    return (
        "{%- set ns = namespace(instruction='', input='', n=0) -%}"
        "{%- for m in messages if m['role'] == 'user' -%}"
        "{%- if ns.n == 0 -%}{%- set ns.instruction = m['content'] -%}"
        "{%- elif ns.n == 1 -%}{%- set ns.input = m['content'] | trim -%}{%- endif -%}"
        "{%- set ns.n = ns.n + 1 -%}"
        "{%- endfor -%}"
        "{{ bos_token if bos_token else '' }}"
        # no whitespace control around these tags: the prompt's final newline is part of it
        "{% if ns.input %}" + jinja(ALPACA_PROMPT_INPUT) + "{% else %}" + jinja(ALPACA_PROMPT_NO_INPUT) + "{% endif %}"
    )


def chat_messages(row: dict[str, Any], system_prompt: str | None = None) -> list[dict[str, str]]:
    """User turn = instruction (+ input on a new paragraph); optional system message first."""
    user = row["instruction"].strip()
    inp = (row.get("input") or "").strip()
    if inp:
        user = f"{user}\n\n{inp}"
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": user})
    return msgs


def prompt_and_response_ids(
    row: dict[str, Any], tokenizer: Any, fmt: Literal["alpaca", "chat"], system_prompt: str | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the response (response ends with EOS)."""
    if fmt == "alpaca":
        prompt_ids = tokenizer(alpaca_prompt(row), add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None:
            prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
        resp_ids = tokenizer(row["output"], add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            resp_ids = [*resp_ids, tokenizer.eos_token_id]
        return list(prompt_ids), list(resp_ids)
    msgs = chat_messages(row, system_prompt)
    prompt_text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        [*msgs, {"role": "assistant", "content": row["output"]}], tokenize=False, add_generation_prompt=False
    )
    prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    if full_text.startswith(prompt_text):
        resp_ids = list(tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"])
    else:  # a template that rewrites earlier turns: fall back to a token-level split
        full_ids = list(tokenizer(full_text, add_special_tokens=False)["input_ids"])
        resp_ids = full_ids[len(prompt_ids) :]
    return prompt_ids, resp_ids


def build_example(
    prompt_ids: list[int], resp_ids: list[int], max_length: int, overflow: Literal["truncate", "drop"]
) -> tuple[dict[str, list[int]] | None, str]:
    """Concatenate and mask; returns ``(example or None, status)``.

    ``status`` is ``"ok"``, ``"truncated"`` or ``"dropped"``. Truncation cuts the response's
    tail; an example whose prompt alone fills ``max_length`` has nothing to learn and is dropped.
    """
    ids = prompt_ids + resp_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(resp_ids)
    status = "ok"
    if len(ids) > max_length:
        if overflow == "drop":
            return None, "dropped"
        ids, labels = ids[:max_length], labels[:max_length]
        status = "truncated"
    if labels:
        labels[0] = IGNORE_INDEX
    if all(x == IGNORE_INDEX for x in labels):
        return None, "dropped"
    return {"input_ids": ids, "labels": labels}, status


def tokenize_example(
    row: dict[str, Any],
    tokenizer: Any,
    fmt: Literal["alpaca", "chat"],
    max_length: int,
    overflow: Literal["truncate", "drop"],
    system_prompt: str | None = None,
) -> tuple[dict[str, list[int]] | None, str]:
    """Row -> masked example (see :func:`build_example`)."""
    prompt_ids, resp_ids = prompt_and_response_ids(row, tokenizer, fmt, system_prompt)
    return build_example(prompt_ids, resp_ids, max_length, overflow)
