"""How many bytes wait in a pyOpenSSL memory BIO, without reading them.

A :class:`~OpenSSL.SSL.Connection` made for memory BIOs (``Connection(context, None)``)
raises ``WantReadError`` from ``bio_read`` when OpenSSL wrote nothing, and from ``recv``
when nothing is left to decrypt: an exception made and caught on every read of the TLS
(RFC 8323 section 9) and DTLS (RFC 7252 section 9) paths.  pyOpenSSL 26 keeps the BIOs
in ``_from_ssl`` (what OpenSSL wrote) and ``_into_ssl`` (what it is to read), and its cffi
binding has ``BIO_get_mem_data``; with ``NULL`` for the data pointer, it returns the
number of bytes held.  These are not pyOpenSSL's public API: :data:`MEM_DATA` is ``None``
where they are missing, and the callers then read and catch as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

__all__ = ["MEM_DATA", "NULL", "output_waiting"]

#: ``BIO_get_mem_data(bio, NULL)``: the bytes a memory BIO holds (``None``: unavailable).
MEM_DATA: Callable[[Any, Any], int] | None = getattr(
    getattr(SSL, "_lib", None), "BIO_get_mem_data", None
)
#: The cffi ``NULL`` to pass as the data pointer.
NULL: Any = getattr(getattr(SSL, "_ffi", None), "NULL", None)


def output_waiting(connection: SSL.Connection) -> bool:
    """Whether OpenSSL wrote bytes for the peer that ``bio_read`` would return (always
    ``True`` where that cannot be asked: the caller then reads and catches)."""
    return MEM_DATA is None or bool(MEM_DATA(connection._from_ssl, NULL))  # type: ignore[attr-defined]
