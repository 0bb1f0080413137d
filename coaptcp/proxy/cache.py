"""The forward proxy's response cache (RFC 7252 section 5.6, as applied by 5.7.1).

Fresh 2.05 responses to GET are kept for their Max-Age (60 s when absent, section
5.10.5), keyed by the upstream URI and the request's cache-key options (every option but
the NoCacheKey ones, section 5.4.2, and Hop-Limit, RFC 8768 section 3).  A hit is
answered with the Max-Age it has left (section 5.6.1).  The cache is bounded in bytes;
the least recently used entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options, is_no_cache_key
from coaptcp.server import Response

__all__ = ["DEFAULT_CACHE_BYTES", "ResponseCache"]

#: Bytes of payload and options the cache holds at most by default.
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024
_DEFAULT_MAX_AGE = 60
_MAX_AGE = OptionNumber.MAX_AGE
_HOP_LIMIT = OptionNumber.HOP_LIMIT

CacheKey = tuple[str, tuple[tuple[int, bytes], ...]]


@dataclass
class _Entry:
    response: Response
    expires: float
    size: int


class ResponseCache:
    """Fresh responses by upstream request, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(uri: str, options: Options) -> CacheKey:
        """The cache key of a GET of ``uri`` with ``options`` (RFC 7252 section 5.4.2)."""
        kept = tuple(
            (number, value)
            for number, value in options
            if not is_no_cache_key(number) and number != _HOP_LIMIT
        )
        return uri, kept

    def get(self, key: CacheKey, now: float) -> Response | None:
        """A fresh response for ``key``, its Max-Age set to what is left; else ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = int(entry.expires - now)
        if left <= 0:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        cached = entry.response
        return Response(cached.code, cached.payload, options=cached.options.replace(_MAX_AGE, left))

    def put(self, key: CacheKey, response: Response, now: float) -> None:
        """Keep ``response`` if it may be cached: a 2.05 with a Max-Age above 0."""
        if response.code != Code.CONTENT:
            return
        max_age = response.options.get_uint(_MAX_AGE)
        max_age = _DEFAULT_MAX_AGE if max_age is None else max_age
        size = len(response.payload) + sum(len(value) + 4 for _, value in response.options)
        size += len(key[0]) + sum(len(value) + 4 for _, value in key[1])
        if max_age <= 0 or size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        while self.held_bytes + size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(response, now + max_age, size)
        self.held_bytes += size

    def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self.held_bytes -= entry.size
