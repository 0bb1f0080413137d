"""Fixtures for the tap tests of the TLS and WebSocket listeners: the session's throwaway
PKI (see tls_helpers) and the in-memory WebSocket peer on a txaio clock (see ws_helpers)."""

from tls_helpers import pki
from ws_helpers import clock, peer, ws_factory

__all__ = ["clock", "peer", "pki", "ws_factory"]
