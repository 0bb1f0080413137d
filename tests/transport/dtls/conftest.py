"""Fixtures for the in-memory coaps:// tests: one throwaway PKI per session."""

from tls_helpers import pki

__all__ = ["pki"]
