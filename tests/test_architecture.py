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


def _made_up_graph(tmp_path, monkeypatch, files: dict[str, str]) -> dict[str, set[str]]:
    """The module graph of a tree holding the layered apps and ``files`` (path -> source)."""
    for app in deps.LAYERS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
    for path, source in files.items():
        (tmp_path / path).write_text(source)
    monkeypatch.setattr(deps, "ROOT", tmp_path)
    return deps.module_graph(deps.app_modules(tmp_path))


def test_upward_arrow_detected_on_a_made_up_tree(tmp_path, monkeypatch):
    """The checker itself: an observability module importing messenger is reported."""
    graph = _made_up_graph(
        tmp_path,
        monkeypatch,
        {
            "messenger/signals.py": '"""Signals."""\n',
            "observability/receivers.py": '"""Receivers."""\nfrom messenger import signals\n',
        },
    )
    assert deps.upward_arrows(graph) == [("observability.receivers", "messenger.signals")]


def test_cycle_detected_on_a_made_up_tree(tmp_path, monkeypatch):
    graph = _made_up_graph(
        tmp_path,
        monkeypatch,
        {"messenger/a.py": "from messenger import b\n", "messenger/b.py": "from messenger.a import x\n"},
    )
    assert deps.cycles(graph) == [["messenger.a", "messenger.b"]]
