"""Parsing ``twistd coaptcp`` options the way twistd does, for the tap tests."""

from __future__ import annotations

import pytest
from twisted.python import usage

from coaptcp.tap import plugin as tap


def parse(*args: str) -> tap.Options:
    """The plugin's options after parsing ``args``."""
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def usage_error(*args: str) -> str:
    """The usage error ``args`` give (the test fails if they parse)."""
    with pytest.raises(usage.UsageError) as info:
        parse(*args)
    return str(info.value)
