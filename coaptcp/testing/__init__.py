"""Helpers for testing applications built on coaptcp: throwaway certificates (and, in
later releases, in-memory peers).  Never for production.
"""

from __future__ import annotations

from coaptcp.testing.certs import (
    CertificateAuthority,
    Issued,
    write_test_setup,
)

__all__ = [
    "CertificateAuthority",
    "Issued",
    "write_test_setup",
]
