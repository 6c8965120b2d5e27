"""Every command shown in README.md and docs/**/*.md starts, as written, in its --help or dry form.

The Markdown is parsed for fenced code blocks. A block with no language (or sh, bash, shell)
holds one command per line; a ``console`` block holds commands after ``$ `` with their output
between. Any other language (text, json, python, yaml) is not commands. Each command is checked
for shell syntax (bash -n), then each program in it is started in a form that does no work:

- ``make T``                       make -n T (the recipe is printed, not run)
- ``osctl ...``, ``.venv/bin/osctl ...``  the arguments must parse, then ``... --help`` must exit 0
- ``.venv/bin/python -m M ...`` / ``.venv/bin/python FILE ...``  ``... --help`` must exit 0
- ``.venv/bin/pytest ARGS``        pytest --collect-only ARGS (the named tests must exist)
- ``apt-get install P``            apt-get -s install P (simulated; the package must be known)

What cannot be started at all is in NOT_STARTED with the reason; it must still be installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from talos_init.osctl.__main__ import build_parser

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
SHELL_BUILTINS = {"export", "source", ".", "cd", "echo"}
# Programs shown but not started, and why (their presence on PATH is still checked).
NOT_STARTED = {
    "mkdir": "a system tool that would act: creates the directory (no dry form)",
    "kill": "signals a running process: needs its pid",
    "docker": "an operator's tool on their own machine, not installed here",
}
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "<(", "$("}
REDIRECTIONS = {">", ">>", "<", "2>", "&>"}
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)")


@dataclass(frozen=True)
class Shown:
    where: str  # file:line
    text: str  # the command as a reader would type it

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def fenced_blocks(markdown: str) -> list[tuple[int, str, list[str]]]:
    """(first body line number, language, body lines) of each fenced code block."""
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        out.append((i + 2, lang, lines[i + 1:j]))
        i = j + 1
    return out


def commands_in(markdown: str, name: str) -> list[Shown]:
    """The commands shown in the shell blocks of one Markdown text."""
    found = []
    for first, lang, body in fenced_blocks(markdown):
        if lang not in SHELL_LANGS:
            continue
        pending, start = "", 0
        for n, line in enumerate(body, first):
            if not pending:
                if lang == "console":
                    if not line.startswith("$ "):
                        continue  # output
                    line = line[2:]
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                start = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append(Shown(f"{name}:{start}", (pending + line).strip()))
            pending = ""
    return found


def documented() -> list[Shown]:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [c for f in files for c in commands_in(f.read_text(), str(f.relative_to(REPO)))]


def simple_commands(text: str) -> list[list[str]]:
    """The argv of each simple command in a line, without redirections or comments."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, "#"
    out: list[list[str]] = [[]]
    tokens = iter(lex)
    for token in tokens:
        if token in SEPARATORS:
            out.append([])
        elif token in REDIRECTIONS:
            next(tokens, None)  # the redirection's target
        elif token.endswith("2>") and token[:-2].isdigit():
            next(tokens, None)
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          **kw)


def check(argv: list[str]) -> str | None:
    """Start ``argv`` in its --help or dry form; None if it started, else what went wrong."""
    prog, args = argv[0], argv[1:]
    name = Path(prog).name
    if prog in SHELL_BUILTINS:
        return None  # bash -n covered it
    if name == "make":
        r = run(["make", "-n", *args])
    elif name == "osctl":
        try:
            build_parser().parse_args(args)
        except SystemExit:
            return f"osctl does not accept {args}"
        r = run([str(VENV_BIN / "osctl"), *args, "--help"])
    elif name == "pytest":
        r = run([str(VENV_BIN / "pytest"), "--collect-only", "-q", "-p", "no:cacheprovider", *args])
    elif name.startswith("python"):
        r = run([prog, *args, "--help"])
    elif name == "apt-get" and args[:1] == ["install"]:
        r = run(["apt-get", "-s", *args])
    elif name in NOT_STARTED:
        return None if shutil.which(prog) or name == "docker" else f"{prog} is not installed"
    else:
        return f"no way to start {prog!r} known: add it to check() or NOT_STARTED"
    if r.returncode != 0:
        return f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-600:]}"
    return None


SHOWN = documented()


def test_the_docs_show_commands_at_all():
    """The extraction finds the commands of each kind the README and docs show."""
    texts = [c.text for c in SHOWN]
    assert "make run" in " ".join(texts)
    assert any(t.startswith(".venv/bin/python -m benchmarks.boot_bench") for t in texts)
    assert any(t.startswith("osctl gen config demo") for t in texts)  # a console block's $ line
    assert not any(t.startswith(("wrote ", "POD ", "operator's")) for t in texts)  # output, text


def test_extraction_of_fences_prompts_continuations_and_comments():
    """Fences of either kind and any length, console prompts, backslash lines, comment lines."""
    md = "\n".join([
        "text", "````sh", "# a comment", "make run   # trailing comment", "", "````",
        "```console", "$ osctl version \\", "    -o json", "output line", "```",
        "~~~python", "print('not a command')", "~~~",
        "```text", "make not-me", "```",
    ])
    assert [(c.where, c.text) for c in commands_in(md, "x.md")] == [
        ("x.md:4", "make run   # trailing comment"), ("x.md:8", "osctl version      -o json")]
    assert simple_commands("mkdir -p /t && echo a > /t/c  # x") == [["mkdir", "-p", "/t"], ["echo", "a"]]
    assert simple_commands("source <(osctl completion bash)") == [["source"], ["osctl", "completion", "bash"]]


def test_a_broken_command_is_reported():
    """The checks fail on a module that does not exist, a bad osctl verb and a missing test."""
    assert check([".venv/bin/python", "-m", "benchmarks.no_such_bench"]) is not None
    assert check(["osctl", "service", "explode", "kubelet"]) is not None
    assert check([".venv/bin/pytest", "tests/unit/test_cmdline.py::test_no_such_test"]) is not None
    assert check(["make", "no-such-target"]) is not None


@pytest.mark.parametrize("shown", SHOWN, ids=[c.where for c in SHOWN])
def test_documented_command_starts(shown):
    """The command is valid shell and each program in it starts in its --help or dry form."""
    syntax = subprocess.run(["bash", "-n", "-c", shown.text], capture_output=True, text=True)
    assert syntax.returncode == 0, f"{shown}: {syntax.stderr}"
    problems = [f"{argv[0]}: {p}" for argv in simple_commands(shown.text) if (p := check(argv))]
    assert not problems, f"{shown}\n" + "\n".join(problems)
