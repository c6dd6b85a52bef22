"""The shell commands the docs show, as data: read from README.md, docs/*.md and the command lines of
config/manifest headers and job docstrings, so that tests can run or check exactly what a user copies.

Pure: no Ray, no medforge import. A small shell-word splitter (not bash): quotes, backslash
continuations, comments, ``&&`` / ``||`` / ``|`` / ``;`` / a trailing ``&`` (separate commands),
``$(...)`` and ``<placeholder>`` kept as literal words, heredoc bodies skipped, leading ``VAR=value``
assignments split off, and variables assigned earlier in the same block (``SUBMIT="ray job submit ... --"``,
``export X=...``) expanded; a page's blocks share their variables, as one shell session would. Variables whose value is itself computed (``$(openssl rand -hex 24)``) stay
as written, and so do variables the block never sets (``$PWD``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DocCommand", "doc_commands", "find_command", "parse_block"]

# The programs a header comment line must start with to count as a command (after VAR=value words).
KNOWN_PROGRAMS = frozenset(
    {"ray", "serve", "python", "python3", "medforge", "kubectl", "docker", "curl", "make", "bash",
     "openssl", "export", "pip", "cd", "helm"}
)
_FENCE_LANGS = frozenset({"bash", "sh", "console", "shell"})
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_OPERATORS = ("&&", "||", "|", ";", "&")


@dataclass(frozen=True)
class DocCommand:
    path: str  # repo-relative file
    line: int  # 1-based line where the command starts
    text: str  # the command as written, continuation lines joined, comments stripped
    argv: list[str] = field(hash=False)  # split words, assignments removed, block variables expanded
    env: dict[str, str] = field(hash=False)  # the leading VAR=value assignments

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class _Word:
    value: str  # quotes removed
    start: int  # offsets in the block text
    end: int
    quoted_parts: list[tuple[str, str]]  # (piece, kind): u(nquoted), d(ouble-quoted) or l(iteral)
    op: str | None = None  # set for an operator token


def _is_program(word: str) -> bool:
    return word in KNOWN_PROGRAMS or word.startswith((".venv/bin/", "./.venv/bin/", "bash scripts/"))


def _scan(text: str) -> list[_Word | str]:
    """Words and separators of a block. A separator is ``"\\n"`` (end of a command line) or an operator
    word. Heredoc bodies are dropped here."""
    out: list[_Word | str] = []
    i, n = 0, len(text)
    pending_heredocs: list[str] = []
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":
            i += 2
            continue
        if c in " \t":
            i += 1
            continue
        if c == "\n":
            out.append("\n")
            i += 1
            if pending_heredocs:  # skip each body up to its terminator line
                for term in pending_heredocs:
                    while i < n:
                        j = text.find("\n", i)
                        j = n if j < 0 else j
                        line = text[i:j]
                        i = j + 1
                        if line.strip() == term:
                            break
                pending_heredocs = []
            continue
        if c == "#":  # a comment runs to the end of the line
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            out.append(_Word(op, i, i + len(op), [], op=op))
            i += len(op)
            continue
        m = _HEREDOC.match(text, i)
        if m:
            pending_heredocs.append(m.group(2))
            out.append(_Word(m.group(0), i, m.end(), [(m.group(0), "l")]))
            i = m.end()
            continue
        word, i = _read_word(text, i)
        out.append(word)
    return out


def _read_word(text: str, i: int) -> tuple[_Word, int]:
    start, n = i, len(text)
    parts: list[tuple[str, str]] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            parts.append(("".join(buf), "u"))
            buf.clear()

    while i < n:
        c = text[i]
        if c in " \t\n" or c == "#" and not buf and not parts:
            break
        if any(text.startswith(o, i) for o in _OPERATORS):
            break
        if c == "\\" and i + 1 < n:
            if text[i + 1] == "\n":
                i += 2
                continue
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "'":
            flush()
            j = text.find("'", i + 1)
            j = n if j < 0 else j
            parts.append((text[i + 1 : j], "l"))
            i = j + 1
            continue
        if c == '"':
            flush()
            j, piece = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\$`':
                    piece.append(text[j + 1])
                    j += 2
                    continue
                piece.append(text[j])
                j += 1
            parts.append(("".join(piece), "d"))
            i = j + 1
            continue
        if c == "$" and text.startswith("$(", i):  # a command substitution stays one literal word piece
            depth, j = 0, i + 1
            while j < n:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            flush()
            parts.append((text[i : j + 1], "l"))
            i = j + 1
            continue
        if c == "<" and i + 1 < n and text[i + 1].isalnum():  # <placeholder>, possibly with spaces
            j = text.find(">", i)
            eol = text.find("\n", i)
            if j > 0 and (eol < 0 or j < eol):
                flush()
                parts.append((text[i : j + 1], "l"))
                i = j + 1
                continue
        buf.append(c)
        i += 1
    flush()
    return _Word("".join(p for p, _ in parts), start, i, parts), i


def _expand(word: _Word, variables: dict[str, str]) -> list[str]:
    """The word with block variables expanded; an unquoted whole-word variable is split into words."""
    if len(word.quoted_parts) == 1 and word.quoted_parts[0][1] == "u":
        m = _VAR.fullmatch(word.quoted_parts[0][0])
        name = m and (m.group(1) or m.group(2))
        if name and name in variables:
            return shlex.split(variables[name])
    out = []
    for piece, kind in word.quoted_parts:
        if kind != "l":
            piece = _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), piece)
        out.append(piece)
    return ["".join(out)]


def _static(value: str) -> bool:
    return "$(" not in value and "`" not in value


def parse_block(
    text: str, path: str, first_line: int, *, line_map: list[int] | None = None,
    variables: dict[str, str] | None = None,
) -> list[DocCommand]:
    """Commands of one shell block. ``first_line`` is the file line of the block's first text line;
    ``line_map`` (one file line per block line) replaces it where the block's lines are not contiguous."""
    variables = {} if variables is None else variables
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def file_line(offset: int) -> int:
        k = max(idx for idx, s in enumerate(line_starts) if s <= offset)
        return line_map[k] if line_map else first_line + k

    commands: list[DocCommand] = []
    current: list[_Word] = []

    def finish() -> None:
        if not current:
            return
        words = list(current)
        current.clear()
        start = words[0].start
        env: dict[str, str] = {}
        while words and _ASSIGN.match(words[0].value) and words[0].quoted_parts[0][1] == "u":
            name, _, value = words[0].value.partition("=")
            env[name] = value
            words.pop(0)
        if not words:  # VAR=value alone: a block variable, not a command
            variables.update({k: v for k, v in env.items() if _static(v)})
            for k, v in env.items():
                if not _static(v):
                    variables.pop(k, None)
            return
        argv = [a for w in words for a in _expand(w, variables)]
        if argv and argv[0] == "export":
            for a in argv[1:]:
                if _ASSIGN.match(a):
                    name, _, value = a.partition("=")
                    if _static(value):
                        variables[name] = value
                    else:
                        variables.pop(name, None)
        raw = text[start : words[-1].end]
        cmd_text = re.sub(r"[ \t]*\\\n\s*", " ", raw)
        commands.append(DocCommand(path, file_line(start), cmd_text, argv, env))

    for tok in _scan(text):
        if tok == "\n" or isinstance(tok, _Word) and tok.op is not None:
            finish()
            continue
        current.append(tok)
    finish()
    return commands


def _markdown_commands(path: Path, rel: str) -> list[DocCommand]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[DocCommand] = []
    variables: dict[str, str] = {}  # one shell session per page: SUBMIT=... in one block serves the next
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[:3]):
            j += 1
        body = lines[i + 1 : j]
        if lang in _FENCE_LANGS:
            indent = len(m.group(1))
            body = [b[indent:] if b[:indent].strip() == "" else b for b in body]
            if lang == "console":  # only the prompted lines (and their continuations) are commands
                kept, line_map, cont = [], [], False
                for k, b in enumerate(body):
                    if b.startswith("$ ") or cont:
                        kept.append(b[2:] if b.startswith("$ ") and not cont else b)
                        line_map.append(i + 2 + k)
                        cont = b.rstrip().endswith("\\")
                out += parse_block("\n".join(kept), rel, i + 2, line_map=line_map, variables=variables)
            else:
                out += parse_block("\n".join(body), rel, i + 2, variables=variables)
        i = j + 1
    return out


def _comment_commands(lines: list[tuple[int, str]], rel: str) -> list[DocCommand]:
    """Commands among comment/docstring lines already stripped of their marker: (file line, text).
    A line counts if its first word (after VAR=value words) is a known program; ``\\`` continues it."""
    out: list[DocCommand] = []
    variables: dict[str, str] = {}
    k = 0
    while k < len(lines):
        lineno, body = lines[k]
        try:
            words = shlex.split(body, comments=True)
        except ValueError:
            words = body.split()
        while words and _ASSIGN.match(words[0]):
            words.pop(0)
        if not words or not _is_program(words[0]):
            k += 1
            continue
        group, line_map = [body], [lineno]
        while group[-1].rstrip().endswith("\\") and k + 1 < len(lines):
            k += 1
            group.append(lines[k][1])
            line_map.append(lines[k][0])
        out += parse_block("\n".join(group), rel, lineno, line_map=line_map, variables=variables)
        k += 1
    return out


def _yaml_header_lines(path: Path) -> list[tuple[int, str]]:
    """The comment lines of a YAML file's leading comment block, indented as commands (``#   ``)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("#"):
            break
        if line.startswith("#   "):
            out.append((n, line[4:]))
    return out


def _docstring_lines(path: Path) -> list[tuple[int, str]]:
    """The 4-space-indented lines of a Python file's module docstring."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].lstrip().startswith(('"""', "'''")):
        return []
    quote = lines[0].lstrip()[:3]
    out = []
    for n, line in enumerate(lines[1:], 2):
        if quote in line:
            break
        if line.startswith("    ") and line.strip():
            out.append((n, line[4:]))
    return out


def doc_commands(repo: Path) -> list[DocCommand]:
    """Every command of README.md and docs/*.md (fenced bash/sh/shell/console blocks), of the header
    comments of the YAML files under configs/ (configs/serve/ included), deploy/ (and cluster.yaml), and of the module
    docstrings of ray_jobs/*.py, in file order."""
    repo = Path(repo)
    out: list[DocCommand] = []
    for md in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        if md.is_file():
            out += _markdown_commands(md, md.relative_to(repo).as_posix())
    yamls = [repo / "cluster.yaml"] if (repo / "cluster.yaml").is_file() else []
    for folder in ("configs", "deploy"):
        yamls += sorted((repo / folder).rglob("*.yaml"))
    for y in yamls:
        out += _comment_commands(_yaml_header_lines(y), y.relative_to(repo).as_posix())
    for py in sorted((repo / "ray_jobs").glob("*.py")):
        out += _comment_commands(_docstring_lines(py), py.relative_to(repo).as_posix())
    return out


def find_command(cmds: list[DocCommand], *needles: str) -> DocCommand:
    """The one command whose text contains every needle."""
    hits = [c for c in cmds if all(n in c.text for n in needles)]
    if len(hits) != 1:
        shown = "\n".join(f"  {c.where()}: {c.text}" for c in (hits or cmds)[:40])
        what = "no command" if not hits else f"{len(hits)} commands"
        raise AssertionError(
            f"{what} in the docs contain all of {list(needles)}; "
            f"{'candidates' if not hits else 'matches'}:\n{shown}"
        )
    return hits[0]
