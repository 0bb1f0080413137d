"""The twistd plugin: Options, makeService, CoapService and the dropin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import childproc
import pytest
import tap_resources
from tap_options import parse, usage_error
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage

from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.server.resource import Site
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import HelloResource
from coaptcp.testing import Harness, get, result_of, success
from coaptcp.transport.tcp import CoapFactory

REPO = Path(__file__).resolve().parents[2]


# -- Options ----------------------------------------------------------------------------------


def test_defaults():
    options = parse()
    assert options["tcp"] == ["tcp:5683"]
    assert options["max-message-size"] == DEFAULT_MAX_MESSAGE_SIZE
    assert not options["lenient-csm"]
    assert options["resource"] is None
    root = options["root"]
    assert isinstance(root.children["hello"], HelloResource)
    assert {"hello", "info", "large", "store"} <= set(root.children)


def test_each_parse_builds_a_fresh_demo_site():
    assert parse()["root"] is not parse()["root"]


def test_repeated_tcp_keeps_order_and_drops_default():
    options = parse("--tcp", "tcp:0:interface=127.0.0.1", "--tcp=tcp6:0:interface=\\:\\:1")
    assert options["tcp"] == ["tcp:0:interface=127.0.0.1", "tcp6:0:interface=\\:\\:1"]


def test_fresh_options_do_not_share_tcp_list():
    parse("--tcp", "tcp:1234")
    assert parse()["tcp"] == ["tcp:5683"]


def test_max_message_size_parsed_to_int():
    assert parse("--max-message-size", "2048")["max-message-size"] == 2048
    assert parse("--max-message-size=16")["max-message-size"] == 16


@pytest.mark.parametrize("value", ["abc", "12.5", "", "0x400"])
def test_max_message_size_not_a_number(value):
    message = usage_error(f"--max-message-size={value}")
    assert "--max-message-size" in message
    assert "whole number" in message


@pytest.mark.parametrize("value", ["15", "0", "-5", str(64 * 1024 * 1024 + 1)])
def test_max_message_size_out_of_range(value):
    message = usage_error("--max-message-size", value)
    assert "--max-message-size" in message
    assert "between 16" in message


@pytest.mark.parametrize("description", ["bogus:1234", "tcp:notaport", "tcp:"])
def test_bad_endpoint_is_usage_error(description):
    message = usage_error("--tcp", description)
    assert description in message
    assert "endpoint" in message


def test_tls_endpoint_with_missing_key_file_is_usage_error(tmp_path):
    missing = tmp_path / "no-such-key.pem"
    message = usage_error("--tcp", f"ssl:0:privateKey={missing}")
    assert "bad endpoint description" in message
    assert "no-such-key.pem" in message


def test_tls_endpoint_with_garbage_key_file_is_usage_error(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    message = usage_error("--tcp", f"ssl:0:privateKey={garbage}")
    assert "bad endpoint description" in message


def test_bad_endpoint_among_good_ones():
    message = usage_error("--tcp", "tcp:0", "--tcp", "nonsense:9")
    assert "nonsense:9" in message


def test_resource_instance():
    options = parse("--resource", "tap_resources.ROOT")
    assert options["root"] is tap_resources.ROOT


def test_resource_class_is_instantiated():
    root = parse("-r", "tap_resources.RootClass")["root"]
    assert isinstance(root, tap_resources.RootClass)
    assert root is not tap_resources.ROOT


def test_resource_callable_is_called():
    root = parse("--resource=tap_resources:make_root")["root"]
    assert isinstance(root, tap_resources.RootClass)
    assert "made" in root.children


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module_xyz.ROOT", "cannot import"),
        ("tap_resources.MISSING", "MISSING"),
        ("tap_resources.NOT_A_RESOURCE", "not a Resource"),
        ("tap_resources.returns_wrong", "not a Resource"),
        ("tap_resources.explodes", "factory exploded"),
        ("justaname", "module.attribute"),
    ],
)
def test_resource_errors_are_usage_errors(spec, needle):
    message = usage_error("--resource", spec)
    assert needle in message


def test_lenient_csm_flag():
    assert parse("--lenient-csm")["lenient-csm"]


# -- makeService ------------------------------------------------------------------------------


def test_make_service_builds_listeners_without_starting():
    options = parse(
        "--tcp",
        "tcp:0:interface=127.0.0.1",
        "--tcp",
        "tcp:0:interface=127.0.0.2",
        "--max-message-size",
        "4096",
    )
    service = tap.makeService(options)
    assert isinstance(service, MultiService)
    assert isinstance(service, tap.CoapService)
    children = list(service)
    assert len(children) == 2
    assert all(isinstance(c, StreamServerEndpointService) for c in children)
    assert all(c.factory is service.factory for c in children)
    assert not service.running
    assert not any(c.running for c in children)
    factory = service.factory
    assert isinstance(factory, CoapFactory)
    assert factory.max_message_size == 4096
    assert factory.require_csm is True
    assert isinstance(factory.site, Site)
    assert factory.site.root is options["root"]


def test_make_service_lenient_csm():
    service = tap.makeService(parse("--lenient-csm", "--tcp", "tcp:0"))
    assert service.factory.require_csm is False


def test_make_service_from_a_dict_without_a_root_says_what_it_needs():
    # A .tac (README) that passes a dict without "root" got KeyError: 'root'.
    with pytest.raises(ValueError, match=r"options\['root'\]"):
        tap.makeService({"tcp": ["tcp:0"]})


def test_make_service_from_a_plain_dict():
    root = tap_resources.make_root()
    service = tap.makeService({"root": root, "tcp": ["tcp:0"], "max-message-size": "1500"})
    assert service.factory.max_message_size == 1500
    assert service.factory.require_csm is True
    assert service.factory.site.root is root
    assert len(list(service)) == 1


def test_made_factory_serves_the_configured_root():
    service = tap.makeService(parse("--resource", "tap_resources.make_root"))
    h = Harness(factory=service.factory, clock=MemoryReactorClock())
    h.open()
    h.feed(get(b"m", "made"))
    (response,) = h.sent()
    assert response.payload == b"root class"


# -- CoapService.stopService ------------------------------------------------------------------


class FakeListener(Service):
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.stopping: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.log.append("listener stopped")
        return self.stopping


def test_stop_service_stops_listeners_then_releases_connections():
    clock = MemoryReactorClock()
    factory = CoapFactory(Site(tap_resources.make_root()), reactor=clock)
    service = tap.CoapService(factory)
    log: list[str] = []
    listener = FakeListener(log)
    listener.setServiceParent(service)
    service.startService()
    h = Harness(factory=factory, clock=clock)
    h.open()

    stopped = result_of(service.stopService())
    assert log == ["listener stopped"]
    assert h.sent() == []  # no Release while the listener is still stopping
    listener.stopping.callback(None)
    (release,) = h.sent()
    assert release.code == Code.RELEASE
    assert h.transport.disconnecting
    assert stopped == []  # waits for the connection to close
    h.lose()
    success(stopped)
    assert not service.running


def test_stop_service_release_bytes_on_the_wire():
    clock = MemoryReactorClock()
    factory = CoapFactory(Site(tap_resources.make_root()), reactor=clock)
    service = tap.CoapService(factory)
    service.startService()
    h = Harness(factory=factory, clock=clock)
    h.open()
    before = len(h.transport.value())
    stopped = result_of(service.stopService())
    wire = h.transport.value()[before:]
    # Len/TKL byte, then code 7.04 = 0xe4 (Len < 13 means a one-byte length).
    assert wire[1:2] == b"\xe4" or wire[2:3] == b"\xe4"
    assert b"\xe4" in wire
    h.lose()
    success(stopped)


def test_stop_service_waits_for_in_flight_answer():
    from coaptcp.server.request import Response
    from coaptcp.server.resource import Resource

    class Later(Resource):
        def __init__(self):
            super().__init__()
            self.d = Deferred()

        def render_GET(self, request):
            return self.d

    root = tap_resources.make_root()
    later = Later()
    root.putChild("later", later)
    clock = MemoryReactorClock()
    factory = CoapFactory(Site(root), reactor=clock)
    service = tap.CoapService(factory)
    service.startService()
    h = Harness(factory=factory, clock=clock)
    h.open()
    h.feed(get(b"L", "later"))
    stopped = result_of(service.stopService())
    (release,) = h.sent()
    assert release.code == Code.RELEASE
    assert not h.transport.disconnecting
    later.d.callback(Response.text("bye"))
    (answer,) = h.sent()
    assert (answer.token, answer.payload) == (b"L", b"bye")
    assert h.transport.disconnecting
    h.lose()
    success(stopped)


# -- the dropin and the command line -------------------------------------------------------


def test_plugin_is_discoverable():
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "coaptcp" in makers
    maker = makers["coaptcp"]
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService
    assert maker.description


def run_twist(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return childproc.run(
        [sys.executable, "-m", "twisted", "coaptcp", *args],
        cwd="/tmp",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_documents_the_options():
    result = run_twist("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for option in ("--tcp", "--resource", "--max-message-size", "--lenient-csm"):
        assert option in text
    assert "tcp:5683" in text
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_max_message_size_is_a_usage_error_not_a_traceback():
    result = run_twist("--max-message-size=abc")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert any(
        "--max-message-size" in line and "whole number" in line for line in output.splitlines()
    ), output


def test_tls_key_typo_is_a_usage_error_not_a_traceback(tmp_path):
    result = run_twist("--tcp", f"ssl:5684:privateKey={tmp_path / 'typo.pem'}")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "bad endpoint description" in output


# -- limits and timeouts (coaptcp.channel.limits) --------------------------------------------------


def test_limit_options_default_to_the_library_defaults():
    from coaptcp.channel.limits import DEFAULT_LIMITS

    options = tap.Options()
    options.parseOptions([])
    assert options["limits"] == DEFAULT_LIMITS


def test_limit_options_are_parsed_and_zero_turns_timeouts_off():
    options = tap.Options()
    options.parseOptions(
        [
            "--csm-timeout=0",
            "--idle-timeout=0",
            "--frame-timeout=0",
            "--keepalive=30",
            "--pong-timeout=2.5",
            "--max-requests-in-progress=7",
            "--max-connections=50",
            "--max-connections-per-address=5",
        ]
    )
    limits = options["limits"]
    assert (limits.csm_timeout, limits.idle_timeout, limits.keepalive_interval) == (
        None,
        None,
        30.0,
    )
    assert limits.frame_timeout is None
    assert (limits.pong_timeout, limits.max_inbound_requests) == (2.5, 7)
    assert (limits.max_connections, limits.max_connections_per_address) == (50, 5)
    service = tap.makeService(options)
    assert service.factory.limits is limits


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--idle-timeout=soon"], "--idle-timeout must be a number, not 'soon'"),
        (["--keepalive=-1"], "--keepalive must be positive"),
        (["--max-connections=0"], "--max-connections must be positive"),
        (["--max-requests-in-progress=2.5"], "--max-requests-in-progress must be a number"),
    ],
)
def test_bad_limit_options_are_usage_errors(argv, message):
    with pytest.raises(usage.UsageError) as raised:
        tap.Options().parseOptions(argv)
    assert message in str(raised.value)


def test_help_text_has_no_stray_gaps_or_repeated_defaults():
    # Twisted wraps each option's doc as it stands: a docstring's line break and indent
    # showed as a run of spaces ("at /         on a Twisted"), and a doc that names its
    # default got Twisted's "[default: ...]" after it too.
    from coaptcp.tap.plugin import Options

    options = Options()
    for name, doc in options.docs.items():
        assert "  " not in doc.strip(), (name, doc)
        if options.defaults.get(name) is not None:
            assert "(default " not in doc, (name, doc)
    assert "at / on a Twisted endpoint" in options.docs["ws"]
