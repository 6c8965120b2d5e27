"""`osctl completion bash|zsh` scripts, loaded and run in real shells, complete every verb."""

import shutil
import subprocess
import sys

import pytest

from talos_init.osctl import completion
from talos_init.osctl.__main__ import build_parser

# Drivers: fill the shell's completion variables as if TAB were pressed after the words given,
# call _osctl, print one line of candidates. zsh's completion builtins only work inside the line
# editor, so they are stood in for by functions printing what they were given.
BASH = """source "$1"
t() { COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _osctl; echo "${COMPREPLY[*]}"; }
"""
ZSH = """offer() { print -r -- "${(M)@:#${PREFIX}*}"; }  # zsh keeps the candidates matching PREFIX
compadd() { [[ $1 == -- ]] && shift; offer "$@"; }
_describe() { local e; local -a out; for e in "${(@P)2}"; do out+=("${e%%:*}"); done; offer "${out[@]}"; }
_files() { print -r -- "<files>"; }
compdef() { : }
source "$1"
t() { words=("$@"); CURRENT=${#words}; PREFIX=${words[CURRENT]}; _osctl; }
"""

CASES = [  # words typed, then what TAB offers
    (["osctl", "-o", ""], "table json yaml"),
    (["osctl", "-o", "json", "serv"], "services service"),
    (["osctl", "-e", "127.0.0.1:50000", "service", ""], "start stop restart"),
    (["osctl", "gen", "cert", "alice", "--role", ""], "os:admin os:operator os:reader"),
    (["osctl", "completion", ""], "bash zsh"),
    (["osctl", "logs", "-"], "-h --help -k --kubernetes -f --follow --tail"),
]
# bash replaces only what follows the last ':' of the word (COMP_WORDBREAKS); zsh the word.
COLON = {"bash": "reader", "zsh": "os:reader"}


def complete(shell: str, tmp_path, cases: list[list[str]]) -> list[str]:
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed (tools/apt-packages.txt lists it)")
    script = tmp_path / f"osctl.{shell}"
    r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "completion", shell],
                       capture_output=True, text=True, check=True)
    script.write_text(r.stdout)
    driver = (BASH if shell == "bash" else ZSH) + "".join(
        "t " + " ".join(f"'{w}'" for w in words) + "\n" for words in cases)
    argv = ["bash", "--norc", "-c", driver, "-", str(script)] if shell == "bash" else \
        ["zsh", "-f", "-c", driver, "-", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_every_command_completes_its_own_verbs(shell, tmp_path):
    """At every level of the command tree, TAB offers exactly that level's verbs."""
    tree = [n for n in completion.nodes(completion.walk(build_parser())) if n.commands]
    got = complete(shell, tmp_path, [["osctl", *n.path, ""] for n in tree])
    assert [line.split() for line in got] == [list(n.commands) for n in tree]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_options_values_and_choices_complete(shell, tmp_path):
    """Option values, positional choices and option names, past options that take a value."""
    got = complete(shell, tmp_path, [words for words, _ in CASES]
                   + [["osctl", "-e", "127.0.0.1:50000", "gen", "cert", "a", "--role", "os:r"]])
    assert got == [want for _, want in CASES] + [COLON[shell]]
