"""Lookups share a budget of work, so that one peer cannot stall the server with them.

A lookup not answered from the cache examines every registration and link (RFC 9176
sections 6.1, 6.2), synchronously.  Measured before this bound: 781 registrations of 256
links (the default --rd-max-total-links, 200,000 links, reached from 8 source addresses)
made each GET /rd-lookup/res take 0.5 s of the reactor, so 64 lookups pipelined on one
connection held a /hello on another connection for 18.9 s.  Now the examined links and
registrations come out of a budget that refills in ten seconds; a lookup beyond it gets
5.03 with Max-Age, and answers from the cache cost nothing.
"""

from __future__ import annotations

from rd_helpers import DirectorySite

from coaptcp.core.codes import Code
from coaptcp.directory import DirectoryLimits

LINKS = b",".join(b"</s%d>;rt=t" % i for i in range(100))


def full_directory() -> DirectorySite:
    # 10 registrations of 100 links; the budget fits one lookup of a full directory.
    rd = DirectorySite(DirectoryLimits(max_total_links=1000, max_registrations=10,
                                       max_per_peer=10))
    for n in range(10):
        rd.register(f"ep=n{n}", payload=LINKS)
    assert rd.directory.total_links == 1000
    return rd


def test_a_lookup_over_the_budget_gets_5_03_with_max_age_and_later_goes_through() -> None:
    rd = full_directory()
    first = rd.request(Code.GET, "rd-lookup/res", "rt=t")
    assert first.code == Code.CONTENT and first.payload.count(b"<") == 1000
    refused = rd.request(Code.GET, "rd-lookup/res", "rt=t*")  # another query: not cached
    assert refused.code == Code.SERVICE_UNAVAILABLE
    assert refused.options.max_age is not None and 1 <= refused.options.max_age <= 10
    assert b"lookup" in refused.payload
    ep = rd.request(Code.GET, "rd-lookup/ep", "ep=n*")  # the budget is the directory's
    assert ep.code == Code.SERVICE_UNAVAILABLE
    rd.clock.advance(refused.options.max_age)
    again = rd.request(Code.GET, "rd-lookup/res", "rt=t*")
    assert again.code == Code.CONTENT and again.payload == first.payload


def test_answers_from_the_cache_cost_nothing() -> None:
    rd = full_directory()
    first = rd.request(Code.GET, "rd-lookup/res", "rt=t")
    for _ in range(50):
        kept = rd.request(Code.GET, "rd-lookup/res", "rt=t")
        assert kept.code == Code.CONTENT and kept.payload is first.payload


def test_small_lookups_are_not_refused() -> None:
    rd = DirectorySite()
    for n in range(3):
        rd.register(f"ep=n{n}", payload=LINKS)
    for n in range(200):  # distinct queries, never cached, on a clock that stands still
        answer = rd.request(Code.GET, "rd-lookup/res", f"href=/s{n % 100}")
        assert answer.code == Code.CONTENT


def test_the_refusal_is_logged_once_per_episode() -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        rd = full_directory()
        rd.request(Code.GET, "rd-lookup/res", "rt=t")
        for n in range(5):
            assert rd.request(Code.GET, "rd-lookup/res", f"rt=t{n}*").code == (
                Code.SERVICE_UNAVAILABLE)
        rd.clock.advance(10)
        assert rd.request(Code.GET, "rd-lookup/res", "rt=x").code == Code.CONTENT
        rd.request(Code.GET, "rd-lookup/res", "rt=y").code  # noqa: B018 (spends it again)
        for n in range(5):
            rd.request(Code.GET, "rd-lookup/res", f"rt=z{n}*")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if "lookup budget" in str(e.get("log_format", ""))]
    assert len(lines) == 2, lines
