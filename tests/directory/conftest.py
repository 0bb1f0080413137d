"""Fixtures of the resource directory tests."""

from __future__ import annotations

import pytest
from rd_helpers import DirectorySite


@pytest.fixture
def rd() -> DirectorySite:
    """A resource directory with the default limits, on a clock."""
    return DirectorySite()
