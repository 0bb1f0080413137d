"""The configurable Block1 upload limit: ``CoapFactory(max_body_size=...)`` and
``twistd coaptcp --max-body-size`` (RFC 7959 section 2.9.3: 4.13 with Size1)."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from coaptcp.channel.limits import Limits
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, Block
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness
from coaptcp.transport.tcp import CoapFactory


def put_block(token: bytes, num: int, more: bool, payload: bytes, size1: int | None = None
              ) -> Message:
    items: list[tuple[int, object]] = [
        (OptionNumber.URI_PATH, "store"),
        (OptionNumber.BLOCK1, Block(num, more, 6).encode()),
    ]
    if size1 is not None:
        items.append((OptionNumber.SIZE1, size1))
    return Message(Code.PUT, token, Options(items), payload)  # type: ignore[arg-type]


def harness(max_body_size: int, limits: Limits | None = None) -> Harness:
    clock = MemoryReactorClock()
    factory = CoapFactory(
        make_demo_site(clock),
        reactor=clock,
        max_body_size=max_body_size,
        limits=limits or Limits(),
    )
    h = Harness(factory=factory, clock=clock)
    h.open()
    return h


def test_the_factory_limit_applies_to_each_connection() -> None:
    h = harness(2048)
    assert h.channel.blockwise.max_body_size == 2048
    h.feed(put_block(b"a", 0, True, bytes(1024), size1=4096))
    (answer,) = h.sent()
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.size1 == 2048
    # Within the limit: reassembled as usual.
    h.feed(put_block(b"b", 0, True, bytes(1024)), put_block(b"c", 1, False, bytes(1000)))
    assert [m.code for m in h.sent()] == [Code.CONTINUE, Code.CHANGED]


def test_a_larger_limit_accepts_more_than_the_default() -> None:
    budgets = Limits(
        max_upload_bytes_per_connection=DEFAULT_MAX_BODY_SIZE * 4,
        max_upload_bytes=DEFAULT_MAX_BODY_SIZE * 4,
    )
    h = harness(DEFAULT_MAX_BODY_SIZE * 4, budgets)
    h.feed(put_block(b"a", 0, True, bytes(1024), size1=DEFAULT_MAX_BODY_SIZE * 2))
    assert [m.code for m in h.sent()] == [Code.CONTINUE]


def test_a_body_larger_than_the_connection_budget_is_too_large() -> None:
    """The largest body is the least of the body limit and the byte budgets: a body no
    budget could hold is 4.13 with that figure as Size1, not a 5.03 retried forever."""
    h = harness(DEFAULT_MAX_BODY_SIZE * 4)  # the default budget: 16 MiB a connection
    assert h.channel.blockwise.max_body_size == DEFAULT_MAX_BODY_SIZE
    h.feed(put_block(b"a", 0, True, bytes(1024), size1=DEFAULT_MAX_BODY_SIZE * 2))
    (answer,) = h.sent()
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.size1 == DEFAULT_MAX_BODY_SIZE


def test_twistd_option() -> None:
    options = tap.Options()
    options.parseOptions(["--max-body-size", "100000000", "--tcp", "tcp:0",
                          "--max-upload-bytes-per-connection", "100000000"])
    assert tap.makeService(options).factory.max_body_size == 100_000_000
    defaults = tap.Options()
    defaults.parseOptions([])
    assert tap.makeService(defaults).factory.max_body_size == DEFAULT_MAX_BODY_SIZE
    plain = tap.makeService({"root": make_demo_site(), "tcp": ["tcp:0"],
                             "max-message-size": "1500"})
    assert plain.factory.max_body_size == DEFAULT_MAX_BODY_SIZE


@pytest.mark.parametrize(("value", "message"), [("lots", "must be a whole number"),
                                                ("0", "must be positive")])
def test_twistd_option_errors(value: str, message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        tap.Options().parseOptions(["--max-body-size", value])
