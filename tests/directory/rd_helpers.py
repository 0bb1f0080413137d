"""What the directory tests share: a directory in a Site on a clock, and requests made
to it as they arrive from a peer (RFC 9176 sections 5 and 6)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.directory import DirectoryLimits, ResourceDirectory, install_directory
from coaptcp.server import Request, Resource, Response, Site
from coaptcp.server.tlsinfo import TLSInfo

__all__ = ["LINKS", "DirectorySite"]

#: The registration payload of RFC 9176 figure 8.
LINKS = (b'</sensors/temp>;rt=temperature-c;if=sensor,'
         b'<http://www.example.com/sensors/temp>;anchor="/sensors/temp";rel=describedby')


class DirectorySite:
    """A resource directory served by a Site, on a MemoryReactorClock."""

    def __init__(self, limits: DirectoryLimits | None = None, **kwargs: Any) -> None:
        self.clock = MemoryReactorClock()
        self.root = Resource()
        self.directory: ResourceDirectory = install_directory(
            self.root, reactor=self.clock, limits=limits, **kwargs)
        self.site = Site(self.root)

    def request(
        self,
        method: Code,
        path: str,
        *query: str,
        payload: bytes = b"",
        peer: tuple[str, int] = ("192.0.2.1", 40000),
        content_format: int | None = None,
        accept: int | None = None,
        tls: TLSInfo | None = None,
        channel: object = None,
    ) -> Response:
        """The Site's answer to a request from ``peer`` (over UDP unless ``channel``)."""
        options = Options.build(uri_path=[s for s in path.split("/") if s], uri_query=query,
                                content_format=content_format, accept=accept)
        kind = IPv6Address if ":" in peer[0] else IPv4Address
        request = Request(method, b"tk", options, payload, peer=kind("UDP", *peer),
                          secure=tls is not None, tls=tls, channel=channel)
        answer = self.site.handle(request)
        assert isinstance(answer, Response), answer
        return answer

    def register(self, *query: str, payload: bytes = LINKS, **kwargs: Any) -> str:
        """Register; the location of the registration (``"rd/<key>"``)."""
        answer = self.request(Code.POST, "rd", *query, payload=payload, **kwargs)
        assert answer.code == Code.CREATED, (answer.code, answer.payload)
        return "/".join(answer.options.location_path)

    def lookup(self, kind: str, *query: str, **kwargs: Any) -> str:
        """The payload of a lookup (``kind`` ``"ep"`` or ``"res"``)."""
        answer = self.request(Code.GET, f"rd-lookup/{kind}", *query, **kwargs)
        assert answer.code == Code.CONTENT, (answer.code, answer.payload)
        assert answer.content_format == 40
        return answer.payload.decode()
