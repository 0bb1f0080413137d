"""The API reference of coaptcp, one page per subpackage, built from ``__all__``.

``.. coaptcp-package:: coaptcp.server`` writes, for that package:

- its docstring and a table of every name its ``__all__`` exports, each linking to the one
  place the name is documented (the module that defines it);
- for each of its modules (not its subpackages, which have pages of their own), the
  module's docstring, every name of the module's ``__all__`` that the module defines
  (classes with their public members, functions, constants and type aliases), and the
  names it only re-exports, as links.

So every public name is documented exactly once, where it is defined, and a name
re-exported by a package (``coaptcp.Resource``, ``coaptcp.server.Resource``) links to that
place: ``missing-reference`` maps a re-exported spelling to the defining module's.  A
bare name in a signature or docstring (``Options``, ``Deferred``) is read through the
imports of the module that wrote it (:class:`QualifyReferences`), so it links to the
right object, here or in Twisted's or Python's inventory.

Two checks keep the reference complete as the package grows; each is a warning, so an
error under ``-W``: every package of coaptcp has a page, and every name that any module's
``__all__`` lists is defined by one of the modules.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.domains.python import PythonDomain
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

ROOT_PACKAGE = "coaptcp"


@dataclass
class ModuleInfo:
    """What one module defines and what it re-exports, in source order."""

    name: str
    module: ModuleType
    is_package: bool
    exported: list[str]
    defined: list[str] = field(default_factory=list)
    reexported: list[str] = field(default_factory=list)


def _top_level_names(tree: ast.Module) -> list[str]:
    """Names bound at the top level of a module (also inside top-level if/try blocks)."""
    names: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for statement in body:
            if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.append(statement.name)
            elif isinstance(statement, ast.Assign):
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        names.append(target.id)
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                names.append(statement.target.id)
            elif isinstance(statement, ast.If):
                visit(statement.body)
                visit(statement.orelse)
            elif isinstance(statement, ast.Try):
                visit(statement.body)
                for handler in statement.handlers:
                    visit(handler.body)
                visit(statement.orelse)
                visit(statement.finalbody)

    visit(tree.body)
    return names


def _imports(module: ModuleType, tree: ast.Module) -> dict[str, str]:
    """Every name the module binds by importing, with the full name it stands for."""
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    found: dict[str, str] = {}
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname:
                    found[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    found[head] = head
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - statement.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in statement.names:
                found[alias.asname or alias.name] = f"{base}.{alias.name}"
    return found


class Catalogue:
    """Every module of the package, and where each public name is defined."""

    def __init__(self, root: str = ROOT_PACKAGE) -> None:
        package = importlib.import_module(root)
        names = [root] + [
            info.name
            for info in pkgutil.walk_packages(package.__path__, root + ".")
            if not info.name.endswith("__main__")
        ]
        self.modules: dict[str, ModuleInfo] = {}
        #: id(object) -> the full name of the place that defines it
        self._homes: dict[int, str] = {}
        self._bound: dict[str, list[str]] = {}
        #: module -> {name bound by an import (also under TYPE_CHECKING): its full name}
        self._imports: dict[str, dict[str, str]] = {}
        for name in names:
            module = importlib.import_module(name)
            tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
            bound = _top_level_names(tree)
            imports = _imports(module, tree)
            exported = list(getattr(module, "__all__", []))
            info = ModuleInfo(name, module, hasattr(module, "__path__"), exported)
            for attr in exported:
                value = getattr(module, attr)
                owner = getattr(value, "__module__", None)
                if inspect.isclass(value) or inspect.isfunction(value):
                    mine = owner == name and value.__name__ == attr
                else:
                    mine = attr in bound and attr not in imports
                (info.defined if mine else info.reexported).append(attr)
                if mine:
                    self._homes[id(value)] = f"{name}.{attr}"
            self.modules[name] = info
            self._bound[name] = bound
            self._imports[name] = imports
        for info in list(self.modules.values()):
            for attr in info.reexported:
                self._adopt(getattr(info.module, attr), attr)
        for name, info in self.modules.items():
            bound = self._bound[name]
            info.defined.sort(key=lambda attr: bound.index(attr) if attr in bound else 0)

    def _adopt(self, value: object, attr: str) -> None:
        """Give a home to a name a package exports but its module leaves out of ``__all__``."""
        if self.home(value) is not None:
            return
        for name, info in self.modules.items():
            if (
                attr in self._bound[name]
                and attr not in self._imports[name]
                and getattr(info.module, attr, None) is value
            ):
                info.defined.append(attr)
                self._homes[id(value)] = f"{name}.{attr}"
                return

    def qualify(self, module: str, target: str) -> str | None:
        """``target`` as written in ``module`` (``Options``, ``defer.Deferred``), in full."""
        head, _, rest = target.partition(".")
        imported = self._imports.get(module, {}).get(head)
        if imported is None:
            if head in self._bound.get(module, ()):
                imported = f"{module}.{head}"
            else:
                return None
        return f"{imported}.{rest}" if rest else imported

    def home(self, value: object) -> str | None:
        """The full name under which ``value`` is documented, if it is public."""
        return self._homes.get(id(value))

    def packages(self) -> list[str]:
        return [name for name, info in self.modules.items() if info.is_package]

    def children(self, package: str) -> list[ModuleInfo]:
        """The package's own modules (not subpackages), sorted by name."""
        prefix = package + "."
        return sorted(
            (
                info
                for name, info in self.modules.items()
                if name.startswith(prefix) and "." not in name[len(prefix):]
                and not info.is_package
            ),
            key=lambda info: info.name,
        )

    def subpackages(self, package: str) -> list[str]:
        prefix = package + "."
        return sorted(
            name for name in self.packages()
            if name.startswith(prefix) and "." not in name[len(prefix):]
        )

    def resolve(self, dotted: str) -> str | None:
        """The documented full name of a re-exported spelling (``coaptcp.Resource.render``)."""
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:cut])
            info = self.modules.get(module_name)
            if info is None:
                continue
            value = getattr(info.module, parts[cut], None)
            home = self.home(value) if value is not None else None
            if home is None:
                return None
            return ".".join([home, *parts[cut + 1:]])
        return None

    def orphans(self) -> list[str]:
        """Names some ``__all__`` lists that no module defines (they would be undocumented)."""
        missing = []
        for info in self.modules.values():
            for attr in info.reexported:
                if self.home(getattr(info.module, attr)) is None:
                    missing.append(f"{info.name}.{attr}")
        return missing


_CATALOGUE: Catalogue | None = None


def catalogue() -> Catalogue:
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = Catalogue()
    return _CATALOGUE


def _directive_for(value: Any) -> str:
    if inspect.isclass(value):
        if issubclass(value, BaseException):
            return "autoexception"
        return "autoclass"
    if inspect.isfunction(value):
        return "autofunction"
    return "autodata"


class PackageDirective(SphinxDirective):
    """``.. coaptcp-package:: NAME``: the reference of one package and its modules."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        cat = catalogue()
        if name not in cat.modules or not cat.modules[name].is_package:
            raise self.error(f"{name} is not a package of {ROOT_PACKAGE}")
        self.env.note_dependency(inspect.getfile(cat.modules[name].module))
        lines: list[str] = [f".. automodule:: {name}", ""]
        package = cat.modules[name]
        if package.exported:
            # Full names in the table: no current module, or autosummary objects to them.
            lines += [".. rubric:: Exported names", "", ".. py:currentmodule:: None", "",
                      ".. autosummary::", ""]
            for attr in package.exported:
                home = cat.home(getattr(package.module, attr)) or f"{name}.{attr}"
                lines.append(f"   ~{home}")
            lines.append("")
        subpackages = cat.subpackages(name)
        if subpackages:
            lines += [".. rubric:: Subpackages", ""]
            lines += [f"- :mod:`{sub}`" for sub in subpackages]
            lines.append("")
        for info in cat.children(name):
            self.env.note_dependency(inspect.getfile(info.module))
            lines += [info.name, "-" * len(info.name), "", f".. automodule:: {info.name}", ""]
            for attr in info.defined:
                directive = _directive_for(getattr(info.module, attr))
                lines.append(f".. {directive}:: {info.name}.{attr}")
                if directive in ("autoclass", "autoexception"):
                    lines += ["   :members:", "   :undoc-members:", "   :show-inheritance:"]
                lines.append("")
            if info.reexported:
                links = ", ".join(
                    f":py:obj:`~{cat.home(getattr(info.module, attr))}`"
                    for attr in info.reexported
                )
                lines += [f"Also exported here: {links}.", ""]
        holder = nodes.section()
        holder.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=f"<{name}>"), holder)
        return list(holder.children)


def _resolve_reexport(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    """Point ``coaptcp.Resource`` (or ``Resource`` inside ``coaptcp``) at its documented home."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    module = node.get("py:module")
    candidates = [target] if target.startswith(ROOT_PACKAGE) else []
    if module:
        candidates.append(f"{module}.{target}")
        clsname = node.get("py:class")
        if clsname:
            candidates.append(f"{module}.{clsname}.{target}")
    cat = catalogue()
    for candidate in candidates:
        home = cat.resolve(candidate)
        if home and home != candidate:
            domain = env.get_domain("py")
            retarget = node.deepcopy()
            retarget["reftarget"] = home
            found = domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], home, retarget, contnode
            )
            if found is not None:
                return found
    return None


class QualifyReferences(SphinxPostTransform):
    """Read a name in a signature or docstring as the module that wrote it reads it.

    ``Options`` in a signature of ``coaptcp.tap.plugin`` is ``coaptcp.tap.plugin.Options``
    but in ``coaptcp.core.message`` the ``Options`` it imports: where the Python domain
    finds no single target for a name, the module's own imports (also those under
    ``TYPE_CHECKING``, which string annotations use) say which object it is.
    """

    default_priority = 5  # before sphinx.transforms.post_transforms.ReferencesResolver

    def run(self, **kwargs: Any) -> None:
        domain = cast(PythonDomain, self.env.get_domain("py"))
        cat = catalogue()
        for node in self.document.findall(pending_xref):
            module = node.get("py:module")
            if node.get("refdomain") != "py" or module not in cat.modules:
                continue
            target = node["reftarget"]
            found = domain.find_obj(
                self.env, module, node.get("py:class"), target, node["reftype"],
                1 if node.get("refspecific") else 0,
            )
            if len(found) == 1:
                continue
            qualified = cat.qualify(module, target)
            if qualified and qualified != target:
                node["reftarget"] = qualified
                node["refspecific"] = False


def _no_generic_signature(
    app: Sphinx, what: str, name: str, obj: object, options: object, signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """A class that takes whatever its base takes (a Protocol, most exceptions) shows none."""
    if what in ("class", "exception") and signature == "(*args, **kwargs)":
        return "", return_annotation
    return None


def _check_coverage(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Every package has a page; every exported name has a definition to document."""
    wanted = set(catalogue().packages())
    pages = {
        Path(doc).name for doc in env.found_docs if doc.startswith("api/")
    }
    for package in sorted(wanted - pages):
        logger.warning("the API reference has no page for %s: add docs/api/%s.rst", package,
                       package)
    for orphan in catalogue().orphans():
        logger.warning("%s is exported but defined by no module of %s", orphan, ROOT_PACKAGE)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("coaptcp-package", PackageDirective)
    app.add_post_transform(QualifyReferences)
    app.connect("missing-reference", _resolve_reexport)
    app.connect("env-before-read-docs", _check_coverage)
    app.connect("autodoc-process-signature", _no_generic_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
