"""Small rules of coaptcp's site that keep ``-W`` meaningful.

- **Offline inventories.** An intersphinx inventory that cannot be fetched (a machine
  without network) is reported, not an error: links to Python, Twisted and autobahn then
  stay plain text.  Sphinx (up to 9.x) logs "failed to reach any of the inventories" with
  no warning type, so ``suppress_warnings`` cannot name it; a filter on intersphinx's own
  logger lowers that one record to INFO before Sphinx's handlers, and so ``-W``, see it.
  Every other warning still fails the build.  The same for the front page's catch-all
  toctree entry, ``*``, which lists pages not named in the toctree yet, and may match
  none.
- **Files of the repository.** The Markdown pages link to files outside ``docs/`` (such as
  ``../benchmarks/README.md``), which GitHub shows; the site has no page for them, so such
  a link becomes its text, as a literal; a link to the README goes to the front page,
  which includes it.  A link to a file that does not exist, or to a page of ``docs/``
  that does not exist, is still a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


class Demote(logging.Filter):
    """Lower one warning of one Sphinx logger, told by how its message starts, to INFO."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith(self.start):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


#: (logger, how the message starts): warnings that say nothing is wrong with the pages.
#: Both are logged without a warning type, so ``suppress_warnings`` cannot name them.
DEMOTED = [
    # An inventory that cannot be fetched: its links stay text.
    ("sphinx.sphinx.ext.intersphinx", "failed to reach any of the inventories"),
    # The front page's catch-all ``*`` entry (for pages not listed by name yet) may be empty.
    ("sphinx.sphinx.directives.other", "toctree glob pattern %r didn't match any documents"),
]


class RepositoryFiles(SphinxPostTransform):
    """A Markdown link to an existing file outside ``docs/`` becomes a literal."""

    default_priority = 8  # before MyST's resolver (9), which would warn

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.app.srcdir).resolve()
        repository = srcdir.parent
        for node in list(self.document.findall(pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            target = Path(node["reftarget"])
            if not target.is_absolute():
                continue
            if target.is_relative_to(srcdir):
                continue  # a page of the site: MyST resolves it (or warns)
            if target.with_suffix(".md") == repository / "README.md":
                node["reftarget"] = self.config.root_doc  # the front page includes it
                continue
            for candidate in (target, target.with_suffix(".md")):
                if candidate.is_file() and candidate.is_relative_to(repository):
                    text = node.astext() or str(candidate.relative_to(repository))
                    node.replace_self(nodes.literal(text, text))
                    break


def setup(app: Sphinx) -> dict[str, Any]:
    for name, start in DEMOTED:
        logging.getLogger(name).addFilter(Demote(start))
    app.add_post_transform(RepositoryFiles)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
