"""Listener options checked before anything listens: ports out of range are usage errors,
a port already taken ends ``twistd coaptcp`` with one line, ``--metrics`` is refused
with several workers (each would bind it)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import childproc
import pytest
from tap_options import parse, usage_error
from twisted.application.service import Service
from twisted.internet.error import CannotListenError

from coaptcp.tap.descriptions import check_server_description, split_description
from coaptcp.tap.service import CoapService
from coaptcp.transport.tcp import CoapFactory

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ("--tcp", "tcp:65536"),
        ("--tcp", "tcp:port=99999:interface=127.0.0.1"),
        ("--tcp", "haproxy:tcp:70000"),
        ("--ws", "tcp:99999"),
        ("--tls", "tcp:99999", "--psk-file", "/dev/null"),
    ],
)
def test_port_out_of_range_is_a_usage_error(args):
    message = usage_error(*args)
    assert "is not in 0-65535" in message
    assert args[1] in message


def test_metrics_port_out_of_range_is_a_usage_error():
    pytest.importorskip("prometheus_client")
    assert "bad --metrics description 'tcp:99999'" in usage_error("--metrics", "tcp:99999")


def test_ports_in_range_parse():
    options = parse("--tcp", "tcp:0", "--tcp", "tcp:65535:interface=127.0.0.1")
    assert options["tcp"] == ["tcp:0", "tcp:65535:interface=127.0.0.1"]


def test_descriptions_without_a_port_are_left_to_twisted():
    check_server_description("unix:/tmp/coaptcp-test.sock")  # no port: nothing to check


def test_split_description_drops_escapes():
    assert split_description(r"tcp:5683:interface=\:\:1") == ["tcp", "5683", "interface=::1"]


def test_metrics_with_several_workers_is_a_usage_error():
    pytest.importorskip("prometheus_client")
    message = usage_error("--metrics", "tcp:9100", "--workers", "2")
    assert "--metrics cannot be combined with --workers" in message
    assert parse("--metrics", "tcp:9100", "--workers", "1")["workers"] == 1


class _Taken(Service):
    def privilegedStartService(self) -> None:
        raise CannotListenError("127.0.0.1", 5683, OSError(98, "Address already in use"))


def test_a_listener_that_cannot_bind_ends_start_up_with_one_line():
    service = CoapService(CoapFactory(None))
    _Taken().setServiceParent(service)
    with pytest.raises(SystemExit) as info:
        service.privilegedStartService()
    assert str(info.value.code) == (
        "twistd coaptcp: cannot listen on 127.0.0.1:5683: Address already in use"
    )


def test_twistd_on_a_taken_port_exits_1_without_a_traceback():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        result = childproc.run(
            [sys.executable, "-m", "twisted", "coaptcp", "--tcp",
             f"tcp:{port}:interface=127.0.0.1"],
            cwd="/tmp", env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        holder.close()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
