"""A package registered bare: submodules import without its __init__; its own names still work."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from talos_init import bare_package

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A package whose __init__ counts its runs and re-exports a submodule's name, as pyroute2's does."""
    root = tmp_path / "barepkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(textwrap.dedent("""\
        import builtins
        builtins.barepkg_inits = getattr(builtins, "barepkg_inits", 0) + 1
        from barepkg.heavy import Heavy
        from barepkg.sub.leaf import Leaf
        """))
    (root / "heavy.py").write_text("class Heavy: pass\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "leaf.py").write_text("from barepkg import sub\nclass Leaf: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "barepkg"
    for name in [m for m in sys.modules if m == "barepkg" or m.startswith("barepkg.")]:
        del sys.modules[name]
    import builtins

    if hasattr(builtins, "barepkg_inits"):
        del builtins.barepkg_inits


def inits():
    import builtins

    return getattr(builtins, "barepkg_inits", 0)


def test_a_submodule_imports_without_the_package_init(pkg):
    bare_package.install(pkg)
    from barepkg.sub.leaf import Leaf  # noqa: F401 (and leaf's own "from barepkg import sub")

    assert inits() == 0
    assert "barepkg.heavy" not in sys.modules


def test_a_name_of_the_package_runs_its_init_once(pkg):
    bare_package.install(pkg)
    import barepkg.sub.leaf
    from barepkg import Heavy, Leaf

    assert inits() == 1 and Leaf is barepkg.sub.leaf.Leaf and Heavy.__name__ == "Heavy"
    import barepkg

    assert barepkg.Heavy is Heavy and inits() == 1


def test_dunder_probes_and_missing_names_do_not_run_it_twice(pkg):
    bare_package.install(pkg)
    import barepkg

    assert not hasattr(barepkg, "__wrapped__") and inits() == 0
    with pytest.raises(AttributeError, match="nothing"):
        barepkg.nothing  # noqa: B018 (runs __init__, then the name is still missing)
    assert inits() == 1


def test_an_imported_package_is_left_alone(pkg):
    import barepkg

    bare_package.install(pkg)
    assert sys.modules[pkg] is barepkg and inits() == 1


def test_what_is_not_a_package_is_refused_by_name():
    with pytest.raises(ImportError, match="no_such_pkg_here is not an importable package"):
        bare_package.install("no_such_pkg_here")
    assert "colorsys" not in sys.modules  # a plain module nobody here imports
    with pytest.raises(ImportError, match="colorsys is not an importable package"):
        bare_package.install("colorsys")
    assert "colorsys" not in sys.modules


def test_networkd_imports_a_fraction_of_pyroute2():
    """The daemon's own process: the route socket and the DHCP client, not NDB, IPDB or Plan 9;
    ``from pyroute2 import IPRoute`` afterwards still gets the whole package."""
    probe = ("import sys, talos_init.networkd.__main__\n"
             "print(' '.join(m for m in sys.modules if m.startswith('pyroute2')))\n"
             "from pyroute2 import IPRoute, NDB\n"
             "print(IPRoute.__module__, 'pyroute2.ndb.main' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    first = out[0].split()
    assert "pyroute2.iproute.linux" in first and "pyroute2.dhcp.client" in first
    assert not [m for m in first if m.startswith(("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.plan9"))]
    assert out[1] == "pyroute2.iproute.linux True"
