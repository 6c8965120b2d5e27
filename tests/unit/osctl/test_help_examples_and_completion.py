"""Every osctl verb's --help shows a working example, and the completion tree covers every verb.

Walks the parser itself, so a verb added later is checked without editing this file.
"""

import argparse
import shlex

import pytest

from talos_init.osctl import completion
from talos_init.osctl.__main__ import build_parser

SHELL_SYNTAX = ("|", "<", ">", ";", "&&")


def verbs(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every command at every depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from verbs(sub, (*path, name))


def example_argv(line: str) -> list[str] | None:
    """The osctl arguments of one example line (after `osctl`, up to shell syntax); None: no osctl."""
    tokens = shlex.split(line)
    for i, token in enumerate(tokens):
        if token.endswith("osctl"):
            argv = []
            for t in tokens[i + 1:]:
                if t in SHELL_SYNTAX:
                    break
                argv.append(t.rstrip(")"))
                if t.endswith(")"):
                    break
            return argv
    return None


def examples(sub: argparse.ArgumentParser) -> list[str]:
    _, found, rest = sub.format_help().partition("\nexample:\n")
    return [line.strip() for line in rest.splitlines() if line.strip()] if found else []


ALL = sorted(verbs(build_parser()), key=lambda v: v[0])


@pytest.mark.parametrize("path,sub", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_verb_has_an_example_that_parses(path, sub):
    """Its --help ends with example lines; one runs this very verb, and each parses."""
    lines = examples(sub)
    assert lines, f"osctl {' '.join(path)} --help has no example"
    argvs = [example_argv(line) for line in lines]
    assert None not in argvs, lines
    for argv in argvs:
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"example {argv} of osctl {' '.join(path)} does not parse")
    positional = [[t for t in argv if not t.startswith("-")] for argv in argvs]
    assert any(_subsequence(path, words) for words in positional), (path, lines)


def _subsequence(needle, hay) -> bool:
    it = iter(hay)
    return all(word in it for word in needle)


def test_the_example_checker_rejects_a_missing_or_broken_example():
    """A verb without epilog, or whose example does not parse, is caught by the checks above."""
    p = argparse.ArgumentParser(prog="osctl")
    assert examples(p.add_subparsers().add_parser("bare")) == []
    assert example_argv("source <(osctl completion bash)") == ["completion", "bash"]
    assert example_argv("docker save a | osctl -n x image import -") == ["-n", "x", "image", "import", "-"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["service", "explode", "kubelet"])


def test_completion_tree_has_every_verb_option_and_choice():
    """The tree the scripts are written from has each verb, each option and each positional choice."""
    parser = build_parser()
    tree = {n.path: n for n in completion.nodes(completion.walk(parser))}
    for path, sub in ALL:
        assert path in tree, path
        flags = {f for o in tree[path].options for f in o.flags}
        assert flags == {f for a in sub._actions for f in a.option_strings}
    assert tree[("service",)].choices == ["start", "stop", "restart"]
    assert tree[("completion",)].choices == ["bash", "zsh"]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_each_script_names_every_verb(shell):
    """Every verb path is a step of the generated script's command walk."""
    text = completion.script(build_parser(), shell)
    for path, _ in ALL:
        assert f'"{" ".join(path[:-1])}|{path[-1]}"' in text, path
