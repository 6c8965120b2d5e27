"""The image tree: entries live at their real path, symlinks are followed like the kernel does."""

import pytest

from initramfs.tree import Tree


def _tree():
    t = Tree()
    t.mkdir("/usr/lib", "layout")
    t.add_symlink("/lib", "usr/lib", "layout")
    return t


def test_file_under_a_symlinked_directory_is_stored_at_the_real_path():
    """/lib/modules/x lands at /usr/lib/modules/x, since the cpio unpacker does not follow links."""
    t = _tree()
    t.add_file("/lib/modules/x", "modules", data=b"1")
    assert t.get("/usr/lib/modules/x") is not None
    assert "/lib/modules/x" not in t.entries


def test_resolve_follows_relative_and_absolute_links():
    """resolve() follows a relative link and an absolute link chain to the final path."""
    t = _tree()
    t.add_file("/usr/bin/python3.11", "python", data=b"\x7fELF")
    t.add_symlink("/init", "/usr/bin/python3.11", "init")
    t.add_symlink("/usr/bin/py", "python3.11", "x")
    assert t.resolve("/init") == "/usr/bin/python3.11"
    assert t.resolve("/usr/bin/py") == "/usr/bin/python3.11"
    assert t.resolve("/lib/modules") == "/usr/lib/modules"


def test_same_path_with_different_content_is_an_error_naming_both_components():
    """Two components claiming one path with different content is refused, naming both."""
    t = _tree()
    t.add_file("/etc/x", "etc", data=b"a")
    with pytest.raises(ValueError, match=r"/etc/x.*etc and extra"):
        t.add_file("/etc/x", "extra", data=b"b")


def test_iteration_is_sorted():
    """Entries come out sorted by path, whatever the order they were added in."""
    t = Tree()
    for p in ("/b", "/a/z", "/a/b"):
        t.add_file(p, "x", data=b"")
    paths = [e.path for e in t]
    assert paths == sorted(paths)
