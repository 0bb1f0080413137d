"""``twistd coaptcp --proxy`` and its bounds: parsed, checked, and given to the proxy."""

from __future__ import annotations

import pytest
from twisted.python import usage

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.proxy import ForwardProxy
from coaptcp.server import Request, Response
from coaptcp.tap import plugin


def parse(*argv: str) -> plugin.Options:
    options = plugin.Options()
    options.parseOptions(list(argv))
    return options


def site_of(options: plugin.Options) -> object:
    service = plugin.makeService(options)
    return service.factory.site  # type: ignore[attr-defined]


def test_without_proxy_a_proxy_request_gets_5_05() -> None:
    site = site_of(parse("--tcp", "tcp:0"))
    assert site.proxy is None  # type: ignore[attr-defined]
    request = Request(Code.GET, b"t", Options([(OptionNumber.PROXY_URI, "coap://h/")]), b"")
    answer = site.handle(request)  # type: ignore[attr-defined]
    assert isinstance(answer, Response) and answer.code == Code.PROXYING_NOT_SUPPORTED


def test_the_networks_and_bounds_reach_the_proxy() -> None:
    options = parse("--tcp", "tcp:0", "--proxy", "127.0.0.0/8", "--proxy", "fd00::/8",
                    "--proxy-timeout", "7.5", "--proxy-max-in-flight", "10",
                    "--proxy-max-in-flight-per-peer", "2", "--proxy-cache-bytes", "0")
    proxy = site_of(options).proxy  # type: ignore[attr-defined]
    assert isinstance(proxy, ForwardProxy)
    assert proxy.policy.allows("127.0.0.5") and proxy.policy.allows("fd00::1")
    assert not proxy.policy.allows("192.0.2.1")
    upstream = proxy.upstream
    assert (upstream.timeout, upstream.max_in_flight, upstream.max_in_flight_per_peer) == (
        7.5, 10, 2)
    assert proxy.cache is None
    table = upstream.observations
    assert (table.max_observations, table.max_observers) == (1024, 10_000)
    assert upstream.client.max_connections == 1024
    bounded = parse("--tcp", "tcp:0", "--proxy", "any", "--proxy-max-connections", "7")
    assert site_of(bounded).proxy.upstream.client.max_connections == 7  # type: ignore[attr-defined]
    assert site_of(parse("--tcp", "tcp:0", "--proxy", "any")).proxy.cache is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--proxy", "10.0.0.0/33"], "bad --proxy network"),
        (["--proxy", "somewhere"], "bad --proxy network"),
        (["--proxy", "any", "--proxy-timeout", "0"], "--proxy-timeout must be positive"),
        (["--proxy", "any", "--proxy-max-in-flight", "x"], "--proxy-max-in-flight must be"),
        (["--proxy", "any", "--proxy-cache-bytes", "-1"], "--proxy-cache-bytes must be"),
        (["--proxy", "any", "--proxy-max-observations", "0"], "--proxy-max-observations must"),
        (["--proxy-max-observers", "many"], "--proxy-max-observers must be a number"),
        (["--proxy", "any", "--proxy-max-connections", "0"], "--proxy-max-connections must"),
        (["--reverse", "plant=coap://[fd00::17]/"], "write /PATH=URI"),
        (["--reverse", "/plant"], "write /PATH=URI"),
        (["--reverse", "/=coap://h/"], "the path must not be empty"),
        (["--reverse", "/a=coap://h/", "--reverse", "/a/=coap://g/"], "mounted twice"),
        (["--reverse", "/a=http://h/"], "unknown scheme"),
    ],
)
def test_bad_proxy_options_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse("--tcp", "tcp:0", *argv)


def test_udp_listeners_share_the_stream_listeners_site_and_upload_budget() -> None:
    from twisted.application.internet import UDPServer

    service = plugin.makeService(parse("--tcp", "tcp:0", "--udp", "udp:0"))
    factory = service.factory  # type: ignore[attr-defined]
    [udp] = [s for s in service if isinstance(s, UDPServer)]  # type: ignore[attr-defined]
    protocol = udp.args[1]
    assert protocol.site is factory.site
    assert protocol._upload_budget is factory.upload_budget
    assert protocol._max_body_size == factory.max_body_size


def test_reverse_mounts_a_proxy_in_the_tree_and_shares_the_upstream_side() -> None:
    from coaptcp.proxy.reverse import ReverseProxy

    options = parse("--tcp", "tcp:0", "--proxy", "127.0.0.0/8",
                    "--reverse", "/plant=coap://[fd00::17]/",
                    "--reverse", "/site/b=coap+tcp://127.0.0.1:5700/api",
                    "--proxy-max-observations", "3", "--proxy-max-observers", "4")
    site = site_of(options)
    root = site.root  # type: ignore[attr-defined]
    plant = root.children["plant"]
    nested = root.children["site"].children["b"]
    assert isinstance(plant, ReverseProxy) and isinstance(nested, ReverseProxy)
    assert plant.upstream is nested.upstream is site.proxy.upstream  # type: ignore[attr-defined]
    assert str(plant.base) == "coap://[fd00::17]/"
    assert (plant.upstream.observations.max_observations,
            plant.upstream.observations.max_observers) == (3, 4)
    assert "hello" in root.children  # the demo site is still there


def test_reverse_alone_does_not_make_a_forward_proxy() -> None:
    site = site_of(parse("--tcp", "tcp:0", "--reverse", "/plant=coap://127.0.0.1:5799/"))
    assert site.proxy is None  # type: ignore[attr-defined]
    assert "plant" in site.root.children  # type: ignore[attr-defined]


def test_reverse_mount_may_name_a_coaps_base() -> None:
    options = parse("--tcp", "tcp:0", "--reverse", "/dtls=coaps://127.0.0.1/")
    assert [str(base) for _, base in options["reverse-mounts"]] == ["coaps://127.0.0.1/"]
