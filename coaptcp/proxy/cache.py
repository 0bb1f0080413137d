"""The proxy's response cache (RFC 7252 section 5.6, as applied by 5.7.1).

Fresh 2.05 responses to GET are kept for their Max-Age (60 s when absent, section
5.10.5), keyed by the upstream URI and the request's cache-key options: every option but
the NoCacheKey ones (section 5.4.2), Hop-Limit (RFC 8768 section 3) and ETag, which asks
to validate a stored response rather than naming another one (section 5.10.6.2).  A hit
is answered with the Max-Age it has left (section 5.6.1).

A response that carried an ETag stays after it went stale, so that the proxy can
validate it instead of fetching it again (section 5.6.2): :meth:`ResponseCache.lookup`
gives the ETag to send upstream, and a 2.03 Valid for it makes the stored response fresh
again for the Max-Age of the 2.03 (:meth:`ResponseCache.revalidate`).  The cache is
bounded in bytes, stale entries included; the least recently used entries go first.

A 2.02 Deleted or 2.04 Changed to a request for a URI marks every response stored for it
as not fresh (sections 5.9.1.2 and 5.9.1.4; :meth:`ResponseCache.invalidate`): the next
GET goes upstream, with the ETag of the stored response when it has one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options, is_no_cache_key
from coaptcp.server import Response

__all__ = ["DEFAULT_CACHE_BYTES", "ENTRY_OVERHEAD", "CacheKey", "CacheLookup", "ResponseCache"]

#: Bytes the cache holds at most by default (payloads, options and bookkeeping).
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024
#: What an entry costs beyond its payload and option bytes (the response, its options,
#: the key and the two tables' slots), counted against the bound: measured with
#: tracemalloc at about 1,100 bytes on CPython 3.11, so that many small answers under
#: distinct keys cannot make the cache take many times its bound.
ENTRY_OVERHEAD = 1152
_DEFAULT_MAX_AGE = 60
_MAX_AGE = OptionNumber.MAX_AGE
_ETAG = OptionNumber.ETAG
_NOT_IN_KEY = frozenset({OptionNumber.HOP_LIMIT, _ETAG})

CacheKey = tuple[str, tuple[tuple[int, bytes], ...]]


@dataclass
class _Entry:
    response: Response
    etag: bytes | None
    expires: float
    size: int


@dataclass(frozen=True)
class CacheLookup:
    """What the cache holds for a request.

    :ivar fresh: a fresh response, its Max-Age set to what is left; ``None`` otherwise.
    :ivar etag: the ETag of a stale stored response, to validate it upstream with.
    """

    fresh: Response | None = None
    etag: bytes | None = None


_MISS = CacheLookup()


def _max_age(response: Response) -> int:
    value = response.options.get_uint(_MAX_AGE)
    return _DEFAULT_MAX_AGE if value is None else value


def _with_max_age(response: Response, left: int) -> Response:
    options = response.options.replace(_MAX_AGE, left)
    return Response(response.code, response.payload, options=options)


class ResponseCache:
    """Responses by upstream request, bounded by ``max_bytes``: their payload and option
    bytes, their keys and :data:`ENTRY_OVERHEAD` for each."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        #: Hits answered fresh, and stale responses made fresh again by a 2.03.
        self.hits = 0
        self.revalidations = 0
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        #: The keys stored for each URI (a key per set of cache-key options).
        self._by_uri: dict[str, set[CacheKey]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(uri: str, options: Options) -> CacheKey:
        """The cache key of a GET of ``uri`` with ``options`` (RFC 7252 section 5.4.2)."""
        kept = tuple(
            (number, value)
            for number, value in options
            if not is_no_cache_key(number) and number not in _NOT_IN_KEY
        )
        return uri, kept

    def get(self, key: CacheKey, now: float) -> Response | None:
        """A fresh response for ``key``, its Max-Age set to what is left; else ``None``."""
        return self.lookup(key, now).fresh

    def lookup(self, key: CacheKey, now: float) -> CacheLookup:
        """The fresh response for ``key``, or the ETag to validate a stale one with."""
        entry = self._entries.get(key)
        if entry is None:
            return _MISS
        left = int(entry.expires - now)
        if left <= 0:
            if entry.etag is None:
                self._drop(key)
                return _MISS
            return CacheLookup(etag=entry.etag)
        self._entries.move_to_end(key)
        self.hits += 1
        return CacheLookup(fresh=_with_max_age(entry.response, left))

    def revalidate(self, key: CacheKey, valid: Response, now: float) -> Response | None:
        """A 2.03 Valid came for ``key``: if it names the stored response's ETag, make that
        response fresh for the 2.03's Max-Age and return it (RFC 7252 section 5.9.1.3)."""
        entry = self._entries.get(key)
        etags = valid.options.etag
        if entry is None or entry.etag is None or etags != (entry.etag,):
            return None
        max_age = _max_age(valid)
        if max_age <= 0:
            self._drop(key)
            return _with_max_age(entry.response, 0)
        entry.expires = now + max_age
        self._entries.move_to_end(key)
        self.revalidations += 1
        return _with_max_age(entry.response, max_age)

    def invalidate(self, uri: str, now: float) -> int:
        """Mark every response stored for ``uri`` as not fresh, as a 2.02 Deleted or a
        2.04 Changed for it requires (RFC 7252 sections 5.9.1.2 and 5.9.1.4).  Responses
        with an ETag stay, to be validated; the others go.  Returns how many were fresh."""
        marked = 0
        for key in list(self._by_uri.get(uri, ())):
            entry = self._entries[key]
            if entry.expires > now:
                marked += 1
            if entry.etag is None:
                self._drop(key)
            else:
                entry.expires = min(entry.expires, now)
        return marked

    def put(self, key: CacheKey, response: Response, now: float) -> None:
        """Keep ``response`` if it may be cached: a 2.05 with a Max-Age above 0, or with an
        ETag (kept stale, to be validated)."""
        if response.code != Code.CONTENT:
            return
        etags = response.options.etag
        etag = etags[0] if len(etags) == 1 else None
        max_age = _max_age(response)
        size = ENTRY_OVERHEAD + len(response.payload)
        size += sum(len(value) + 4 for _, value in response.options)
        size += len(key[0]) + sum(len(value) + 4 for _, value in key[1])
        if key in self._entries:
            self._drop(key)
        if (max_age <= 0 and etag is None) or size > self.max_bytes:
            return
        while self.held_bytes + size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(response, etag, now + max_age, size)
        self._by_uri.setdefault(key[0], set()).add(key)
        self.held_bytes += size

    def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self.held_bytes -= entry.size
        keys = self._by_uri[key[0]]
        keys.discard(key)
        if not keys:
            del self._by_uri[key[0]]
