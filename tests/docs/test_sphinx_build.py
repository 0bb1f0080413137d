"""The documentation site builds with warnings as errors, and documents every public name.

Issue 18: the README's docs command, ``pip install '.[docs]'`` then ``python -m sphinx -W
-b html docs docs/_build/html``, runs here as written, into a fresh output folder (so that
nothing of an earlier build is reused and every page's warnings count).  Its install is
the test extra's: that holds the docs extra's packages, so the README's test command
(which ``.ci/run`` runs) installs what this build needs, and a missing one fails here, it
is not skipped.  A broken page, a docstring that is not valid reST or a reference that
points at two objects is a warning, so a failure; an intersphinx inventory that cannot be
fetched is not (docs/_ext/coaptcp_site.py), so the build needs no network.
"""

from __future__ import annotations

import configparser
import importlib
import inspect
import pkgutil
import re
import shlex
import sys
import zlib
from pathlib import Path
from types import ModuleType

import childproc
import pytest

import coaptcp

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: What docs/conf.py loads, module by module (the docs extra's packages).
BUILD_MODULES = ("sphinx", "myst_parser", "furo", "sphinxcontrib.mermaid")


def docs_command() -> tuple[str, list[str]]:
    """The README's docs command: its install, and the build's arguments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- docs-command -->\n```sh\n(.*?)\n```", readme)
    assert len(found) == 1, "README.md needs one <!-- docs-command --> block"
    install, build = (part.strip() for part in found[0].split("&&"))
    return install, shlex.split(build)


def test_the_readme_builds_the_docs_with_warnings_as_errors() -> None:
    install, build = docs_command()
    assert install == ".venv/bin/pip install -q '.[docs]'"
    assert build[:4] == [".venv/bin/python", "-m", "sphinx", "-W"]
    assert build[-2:] == ["docs", "docs/_build/html"]


def _extra(name: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    text = config["options.extras_require"][name]
    return {line.strip() for line in text.splitlines() if line.strip()}


def test_the_test_extra_installs_what_the_docs_build_needs() -> None:
    assert _extra("docs") <= _extra("test")


def _modules() -> list[ModuleType]:
    names = ["coaptcp"] + [
        info.name for info in pkgutil.walk_packages(coaptcp.__path__, "coaptcp.")
        if not info.name.endswith("__main__")
    ]
    return [importlib.import_module(name) for name in names]


def _documented(inventory: Path) -> set[str]:
    """The Python objects the site documents, from its objects.inv (Sphinx format 2)."""
    data = inventory.read_bytes()
    for _ in range(4):  # the four header lines, then zlib
        data = data[data.index(b"\n") + 1:]
    names = set()
    for line in zlib.decompress(data).decode().splitlines():
        name, role = line.split(" ", 2)[:2]
        if role.startswith("py:"):
            names.add(name)
    return names


def _spellings(value: object, module: str, attr: str, modules: list[ModuleType]) -> set[str]:
    """Every full name under which ``value`` may be documented."""
    found = {f"{module}.{attr}"}
    if inspect.isclass(value) or inspect.isfunction(value):
        found.add(f"{value.__module__}.{value.__qualname__}")
    found.update(
        f"{other.__name__}.{attr}" for other in modules if getattr(other, attr, None) is value
    )
    return found


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    for name in BUILD_MODULES:
        importlib.import_module(name)  # missing: pip install '.[docs]' (or '.[test]')
    _, build = docs_command()
    out = tmp_path / "html"
    # As written, with this venv's Python and a fresh output folder.
    argv = [sys.executable, *build[1:-1], str(out), "--keep-going", "-q"]
    done = childproc.run(argv, cwd=ROOT, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    # Every page of docs/ and of the tutorial is on the site.
    for page in [*DOCS.glob("*.md"), *DOCS.glob("tutorial/*.md")]:
        built = out / page.relative_to(DOCS).with_suffix(".html")
        assert built.is_file(), f"{page} was not built"

    # Every name of every module's __all__ is documented, once, under some spelling.
    documented = _documented(out / "objects.inv")
    modules = _modules()
    missing = [
        f"{module.__name__}.{attr}"
        for module in modules
        for attr in getattr(module, "__all__", ())
        if not _spellings(getattr(module, attr), module.__name__, attr, modules) & documented
    ]
    assert not missing, f"not in the API reference: {missing}"
    for module in modules:
        assert module.__name__ in documented, f"no page documents {module.__name__}"
