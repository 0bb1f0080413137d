"""``twistd coaptcp --rd`` serves the registered endpoints at ``/ep`` (or
``--rd-proxy-prefix``), bounded by the ``--rd-proxy-*`` options (RFC 9176 section 5)."""

from __future__ import annotations

import sys
import types

import pytest
from twisted.python import usage

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.proxy.endpoints import EndpointProxy
from coaptcp.server import Request, Resource, Response
from coaptcp.tap import plugin


def parse(*argv: str) -> plugin.Options:
    options = plugin.Options()
    options.parseOptions(list(argv))
    return options


def root_of(options: plugin.Options) -> Resource:
    service = plugin.makeService(options)
    root: Resource = service.factory.site.root  # type: ignore[attr-defined]
    return root


def test_rd_serves_the_endpoints_at_ep_with_the_bounds_given() -> None:
    root = root_of(parse("--tcp", "tcp:0", "--rd", "--rd-proxy-timeout", "7.5",
                         "--rd-proxy-max-in-flight", "9",
                         "--rd-proxy-max-in-flight-per-endpoint", "3",
                         "--rd-proxy-max-observations", "4"))
    proxy = root.children["ep"]
    assert isinstance(proxy, EndpointProxy)
    assert proxy.directory is root.children["rd"].directory  # type: ignore[attr-defined]
    limits = proxy.limits
    assert (limits.timeout, limits.max_in_flight, limits.max_in_flight_per_endpoint,
            limits.max_observations) == (7.5, 9, 3, 4)
    assert proxy.upstream.max_in_flight == 9
    assert proxy.upstream.observations.max_observations == 4
    request = Request(Code.GET, b"t", Options.build(uri_path=["ep", "node9", "x"]), b"")
    answer = service_site(root).handle(request)
    assert isinstance(answer, Response) and answer.code == Code.NOT_FOUND
    assert answer.payload == b"no endpoint 'node9' is registered"


def service_site(root: Resource) -> object:
    from coaptcp.server import Site

    return Site(root)


def test_without_rd_or_with_prefix_none_there_is_no_ep() -> None:
    assert "ep" not in root_of(parse("--tcp", "tcp:0")).children
    assert "ep" not in root_of(parse("--tcp", "tcp:0", "--rd", "--rd-proxy-prefix",
                                     "none")).children


def test_the_prefix_can_be_moved() -> None:
    root = root_of(parse("--tcp", "tcp:0", "--rd", "--rd-proxy-prefix", "/devices/by-name"))
    assert "ep" not in root.children
    assert isinstance(root.children["devices"].children["by-name"], EndpointProxy)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rd-proxy-timeout", "soon"], "--rd-proxy-timeout must be a number"),
        (["--rd-proxy-max-in-flight", "0"], "--rd-proxy-max-in-flight must be positive"),
        (["--rd-proxy-max-in-flight-per-endpoint", "-1"], "must be positive"),
        (["--rd-proxy-timeout", "nan"], "--rd-proxy-timeout must be positive"),
        (["--rd-proxy-prefix", "ep"], "must be a path such as /ep"),
        (["--rd-proxy-prefix", "/"], "must be a path such as /ep"),
        (["--rd-proxy-prefix", "/rd"], "clashes with /rd"),
    ],
)
def test_bad_rd_proxy_options_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse("--tcp", "tcp:0", "--rd", *argv)


def test_a_resource_tree_with_its_own_ep_is_a_usage_error_naming_the_way_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("ep_clash_site")
    tree = Resource()
    tree.putChild("ep", Resource())
    module.root = tree  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ep_clash_site", module)
    with pytest.raises(usage.UsageError, match="give --rd-proxy-prefix another path"):
        parse("--tcp", "tcp:0", "--rd", "--resource", "ep_clash_site.root")
    parse("--tcp", "tcp:0", "--rd", "--resource", "ep_clash_site.root",
          "--rd-proxy-prefix", "/devices")


def test_two_services_from_the_same_options_share_the_proxy() -> None:
    options = parse("--tcp", "tcp:0", "--rd")
    assert root_of(options).children["ep"] is root_of(options).children["ep"]
