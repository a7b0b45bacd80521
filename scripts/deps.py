"""Draw the project's dependency picture from its imports, and check that the arrows point one way.

The apps are layered, top to bottom::

    chatbot        the Django project: settings, urls, wsgi, the health view
    messenger      the Messenger channel: webhook, inbox, pipeline, Send API, worker, commands
    conversations  conversations and messages, the history cache, the staff admin
    engine         the chat engine (rules or an OpenAI-compatible model)
    observability  events, the report, log formatting, PSID hashing: the shared base

A module may import its own app and any app below it, never one above, and no two modules may import
each other in a cycle. Every ``import``/``from ... import`` counts, including those inside functions:
a lazy import is still an arrow. Migrations are left out (Django writes them).

Usage::

    python scripts/deps.py            # the app picture, then exit 1 on any upward arrow or cycle
    python scripts/deps.py --modules  # also one line per module: what it owns (its docstring's first line)

``tests/test_architecture.py`` runs the same check, so an arrow pointing up fails CI.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top first. An app may import only apps at its own position or after it.
LAYERS = ("chatbot", "messenger", "conversations", "engine", "observability")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the layered apps, by dotted name (migrations left out)."""
    found: dict[str, Path] = {}
    for app in LAYERS:
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names each import statement reaches: ``from a import b`` gives ``a.b`` (a module, or a
    name defined in ``a``; :func:`module_graph` resolves it to the longest module that exists)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def module_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (an imported name resolves to the longest module)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for imported in _imported_names(tree, name, path.name == "__init__.py"):
            parts = imported.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in modules:
                    if candidate != name:
                        targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def _app(module: str) -> str:
    return module.split(".", 1)[0]


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of an app above the importer's own."""
    rank = {app: i for i, app in enumerate(LAYERS)}
    return sorted(
        (src, dst) for src, dsts in graph.items() for dst in dsts if rank[_app(dst)] < rank[_app(src)]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def app_picture(graph: dict[str, set[str]]) -> str:
    edges: dict[str, set[str]] = defaultdict(set)
    for src, dsts in graph.items():
        for dst in dsts:
            if _app(src) != _app(dst):
                edges[_app(src)].add(_app(dst))
    width = max(len(app) for app in LAYERS)
    lines = []
    for app in LAYERS:
        below = [other for other in LAYERS if other in edges[app]]
        lines.append(f"{app:<{width}}  -> {', '.join(below) if below else '(nothing)'}")
    return "\n".join(lines)


def module_lines(modules: dict[str, Path]) -> str:
    lines = []
    for name, path in modules.items():
        if not path.read_text().strip():
            continue  # an empty package marker owns nothing
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        # The first sentence-or-paragraph: lines up to the first blank one, joined.
        first = " ".join(doc.strip().split("\n\n", 1)[0].split()) if doc.strip() else "(no docstring)"
        lines.append(f"{name}: {first}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="also print what each module owns")
    args = parser.parse_args(argv)
    modules = app_modules()
    graph = module_graph(modules)
    print(app_picture(graph))
    if args.modules:
        print()
        print(module_lines(modules))
    problems = [f"upward: {src} imports {dst}" for src, dst in upward_arrows(graph)]
    problems += [f"cycle: {' <-> '.join(group)}" for group in cycles(graph)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
