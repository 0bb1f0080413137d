"""The command line in process: argument checking (usage errors, exit code 2) and
:func:`coaptcp.cli.running.run` over in-memory connections (output and exit codes)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from client_helpers import MemoryNetwork, make_client
from twisted.internet.defer import Deferred

from coaptcp.cli.arguments import (
    EXIT_ERROR_RESPONSE,
    EXIT_NO_RESPONSE,
    EXIT_OK,
    EXIT_USAGE,
    Settings,
    build_parser,
    parse_args,
)
from coaptcp.cli.running import run
from coaptcp.client.client import Client
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.testing import result_of, success
from coaptcp.testing.certs import write_test_setup


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("coaptcp-client: error: ")
    return last


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["coap+tcp://h/#x"], "fragment"),
        (["not a uri"], "not an absolute URI"),
        (["http://example.com/"], "unknown scheme 'http'"),
        (["coap+tcp://h:70000/"], "out of range"),
        (["-m", "brew", "coap+tcp://h/"], "unknown method 'brew'"),
        (["--observe", "--ping", "coap+tcp://h/"], "--observe and --ping do not go together"),
        (["--observe", "-m", "put", "coap+tcp://h/"], "--observe sends GET (RFC 7641)"),
        (["--observe", "-e", "x", "coap+tcp://h/"], "--observe sends GET without a payload"),
        (["--observe", "-c", "0", "coap+tcp://h/"], "--count: must be at least 1"),
        (["--count", "0", "coap+tcp://h/"], "--count: must be at least 1"),
        (["--count", "two", "coap+tcp://h/"], "--count: 'two' is not a whole number"),
        (["--timeout", "-1", "coap+tcp://h/"], "--timeout: '-1' cannot be negative"),
        (["--timeout", "nan", "coap+tcp://h/"], "--timeout: 'nan' is not a number of seconds"),
        (["--timeout", "inf", "coap+tcp://h/"], "--timeout: 'inf' is not a number of seconds"),
        (["--timeout=-inf", "coap+tcp://h/"], "--timeout: '-inf' is not a number of seconds"),
        (["--timeout", "soon", "coap+tcp://h/"], "--timeout: 'soon' is not a number of seconds"),
        (["--keepalive", "nan", "coap+tcp://h/"], "--keepalive: 'nan' is not a number"),
        (["--ping", "--interval", "0", "coap+tcp://h/"], "--interval: '0' must be more than 0"),
        (["--ping", "--interval", "-2", "coap+tcp://h/"], "--interval: '-2' cannot be negative"),
        (["--interval", "1", "coap+tcp://h/"], "--interval paces Pings: it goes with --ping"),
        (["--duration", "5", "coap+tcp://h/"], "--duration goes with --observe or --ping"),
        (["--ping", "--duration", "5", "coap+tcp://h/"], "--duration goes with --observe"),
        (["--observe", "--duration", "nan", "coap+tcp://h/"], "--duration: 'nan' is not"),
        (["-t", "nope", "coap+tcp://h/"], "--content-format: unknown content format 'nope'"),
        (["-A", "99999", "coap+tcp://h/"], "--accept: content format 99999 is out of range"),
        (["-O", "x", "coap+tcp://h/"],
         "--option 'x': the option number must be a number such as 11 or 0x0b, not 'x'"),
        (["-O", "abc", "coap+tcp://h/"], "the option number must be a number such as 11"),
        (["-O", "7,abc", "coap+tcp://h/"], "--option '7,abc': Uri-Port takes a whole number, "
                                           "not 'abc'"),
        (["-O", "4,0xzz", "coap+tcp://h/"], "'0xzz' is not hex: 0x then pairs of hex digits"),
        (["-O", "0,1", "coap+tcp://h/"], "out of range"),
        (["-O", "5,x", "coap+tcp://h/"], "If-None-Match takes no value"),
        (["-f", "/no/such/file", "coap+tcp://h/"], "cannot read payload file /no/such/file"),
        (["-e", "@/no/such/file", "coap+tcp://h/"], "cannot read payload file"),
        (["--ping", "-m", "put", "coap+tcp://h/"], "--ping sends a Ping"),
        (["--ping", "-e", "x", "coap+tcp://h/"], "--ping sends a Ping"),
        (["--insecure", "coap+tcp://h/"], "TLS options apply to coaps://, coaps+tcp:// and coaps+ws://"),
        (["--cafile", "/no/ca.pem", "coaps+tcp://h/"], "cannot read --cafile /no/ca.pem"),
        (["--key", __file__, "coaps+tcp://h/"], "--key needs --cert"),
        (["--psk-key", "k", "coaps+tcp://h/"], "--psk-identity and --psk-key go together"),
        (["-e", "a", "-f", "b", "coap+tcp://h/"], "not allowed with argument"),
        ([], "the following arguments are required: URI"),
        # argv bytes that are not UTF-8 reach Python as lone surrogates (PEP 383)
        (["coap+tcp://h/\udcff"], "the URI is not UTF-8 text"),
        (["coap+tcp://[fe80::1%lo]/"], "the IPv6 zone identifier in [fe80::1%lo] is written %25"),
        (["-e", "a\udcffb", "coap+tcp://h/"], "--payload: the text is not UTF-8"),
        (["-O", "11,\udcff", "coap+tcp://h/"], "--option '11,\\udcff': the text is not UTF-8"),
        (["-O", "14,-5", "coap+tcp://h/"], "--option '14,-5': Max-Age takes a whole number"),
        (["-O", "14,1_0", "coap+tcp://h/"], "--option '14,1_0': Max-Age takes a whole number"),
        (["-O", "12,65536", "coap+tcp://h/"],
         "--option '12,65536': Content-Format 65536 is out of range (0-65535)"),
        (["-O", "60,4294967296", "coap+tcp://h/"], "Size1 4294967296 is out of range"),
        (["--psk-identity", "i", "--psk-key", "hex:zz", "coaps+tcp://h/"],
         "--psk-key: 'hex:zz' is not hex: hex: then pairs of hex digits"),
        (["--psk-identity", "\udcff", "--psk-key", "k", "coaps+tcp://h/"],
         "--psk-identity: the text is not UTF-8"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert message in usage_error(argv, capsys)


def test_parse_args_builds_settings(tmp_path: Any) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00\x01")
    settings = parse_args(["-m", "post", "-f", str(body), "-t", "cbor", "-A", "json",
                           "-O", "14,60", "-O", "4,0xcafe", "-O", "65000,text", "-O", "5",
                           "-c", "3", "-v", "-v", "--timeout", "2.5", "--raw",
                           "coap+tcp://[::1]:6000/a?b"])
    assert settings.method == Code.POST
    assert settings.payload == b"\x00\x01"
    assert settings.options == Options([
        (OptionNumber.CONTENT_FORMAT, 60), (OptionNumber.ACCEPT, 50),
        (OptionNumber.MAX_AGE, 60), (OptionNumber.ETAG, b"\xca\xfe"),
        (65000, "text"), (OptionNumber.IF_NONE_MATCH, None),
    ])
    assert (settings.count, settings.verbose, settings.timeout) == (3, 2, 2.5)
    assert settings.pretty is False
    assert settings.uri.origin == ("coap+tcp", "::1", 6000)


def test_payload_forms(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["-e", "héllo", "coap+tcp://h/"]).payload == "héllo".encode()
    source = tmp_path / "p.txt"
    source.write_bytes(b"from file")
    assert parse_args(["-e", f"@{source}", "coap+tcp://h/"]).payload == b"from file"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert parse_args(["-f", "-", "coap+tcp://h/"]).payload == b"from stdin"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"again")))
    assert parse_args(["-e", "@-", "coap+tcp://h/"]).payload == b"again"


def test_tls_settings_are_collected(tmp_path: Any) -> None:
    paths = {name: str(path) for name, path in write_test_setup(tmp_path).items()}
    settings = parse_args(["--cafile", paths["ca"], "--cert", paths["client"],
                           "--key", paths["client_key"], "--psk-identity", "me",
                           "--psk-key", "hex:00ff", "coaps+tcp://h/"])
    tls = settings.tls
    assert (tls.cafile, tls.certfile, tls.keyfile) == (
        paths["ca"], paths["client"], paths["client_key"])
    assert (tls.psk_identity, tls.psk_key, tls.insecure) == (b"me", b"\x00\xff", False)
    assert parse_args(["--insecure", "--psk-identity", "a", "--psk-key", "secret",
                       "coaps+tcp://h/"]).tls.insecure is True


def test_tls_mistakes_found_before_connecting_are_usage_errors(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # They used to be exit 3 ("cannot connect to ..."), as if the server had failed.
    paths = {name: str(path) for name, path in write_test_setup(tmp_path).items()}
    not_pem = __file__
    for argv, message in [
        (["--cafile", not_pem], f"TLS options: CA file {not_pem} holds no usable PEM"),
        (["--cert", not_pem], f"TLS options: certificate file {not_pem} holds no usable PEM"),
        (["--cert", paths["client"]], "holds no usable PEM key"),  # no key in that file
        (["--cert", paths["ca"], "--key", paths["client_key"]], "does not match the certificate"),
        (["--insecure", "--cafile", paths["ca"]], "contradict each other"),
    ]:
        assert message in usage_error([*argv, "coaps+tcp://h/"], capsys)
    assert "pre-shared keys are not supported for coaps+ws; use coaps+tcp or coaps" in (
        usage_error(["--psk-identity", "a", "--psk-key", "b", "coaps+ws://h/"], capsys))


def test_help_lists_the_options() -> None:
    text = build_parser().format_help()
    # every scheme the client speaks, UDP and DTLS included (the help said "over TCP")
    for scheme in ("coap+tcp://", "coaps+tcp://", "coap+ws://", "coaps+ws://", "coap://",
                   "coaps://"):
        assert scheme in text, scheme
    for flag in ("--method", "--payload", "--payload-file", "--content-format", "--accept",
                 "--observe", "--count", "--ping", "--verbose", "--cafile", "--cert", "--key",
                 "--psk-identity", "--psk-key", "--insecure", "Exit codes"):
        assert flag in text


# -- run() over in-memory connections ----------------------------------------------------------


def start(network: MemoryNetwork, argv: list[str], *, pretty: bool = False,
          client: Client | None = None, err: io.StringIO | None = None,
          **client_kwargs: Any) -> tuple[list[Any], io.BytesIO, io.StringIO]:
    """Start :func:`run` on ``argv`` (what it fires with, its stdout and stderr)."""
    settings: Settings = parse_args(argv)
    out, err = io.BytesIO(), err if err is not None else io.StringIO()
    client = client or make_client(network, timeout=settings.timeout, **client_kwargs)
    results = result_of(Deferred.fromCoroutine(
        run(network.clock, client, settings, out, err, pretty)))
    return results, out, err


def cli_run(network: MemoryNetwork, argv: list[str], *, pretty: bool = False,
            client: Client | None = None) -> tuple[int, bytes, str]:
    results, out, err = start(network, argv, pretty=pretty, client=client)
    for _ in range(5):
        network.flush()
        network.clock.advance(0)
    return success(results), out.getvalue(), err.getvalue()


def test_get_prints_the_exact_payload() -> None:
    code, out, err = cli_run(MemoryNetwork(), ["coap+tcp://127.0.0.1/hello"])
    assert (code, out, err) == (EXIT_OK, b"Hello, world!", "")


def test_count_repeats_over_one_connection() -> None:
    network = MemoryNetwork()
    code, out, _ = cli_run(network, ["-c", "3", "coap+tcp://127.0.0.1/hello"])
    assert code == EXIT_OK
    assert out == b"Hello, world!" * 3
    assert len(network.links) == 1
    assert network.links[0].closed  # the CLI releases the connection at the end


def test_pretty_json_on_a_terminal() -> None:
    _, out, _ = cli_run(MemoryNetwork(), ["coap+tcp://127.0.0.1/info"], pretty=True)
    assert out.startswith(b'{\n  "server": "coaptcp ')
    assert out.endswith(b"\n}\n")


def test_pretty_link_format() -> None:
    _, out, _ = cli_run(MemoryNetwork(), ["coap+tcp://127.0.0.1/.well-known/core"], pretty=True)
    lines = out.decode().splitlines()
    assert '</hello>;rt="demo.hello";ct=0;title="Greeting"' in lines
    assert any(line.startswith("</info>;") for line in lines)
    assert all(line.startswith("</") for line in lines)


def test_error_response_is_one_line_and_exit_1() -> None:
    code, out, err = cli_run(MemoryNetwork(), ["-m", "delete", "coap+tcp://127.0.0.1/hello"])
    assert code == EXIT_ERROR_RESPONSE
    assert out == b""
    assert err == "coaptcp-client: 4.05 Method Not Allowed: DELETE not allowed here; allowed: GET\n"


def test_not_found() -> None:
    code, _, err = cli_run(MemoryNetwork(), ["coap+tcp://127.0.0.1/nothing"])
    assert code == EXIT_ERROR_RESPONSE
    assert err == "coaptcp-client: 4.04 Not Found\n"


def test_verbose_shows_request_response_options_and_timing() -> None:
    code, out, err = cli_run(MemoryNetwork(), ["-v", "-A", "json", "coap+tcp://127.0.0.1/info"])
    assert code == EXIT_OK
    lines = err.splitlines()
    assert lines[0] == "-> GET coap+tcp://127.0.0.1/info"
    assert "   Uri-Path: 'info'" in lines
    assert "   Accept: 50 (application/json)" in lines
    response_line = next(line for line in lines if line.startswith("<- "))
    assert response_line.startswith("<- 2.05 Content from coap+tcp://127.0.0.1:5683 in ")
    assert response_line.endswith(" ms (after connect 0.00 ms)")  # this request connected
    assert "   Content-Format: 50 (application/json)" in lines
    assert any("peer Max-Message-Size 66048" in line for line in lines)
    assert out.startswith(b'{"server"')


def test_put_then_get() -> None:
    network = MemoryNetwork()
    code, _, _ = cli_run(network, ["-m", "put", "-e", "stored!", "coap+tcp://127.0.0.1/store"])
    assert code == EXIT_OK
    _, out, _ = cli_run(network, ["coap+tcp://127.0.0.1/store"])
    assert out == b"stored!"


def test_refused_connection_is_exit_3() -> None:
    network = MemoryNetwork()
    network.refuse = True
    code, out, err = cli_run(network, ["coap+tcp://127.0.0.1:9/x"])
    assert code == EXIT_NO_RESPONSE
    assert out == b""
    assert err == "coaptcp-client: cannot connect to coap+tcp://127.0.0.1:9: connection refused\n"


def test_timeout_is_exit_3() -> None:
    network = MemoryNetwork()
    settings = parse_args(["--timeout", "2", "coap+tcp://127.0.0.1/held"])
    out, err = io.BytesIO(), io.StringIO()
    client = make_client(network, timeout=settings.timeout)
    results = result_of(Deferred.fromCoroutine(
        run(network.clock, client, settings, out, err, False)))
    network.flush()
    network.clock.advance(2)
    network.flush()
    assert success(results) == EXIT_NO_RESPONSE
    assert err.getvalue() == (
        "coaptcp-client: no response from coap+tcp://127.0.0.1:5683 within 2 s\n"
    )


def test_scheme_not_available_is_a_usage_error() -> None:
    # A build (or an application) may leave a scheme out of its connectors.
    from coaptcp.client.connectors import scheme_not_available

    network = MemoryNetwork()
    client = Client(network.clock, connectors={
        "coaps+tcp": scheme_not_available("coaps+tcp", "TLS is left out of this build"),
    })
    code, _, err = cli_run(network, ["coaps+tcp://127.0.0.1/x"], client=client)
    assert code == EXIT_USAGE
    assert err == ("coaptcp-client: error: coaps+tcp:// is not available yet in coaptcp's "
                   "client: TLS is left out of this build\n")


def test_lost_connection_is_exit_3() -> None:
    network = MemoryNetwork()
    results, _, err = start(network, ["coap+tcp://127.0.0.1/held"], client=make_client(network))
    network.flush()
    network.links[0].drop()
    network.flush()
    assert success(results) == EXIT_NO_RESPONSE
    assert err.getvalue().startswith("coaptcp-client: coap+tcp://127.0.0.1:5683: connection")
    assert err.getvalue().count("\n") == 1


def test_ping() -> None:
    code, out, _ = cli_run(MemoryNetwork(), ["--ping", "-c", "2", "coap+tcp://127.0.0.1"])
    assert code == EXIT_OK
    lines = out.decode().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("pong from coap+tcp://127.0.0.1:5683: time=") for line in lines)


def test_block_wise_response_is_reassembled() -> None:
    # The demo /big (1 MiB) comes in BERT blocks; the CLI prints the whole body and no
    # warning (the old "block-wise transfer is not implemented yet" path is gone).
    from coaptcp.tap.demo import BigResource

    code, out, err = cli_run(MemoryNetwork(), ["coap+tcp://127.0.0.1/big"])
    assert code == EXIT_OK
    assert out == BigResource().body
    assert err == ""


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_with(network: MemoryNetwork, argv: list[str], err: io.StringIO,
             **client_kwargs: Any) -> tuple[int, bytes]:
    results, out, _ = start(network, argv, err=err, **client_kwargs)
    for _ in range(5):
        network.flush()
    return success(results), out.getvalue()


def test_progress_bar_on_a_terminal() -> None:
    err = Terminal()
    code, out = run_with(MemoryNetwork(), ["coap+tcp://127.0.0.1/big"], err)
    assert code == EXIT_OK and len(out) == 1 << 20
    text = err.getvalue()
    frames = [frame for frame in text.split("\r") if frame]
    # One frame per 64 KiB BERT block: the total (Size2) is known from the first one.
    assert frames[0] == "[#" + "." * 29 + "]   6% 64.0 KiB of 1.0 MiB\x1b[K"
    assert len(frames) == 16 + 1 and frames[-1] == "\x1b[K"  # 16 blocks, then the erase
    assert "[" + "#" * 30 + "] 100% 1.0 MiB of 1.0 MiB" in text
    assert text.endswith("\r\x1b[K")  # the bar is erased at the end


def test_progress_bar_for_an_upload_and_none_for_small_bodies(tmp_path: Any) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(bytes(300_000))
    err = Terminal()
    code, _ = run_with(MemoryNetwork(), ["-m", "put", "-f", str(body),
                                         "coap+tcp://127.0.0.1/store"], err)
    assert code == EXIT_OK
    assert "] 100% 293.0 KiB of 293.0 KiB" in err.getvalue()
    small = Terminal()
    code, out = run_with(MemoryNetwork(), ["coap+tcp://127.0.0.1/large"], small,
                         block_size=1024)  # 4,000 bytes in blocks: below the threshold
    assert code == EXIT_OK and len(out) == 4000
    assert small.getvalue() == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal() -> None:
    err = io.StringIO()
    code, _ = run_with(MemoryNetwork(), ["coap+tcp://127.0.0.1/big"], err)
    assert code == EXIT_OK
    assert err.getvalue() == ""


# -- --observe ---------------------------------------------------------------------------------


def observed_network() -> tuple[MemoryNetwork, Any]:
    from coaptcp.tap.demo import ClockResource

    network = MemoryNetwork()
    clock = ClockResource(network.clock)
    network.root.putChild("time", clock)
    return network, clock


def test_observe_count_prints_each_notification_and_deregisters() -> None:
    network, clock = observed_network()
    settings = parse_args(["--observe", "--count", "3", "-v", "coap+tcp://127.0.0.1/time"])
    assert (settings.observe, settings.count) == (True, 3)
    out, err = io.BytesIO(), io.StringIO()
    client = make_client(network, timeout=settings.timeout)
    results = result_of(Deferred.fromCoroutine(
        run(network.clock, client, settings, out, err, False)))
    network.flush()
    for _ in range(2):
        network.clock.advance(1)
        network.flush()
    network.flush()
    assert success(results) == EXIT_OK
    lines = out.getvalue().decode().splitlines()
    assert lines == ["1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", "1970-01-01T00:00:02Z"]
    assert clock.observer_count == 0
    text = err.getvalue()
    assert "-> GET coap+tcp://127.0.0.1/time (Observe: 0, register)" in text
    assert "<- 2.05 Content (notification 3, Observe: 3, 20 bytes)" in text
    assert "(observation ended: cancelled)" in text
    assert network.links[0].closed


def test_observe_until_interrupted() -> None:
    network, clock = observed_network()
    settings = parse_args(["--observe", "coap+tcp://127.0.0.1/time"])
    assert settings.count == 0  # no limit
    out, err = io.BytesIO(), io.StringIO()
    interrupt: Deferred[None] = Deferred()
    client = make_client(network, timeout=settings.timeout)
    results = result_of(Deferred.fromCoroutine(
        run(network.clock, client, settings, out, err, False, interrupt)))
    network.flush()
    for _ in range(5):
        network.clock.advance(1)
        network.flush()
    assert results == []
    assert len(out.getvalue().splitlines()) == 6
    interrupt.callback(None)  # Ctrl-C: deregister, then exit 0
    cancel = network.links[0].client_output()
    assert [(m.code, m.options.observe) for m in cancel][:1] == [(Code.GET, 1)]
    network.flush()
    network.flush()
    assert success(results) == EXIT_OK
    assert clock.observer_count == 0
    assert err.getvalue() == ""


def test_observe_a_resource_that_is_not_observable() -> None:
    code, out, err = cli_run(MemoryNetwork(), ["--observe", "coap+tcp://127.0.0.1/hello"])
    assert code == EXIT_OK
    assert out == b"Hello, world!\n"
    assert err == ("coaptcp-client: observation over: the resource is not observable "
                   "(a response without Observe)\n")


def test_observe_an_error() -> None:
    code, out, err = cli_run(MemoryNetwork(), ["--observe", "coap+tcp://127.0.0.1/nothing"])
    assert code == EXIT_ERROR_RESPONSE
    assert out == b""
    assert err == "coaptcp-client: 4.04 Not Found\n"


def test_observe_connection_lost_is_exit_3() -> None:
    network, _ = observed_network()
    results, out, err = start(
        network, ["--observe", "coap+tcp://127.0.0.1/time"], client=make_client(network)
    )
    network.flush()
    network.links[0].drop()
    network.flush()
    assert success(results) == EXIT_NO_RESPONSE
    assert out.getvalue() == b"1970-01-01T00:00:00Z\n"
    assert err.getvalue() == "coaptcp-client: coap+tcp://127.0.0.1:5683: connection closed\n"


def test_observe_pretty_separates_multi_line_notifications() -> None:
    _, out, _ = cli_run(MemoryNetwork(), ["--observe", "coap+tcp://127.0.0.1/info"],
                        pretty=True)
    assert out.startswith(b'{\n  "server": "coaptcp ')
    assert out.endswith(b"\n}\n\n")


def test_every_exit_code_is_documented() -> None:
    # docs/client.md's table and --help's epilog name every code the command can return.
    from pathlib import Path

    from coaptcp.cli import arguments

    codes = {value for name, value in vars(arguments).items() if name.startswith("EXIT_")}
    page = (Path(__file__).parents[2] / "docs" / "client.md").read_text(encoding="utf-8")
    table = page.split("**Exit codes.**", 1)[1].split("\n## ", 1)[0]
    documented = {int(row.split("|")[1]) for row in table.splitlines()
                  if row.startswith("| ") and row.split("|")[1].strip().isdigit()}
    assert documented == codes
    epilog = " ".join(build_parser().format_help().split())
    for code in codes:
        assert f" {code} " in epilog.split("Exit codes:", 1)[1]


def test_output_that_cannot_be_written_is_one_line_not_an_internal_error() -> None:
    # `coaptcp-client URI > /dev/full` said "internal error: [Errno 28] ..." (exit 70, a
    # bug); a full disk is not one: exit 74 (EX_IOERR) and a plain line.
    import errno

    from coaptcp.cli.arguments import EXIT_OUTPUT

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    network = MemoryNetwork()
    settings = parse_args(["coap+tcp://127.0.0.1/hello"])
    err = io.StringIO()
    client = make_client(network, timeout=settings.timeout)
    results = result_of(Deferred.fromCoroutine(
        run(network.clock, client, settings, Full(), err, False)))
    for _ in range(5):
        network.flush()
    assert success(results) == EXIT_OUTPUT
    assert err.getvalue() == "coaptcp-client: cannot write the output: No space left on device\n"
    assert network.links[0].closed


def test_a_payload_beyond_the_limit_is_not_read_whole(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `-f /dev/zero` (or an endless pipe on `-f -`) read until memory ran out: the payload
    # is read up to MAX_PAYLOAD bytes (64 MiB) and one byte more means a usage error.
    from coaptcp.cli import arguments

    assert arguments.MAX_PAYLOAD == 64 * 1024 * 1024
    monkeypatch.setattr(arguments, "MAX_PAYLOAD", 10)
    exact, over = tmp_path / "exact", tmp_path / "over"
    exact.write_bytes(b"x" * 10)
    over.write_bytes(b"x" * 11)
    assert parse_args(["-f", str(exact), "coap+tcp://h/"]).payload == b"x" * 10
    assert parse_args(["-e", f"@{exact}", "coap+tcp://h/"]).payload == b"x" * 10
    message = f"payload file {over} is larger than 10 bytes, the most coaptcp-client sends"
    assert message in usage_error(["-f", str(over), "coap+tcp://h/"], capsys)
    assert "payload file /dev/zero is larger than 10 bytes" in usage_error(
        ["-f", "/dev/zero", "coap+tcp://h/"], capsys)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"y" * 11)))
    assert "payload file - is larger than 10 bytes" in usage_error(
        ["-f", "-", "coap+tcp://h/"], capsys)


def test_closed_standard_streams_are_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Started with `<&-`, `>&-` or `2>&-`, Python has None for the stream: `-f -` and
    # the output raised AttributeError tracebacks, and a closed stderr hung the command
    # (the failure could not be reported, so the reactor never stopped).
    from coaptcp.cli.arguments import EXIT_OUTPUT
    from coaptcp.cli.main import main

    monkeypatch.setattr("sys.stdin", None)
    assert "cannot read payload file -: stdin is closed" in usage_error(
        ["-f", "-", "coap+tcp://h/"], capsys)
    monkeypatch.setattr("sys.stdout", None)
    assert main(["coap+tcp://h/"]) == EXIT_OUTPUT
    assert capsys.readouterr().err == "coaptcp-client: cannot write the output: stdout is closed\n"
    monkeypatch.setattr("sys.stderr", None)
    assert main(["coap+tcp://h/"]) == EXIT_OUTPUT
