"""Reading the process table: stat lines with odd names, and who descends from whom."""

from talos_init import proctree
from talos_init.proctree import Proc


def test_stat_with_spaces_and_parentheses_in_comm():
    """A comm such as 'a) (b' does not shift the fields that follow it."""
    line = "4242 (a) (b) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5000 0 0"
    assert proctree.parse_stat(line) == Proc(4242, 17, "S", False)


def test_kernel_thread_flag():
    """PF_KTHREAD in the flags field marks a kernel thread."""
    line = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0"
    assert proctree.parse_stat(line).kernel_thread


def test_descendants_follow_the_whole_chain_only():
    """Children, grandchildren and orphans re-parented to us count; siblings do not."""
    procs = {p.pid: p for p in [
        Proc(10, 1, "S", False), Proc(11, 10, "S", False), Proc(12, 11, "S", False),
        Proc(13, 10, "Z", False), Proc(20, 1, "S", False), Proc(21, 20, "S", False),
    ]}
    assert proctree.descendants(procs, 10) == {11, 12, 13}
    assert proctree.killable(procs, {11, 12, 13}) == {11, 12}
    assert proctree.descendants(procs, 99) == set()
