"""``twistd coaptcp --rd`` and its bounds: parsed, checked, and given to the directory."""

from __future__ import annotations

import pytest
from twisted.python import usage

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.directory import ResourceDirectory
from coaptcp.directory.resources import DirectoryResource
from coaptcp.server import Request, Response
from coaptcp.tap import plugin


def parse(*argv: str) -> plugin.Options:
    options = plugin.Options()
    options.parseOptions(list(argv))
    return options


def site_of(options: plugin.Options) -> object:
    service = plugin.makeService(options)
    return service.factory.site  # type: ignore[attr-defined]


def directory_of(site: object) -> ResourceDirectory:
    resource = site.root.children["rd"]  # type: ignore[attr-defined]
    assert isinstance(resource, DirectoryResource)
    return resource.directory


def get(site: object, *path: str, query: tuple[str, ...] = ()) -> Response:
    request = Request(Code.GET, b"t", Options.build(uri_path=path, uri_query=query), b"")
    answer = site.handle(request)  # type: ignore[attr-defined]
    assert isinstance(answer, Response)
    return answer


def test_without_rd_there_is_no_directory() -> None:
    site = site_of(parse("--tcp", "tcp:0"))
    assert "rd" not in site.root.children  # type: ignore[attr-defined]
    assert b"core.rd" not in get(site, ".well-known", "core").payload


def test_rd_serves_a_directory_with_the_bounds_given() -> None:
    options = parse("--tcp", "tcp:0", "--rd", "--rd-max-registrations", "7",
                    "--rd-max-per-peer", "3", "--rd-max-payload", "1000", "--rd-max-links", "9",
                    "--rd-max-total-links", "50", "--rd-default-lifetime", "3600")
    site = site_of(options)
    limits = directory_of(site).limits
    assert (limits.max_registrations, limits.max_per_peer, limits.max_payload,
            limits.max_links, limits.max_total_links, limits.default_lifetime) == (
        7, 3, 1000, 9, 50, 3600)
    wellknown = get(site, ".well-known", "core", query=("rt=core.rd*",)).payload.decode()
    assert "</rd>;rt=\"core.rd\"" in wellknown and "</rd-lookup/res>" in wellknown
    assert get(site, "rd-lookup", "ep").code == Code.CONTENT
    # The demo site is still there beside it.
    assert get(site, "hello").code == Code.CONTENT


def test_the_defaults_are_the_directorys() -> None:
    limits = directory_of(site_of(parse("--tcp", "tcp:0", "--rd"))).limits
    assert (limits.max_registrations, limits.max_per_peer, limits.default_lifetime) == (
        10_000, 100, 90_000)


def test_udp_listeners_serve_the_same_directory() -> None:
    from twisted.application.internet import UDPServer

    service = plugin.makeService(parse("--tcp", "tcp:0", "--udp", "udp:0", "--rd"))
    [udp] = [s for s in service if isinstance(s, UDPServer)]  # type: ignore[attr-defined]
    assert "rd" in udp.args[1].site.root.children


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rd-max-registrations", "0"], "--rd-max-registrations: max_registrations must be"),
        (["--rd-max-per-peer", "many"], "--rd-max-per-peer must be a whole number"),
        (["--rd-max-payload", "-5"], "--rd-max-payload: max_payload must be a positive"),
        (["--rd-default-lifetime", str(2**32)], "--rd-default-lifetime: default_lifetime"),
        (["--workers", "2"], "--rd cannot be combined with --workers"),
    ],
)
def test_bad_rd_options_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse("--tcp", "tcp:0", "--rd", *argv)


def test_a_resource_tree_with_its_own_rd_is_a_usage_error(tmp_path: object,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import sys
    import types

    from coaptcp.server import Resource

    module = types.ModuleType("rd_clash_site")
    root = Resource()
    root.putChild("rd", Resource())
    module.root = root  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rd_clash_site", module)
    with pytest.raises(usage.UsageError, match="--rd needs /rd, and the resource tree has one"):
        parse("--tcp", "tcp:0", "--rd", "--resource", "rd_clash_site.root")
    parse("--tcp", "tcp:0", "--resource", "rd_clash_site.root")  # without --rd: fine


def test_two_services_from_the_same_options_share_the_directory() -> None:
    options = parse("--tcp", "tcp:0", "--rd")
    assert directory_of(site_of(options)) is directory_of(site_of(options))
