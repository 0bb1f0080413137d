"""The package's shape: layers that only import downwards, no import cycles, small modules.

Imports are read from the source (``ast``), at every depth: module level, inside functions
and under ``if TYPE_CHECKING:``, since each is a dependency of the module even when it runs
late.  The layers, from the bottom: ``core`` (pure, no Twisted), ``server`` (the resource
tree), ``channel`` (one connection), ``transport`` (TCP, TLS, WebSockets), ``client``,
``workers``, then the entry points ``tap`` and ``cli``, and ``testing``.  A subpackage may
import its own modules and those of layers below it; the package root re-exports the API.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "coaptcp"

#: Layer of each subpackage; a module may import modules of a lower or equal layer only
#: (equal: its own subpackage).
LAYERS = {
    "core": 0,
    "server": 1,
    "channel": 2,
    "transport": 3,
    "client": 4,
    "workers": 5,
    "proxy": 5,
    "directory": 5,
    "callhome": 5,
    "metrics": 5,
    "tap": 6,
    "cli": 6,
    "testing": 7,
}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every coaptcp module ``name`` imports, at any depth of its source."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "coaptcp":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                target = ".".join([*stem, node.module] if node.module else stem)
            else:
                target = node.module or ""
            if target.split(".")[0] != "coaptcp":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if sub in known else target


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target in imported(name, path, known) if target != name}
        for name, path in known.items()
    }


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS), subpackages ^ set(LAYERS)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


def test_imports_only_go_down() -> None:
    wrong = []
    for name, targets in graph().items():
        own = layer(name)
        if own is None:
            continue  # the package root re-exports the public API
        for target in targets:
            theirs = layer(target)
            if target == "coaptcp" or theirs is None or theirs > own:
                wrong.append(f"{name} -> {target}")
            elif theirs == own and target.split(".")[1] != name.split(".")[1]:
                wrong.append(f"{name} -> {target} (a sibling layer)")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from coaptcp.client import Client\n"
        "def f():\n    from ..server import resource\n    import coaptcp.tap.plugin\n"
    )
    found = set(imported("coaptcp.channel.probe", probe, modules()))
    assert found == {"coaptcp.client", "coaptcp.server.resource", "coaptcp.tap.plugin"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_small(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"


def test_every_package_is_installed() -> None:
    """setup.cfg lists packages by name (twisted.plugins must not be found by a search,
    or it would shadow Twisted's own): every coaptcp package must be in the list."""
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
    assert "twisted.plugins" in listed
