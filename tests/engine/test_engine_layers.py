"""The engine's layer rules, read from the source: only ``mritune.engine`` imports fastai, and the
engine never imports optuna (import-linter checks the same in ``make lint``)."""

from __future__ import annotations

import ast
from pathlib import Path

import mritune

PACKAGE = Path(mritune.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_nothing_outside_the_engine_imports_fastai():
    engine = PACKAGE / "engine"
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in _modules(PACKAGE)
        if engine not in p.parents and "fastai" in _imported_roots(p)
    ]
    assert offenders == []


def test_the_engine_imports_fastai_and_never_optuna():
    engine_files = _modules(PACKAGE / "engine")
    assert any("fastai" in _imported_roots(p) for p in engine_files)
    assert [p.name for p in engine_files if "optuna" in _imported_roots(p)] == []
