"""The arrows point one way: the dependency picture drawn from the imports (``scripts/deps.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("deps", ROOT / "scripts" / "deps.py")
deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deps)

# "No module of the apps is longer than about 450 lines" (the layout issue).
MAX_MODULE_LINES = 450


def test_no_app_imports_an_app_above_it():
    graph = deps.module_graph(deps.app_modules())
    assert deps.upward_arrows(graph) == []


def test_no_import_cycle_between_modules():
    graph = deps.module_graph(deps.app_modules())
    assert deps.cycles(graph) == []


def test_app_modules_stay_short():
    long_ones = {
        name: lines
        for name, path in deps.app_modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long_ones == {}


def test_every_app_module_says_what_it_owns():
    missing = [line for line in deps.module_lines(deps.app_modules()).splitlines() if line.endswith("(no docstring)")]
    assert missing == []


def test_upward_arrow_detected_on_a_made_up_tree(tmp_path, monkeypatch):
    """The checker itself: an observability module importing messenger is reported."""
    for app in deps.LAYERS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
    (tmp_path / "messenger" / "signals.py").write_text('"""Signals."""\n')
    (tmp_path / "observability" / "receivers.py").write_text('"""Receivers."""\nfrom messenger import signals\n')
    monkeypatch.setattr(deps, "ROOT", tmp_path)
    graph = deps.module_graph(deps.app_modules(tmp_path))
    assert deps.upward_arrows(graph) == [("observability.receivers", "messenger.signals")]


def test_cycle_detected_on_a_made_up_tree(tmp_path, monkeypatch):
    for app in deps.LAYERS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
    (tmp_path / "messenger" / "a.py").write_text("from messenger import b\n")
    (tmp_path / "messenger" / "b.py").write_text("from messenger.a import x\n")
    monkeypatch.setattr(deps, "ROOT", tmp_path)
    graph = deps.module_graph(deps.app_modules(tmp_path))
    assert deps.cycles(graph) == [["messenger.a", "messenger.b"]]
