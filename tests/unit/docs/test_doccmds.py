"""The doc-command reader (tests/doccmds.py) on small made-up blocks and on the repo's own docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from doccmds import doc_commands, find_command, parse_block

REPO = Path(__file__).resolve().parents[3]


def test_continuations_comments_operators_and_assignments():
    block = (
        "# a comment line\n"
        "A=1 B='x y' .venv/bin/python ray_jobs/x.py --config c.yaml \\\n"
        "    k=v   # trailing comment\n"
        "ray dashboard cluster.yaml &\n"
        "make setup && make demo | tee log\n"
    )
    cmds = parse_block(block, "doc.md", 10)
    assert [c.argv for c in cmds] == [
        [".venv/bin/python", "ray_jobs/x.py", "--config", "c.yaml", "k=v"],
        ["ray", "dashboard", "cluster.yaml"],
        ["make", "setup"], ["make", "demo"], ["tee", "log"],
    ]
    assert cmds[0].env == {"A": "1", "B": "x y"}
    assert cmds[0].line == 11 and cmds[1].line == 13 and cmds[4].line == 14
    assert cmds[0].text == "A=1 B='x y' .venv/bin/python ray_jobs/x.py --config c.yaml k=v"


def test_block_variables_expand_placeholders_and_substitutions_stay_literal():
    block = (
        'SUBMIT="ray job submit --address http://<head>:8265 --"\n'
        "export KEYS=$(openssl rand -hex 24)\n"
        "$SUBMIT python a.py \"$SUBMIT\" --x '<p q>' $KEYS\n"
    )
    cmds = parse_block(block, "doc.md", 1)
    assert [c.argv[0] for c in cmds] == ["export", "ray"]
    assert cmds[0].argv == ["export", "KEYS=$(openssl rand -hex 24)"]
    assert cmds[1].argv == [
        "ray", "job", "submit", "--address", "http://<head>:8265", "--",
        "python", "a.py", "ray job submit --address http://<head>:8265 --", "--x", "<p q>", "$KEYS",
    ]


def test_heredoc_body_and_multiline_quotes():
    block = "cat > f.yaml <<'EOF'\nray up nothing\nEOF\ncurl -d '{\n  \"a\": 1}' http://127.0.0.1:8000\n"
    cmds = parse_block(block, "doc.md", 1)
    assert [c.argv[0] for c in cmds] == ["cat", "curl"]
    assert cmds[1].argv == ["curl", "-d", '{\n  "a": 1}', "http://127.0.0.1:8000"] and cmds[1].line == 4


def test_repo_docs_yield_commands_from_every_kind_of_source():
    cmds = doc_commands(REPO)
    paths = {c.path for c in cmds}
    assert "README.md" in paths and any(p.startswith("docs/") for p in paths)
    assert any(p.startswith("configs/") for p in paths) and any(p.startswith("ray_jobs/") for p in paths)
    assert all(c.argv for c in cmds)
    # docs/cluster.md sets SUBMIT="ray job submit ..." once and uses it in later blocks of the page
    submits = [c for c in cmds if c.text.startswith("$SUBMIT")]
    assert submits and all(c.argv[:3] == ["ray", "job", "submit"] for c in submits)


def test_find_command_names_needles_and_candidates():
    cmds = parse_block("ray up a.yaml\nray up b.yaml\n", "d.md", 1)
    assert find_command(cmds, "up", "b.yaml").argv == ["ray", "up", "b.yaml"]
    with pytest.raises(AssertionError, match=r"(?s)2 commands.*'up'.*d.md:1"):
        find_command(cmds, "up")
    with pytest.raises(AssertionError, match=r"no command.*'down'"):
        find_command(cmds, "down")
