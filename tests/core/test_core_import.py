"""The sans-I/O core must import without Twisted (or autobahn) installed.

Runs in a fresh interpreter in which any import of ``twisted`` or ``autobahn`` (or their
submodules) raises ImportError.  The package root ``coaptcp/__init__.py`` exports the whole
public API eagerly (so mypy and ``dir()`` see it), so the script stands in an empty package
object for ``coaptcp`` and imports every module under ``coaptcp.core`` beneath it: any
import of Twisted, or of a coaptcp module outside the core, fails the test.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import childproc

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import os
    import pkgutil
    import sys

    BLOCKED = ("twisted", "autobahn", "zope.interface", "txaio")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            for blocked in BLOCKED:
                if name == blocked or name.startswith(blocked + "."):
                    raise ImportError(f"{name} is blocked: the core must not import it")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in ("twisted", "autobahn", "txaio"):
            del sys.modules[name]

    import types
    root = types.ModuleType("coaptcp")
    root.__path__ = [os.path.join(os.getcwd(), "coaptcp")]
    sys.modules["coaptcp"] = root

    class OutsideCore(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith("coaptcp.") and not name.startswith("coaptcp.core"):
                raise ImportError(f"{name} is outside the core: the core must not import it")
            return None

    sys.meta_path.insert(0, OutsideCore())

    import coaptcp.core
    names = ["coaptcp.core"]
    for info in pkgutil.walk_packages(coaptcp.core.__path__, "coaptcp.core."):
        importlib.import_module(info.name)
        names.append(info.name)

    for required in (
        "codes", "options", "message", "framing", "errors", "events", "connection",
        "uri", "mediatypes", "udp.framing", "udp.messaging", "udp.dedup",
        "udp.observeorder", "udp.blockwise",
    ):
        assert "coaptcp.core." + required in names, (required, names)

    leaked = sorted(n for n in sys.modules if n.split(".")[0] in ("twisted", "autobahn", "txaio"))
    assert not leaked, leaked

    # The public names resolve.
    for name in coaptcp.core.__all__:
        getattr(coaptcp.core, name)
    print("OK", len(names))
    """
)


def test_core_imports_without_twisted() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = childproc.run(
        [sys.executable, "-c", SCRIPT],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "importing coaptcp.core with twisted/autobahn blocked failed; "
        "coaptcp/__init__.py or a core module imports them:\n" + result.stdout + result.stderr
    )
    assert result.stdout.startswith("OK ")


def test_blocker_really_blocks() -> None:
    # Guard against a silently ineffective blocker: the same script must fail when a
    # module under the blocked name is imported.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    script = SCRIPT.replace(
        "import coaptcp.core\n", "import twisted.internet\nimport coaptcp.core\n", 1
    )
    assert script != SCRIPT
    result = childproc.run(
        [sys.executable, "-c", script],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "blocked" in result.stderr
