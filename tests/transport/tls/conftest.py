"""Fixtures for the in-memory coaps+tcp tests: one throwaway PKI per session."""

from __future__ import annotations

import pytest
from tls_helpers import PKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """CA, server, client, expired, wrongly named and untrusted certificates (PEM files)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
