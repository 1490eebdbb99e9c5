"""The layout's rules (issue 27), checked on the source tree: they fail the moment one is broken.

- no module over 400 lines, the tests' included;
- no ``bench*.py`` outside the benchmark package ``rest_lsp/bench``;
- nothing under ``indexer/`` imports ``rest_lsp``: the datastore library stands alone;
- no import cycle between modules, counting imports inside functions as well.
"""

from __future__ import annotations

from pathlib import Path

from import_graph import REPO, cycles, import_graph, imports_of, modules

PACKAGES = ("rest_lsp", "indexer", "training")
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules(REPO, (*PACKAGES, "tests")).items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_benchmarks_live_in_the_benchmark_package_only():
    stray = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("bench*.py")
             if (REPO / "rest_lsp" / "bench") not in p.parents]
    assert stray == []
    assert (REPO / "rest_lsp" / "bench" / "__init__.py").is_file()


def test_the_indexer_imports_nothing_from_rest_lsp():
    found = {name: sorted(t for t in imports_of(path, name) if t == "rest_lsp" or t.startswith("rest_lsp."))
             for name, path in modules(REPO, ("indexer",)).items()}
    assert {k: v for k, v in found.items() if v} == {}
    assert len(found) > 20  # the walk saw the package


def test_no_import_cycle_anywhere():
    graph = import_graph(REPO, PACKAGES)
    assert len(graph) > 100
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")  # function-level counts
    (pkg / "b.py").write_text("from pkg.a import f\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"]]
