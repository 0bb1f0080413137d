"""The examples in docs/client.md and in coaptcp.core.uri's docstring run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

import coaptcp.core.uri

DOCS = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def test_uri_module_docstring_examples() -> None:
    result = doctest.testmod(coaptcp.core.uri)
    assert result.attempted >= 3
    assert result.failed == 0


def test_client_md_uri_examples() -> None:
    text = DOCS.read_text()
    start = text.index(">>> from coaptcp.core.uri")
    block = text[start : text.index("```", start)]
    test = doctest.DocTestParser().get_doctest(block, {}, "client.md", str(DOCS), 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0
