"""`medforge filter` CLI: outputs, side files, bad input and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforge.generate import novelty_cli
from medforge.generate.novelty_cli import cli_main

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpacare"

ROWS = [
    {"id": "a", "instruction": "Explain the pathophysiology of type 2 diabetes.", "extra": [1, 2]},
    {"id": "b", "instruction": "Explain the pathophysiology of type 2 diabetes please.", "x": None},
    {"id": "c", "instruction": "List common side effects of metformin.", "n": 1.50},
    {"instruction": "What is asthma?"},
]


def write_jsonl(path: Path, rows: list, raw_lines: list[str] | None = None) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + (raw_lines or [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_keeps_rows_in_order_with_fields_intact(tmp_path):
    inp = tmp_path / "in.jsonl"
    # Non-canonical formatting must survive byte for byte.
    raw = ['{"id": "z",   "instruction": "Describe gout flares.", "v": 1.50}']
    write_jsonl(inp, ROWS, raw)
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    rc = cli_main(["--input", str(inp), "--output", str(out), "--rejected", str(rej)])
    assert rc == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x).get("id") for x in lines] == ["a", "c", None, "z"]
    assert lines[-1] == raw[0]
    assert json.loads(lines[0]) == ROWS[0]
    (r,) = read_jsonl(rej)
    assert r["id"] == "b" and r["x"] is None
    assert r["_novelty"]["nearest_id"] == "a" and r["_novelty"]["best_score"] > 0.7
    assert not list(tmp_path.glob(".*.tmp"))


def test_raw_unicode_line_separators_inside_strings_are_one_row(tmp_path):
    # valid JSONL from another writer: U+2028/U+0085 raw inside strings, CRLF line ends
    raw = ['{"id": "p", "instruction": "Explain\u2028gout."}', '{"id": "q", "instruction": "List\u0085statins."}']
    inp = tmp_path / "in.jsonl"
    inp.write_text("\r\n".join(raw) + "\r\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli_main(["--input", str(inp), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").split("\n") == raw + [""]


def test_seeds_json_list_and_jsonl(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", ROWS)
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([{"instruction": "List common side effects of metformin."}]), encoding="utf-8")
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    assert cli_main(["--input", str(inp), "--output", str(out), "--seeds", str(seeds), "--rejected", str(rej)]) == 0
    rejected = read_jsonl(rej)
    assert {r["id"] for r in rejected if "id" in r} == {"b", "c"}
    assert [r["_novelty"]["nearest_id"] for r in rejected if r.get("id") == "c"] == ["seed:0"]
    seeds_l = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "What is asthma?"}])
    assert cli_main(["--input", str(inp), "--output", str(out), "--seeds", str(seeds_l)]) == 0
    assert "What is asthma?" not in out.read_text(encoding="utf-8")


def test_threshold_and_field_options(tmp_path):
    rows = [{"q": "alpha beta gamma delta"}, {"q": "alpha beta gamma epsilon"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert cli_main(["--input", str(inp), "--output", str(out), "--field", "q"]) == 0
    assert len(read_jsonl(out)) == 1
    # 3 of 4 tokens: F = 0.75 > 0.7 -> rejected; with threshold 0.8 it is kept.
    assert cli_main(["--input", str(inp), "--output", str(out), "--field", "q", "--threshold", "0.8"]) == 0
    assert len(read_jsonl(out)) == 2


@pytest.mark.parametrize(
    "lines,needle",
    [
        (['{"instruction": "ok"}', "{not json"], ":2: malformed JSON"),
        (['{"instruction": "ok"}', '{"text": "no field"}'], ":2: missing field 'instruction'"),
        (['{"instruction": 5}'], ":1: field 'instruction' is int"),
        (['{"instruction": null}'], ":1: field 'instruction' is NoneType"),
        (['["a list"]'], ":1: expected a JSON object"),
        ([], "input is empty"),
        (["", "   "], "input is empty"),
    ],
)
def test_bad_input_fails_cleanly_naming_the_line(tmp_path, capsys, lines, needle):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n", encoding="utf-8")
    rc = cli_main(["--input", str(inp), "--output", str(out), "--rejected", str(tmp_path / "r.jsonl")])
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "previous run\n"  # untouched
    assert not (tmp_path / "r.jsonl").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_quarantine_keeps_going(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"instruction": "a b c"}\n{oops\n{"instruction": 3}\n{"instruction": "d e f"}\n', encoding="utf-8")
    out, q = tmp_path / "out.jsonl", tmp_path / "q.jsonl"
    assert cli_main(["--input", str(inp), "--output", str(out), "--quarantine", str(q)]) == 0
    assert [r["instruction"] for r in read_jsonl(out)] == ["a b c", "d e f"]
    assert [b["line"] for b in read_jsonl(q)] == [2, 3]


def test_bad_seed_file_and_threshold(tmp_path, capsys):
    inp = write_jsonl(tmp_path / "in.jsonl", ROWS)
    seeds = tmp_path / "seeds.json"
    seeds.write_text('[{"instruction": "x"}, {"nope": 1}]', encoding="utf-8")
    assert cli_main(["--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--seeds", str(seeds)]) == 2
    assert "entry 1: missing field 'instruction'" in capsys.readouterr().err
    assert cli_main(["--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--threshold", "2"]) == 2
    assert not (tmp_path / "o.jsonl").exists()


def test_failure_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    inp = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(novelty_cli.os, "replace", boom)
    with pytest.raises(OSError):
        cli_main(["--input", str(inp), "--output", str(out)])
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_medforge_dispatcher_runs_filter(tmp_path):
    from medforge.cli import main

    inp = write_jsonl(tmp_path / "in.jsonl", ROWS)
    assert main(["filter", "--input", str(inp), "--output", str(tmp_path / "o.jsonl")]) == 0


def test_real_seed_file_loads():
    seed_path = DATA / "med_seed.json"
    if not seed_path.exists():
        pytest.skip(f"AlpaCare seeds not found at {seed_path.resolve()}")
    seeds = novelty_cli.read_seeds(seed_path, "instruction")
    assert len(seeds) == 167 and all(isinstance(s, str) for s in seeds)
