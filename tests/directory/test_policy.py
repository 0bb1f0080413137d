"""Who may be whom, and the directory's bounds (RFC 9176 sections 5, 7.5, 8.2, 8.4), and
the back end's API (find, listeners, Deferreds)."""

from __future__ import annotations

import pytest
from rd_helpers import LINKS, DirectorySite
from twisted.logger import capturedLogs

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber
from coaptcp.directory import DirectoryLimits, Registration, identity_names
from coaptcp.server import Request
from coaptcp.server.tlsinfo import TLSInfo
from coaptcp.testing import CertificateAuthority, failure, result_of, success


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def tls_with(ca: CertificateAuthority, *names: str, common_name: str | None = None) -> TLSInfo:
    issued = ca.issue(*names, common_name=common_name, client=True)
    return TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", peer_certificate=issued.certificate)


def psk(identity: bytes) -> TLSInfo:
    return TLSInfo("TLSv1.2", "PSK-AES128-GCM-SHA256", psk_identity=identity)


def test_identity_names_are_the_cn_the_dns_and_uri_sans_or_the_psk_identity(
    ca: CertificateAuthority,
) -> None:
    assert identity_names(None) == ()
    assert identity_names(TLSInfo("TLSv1.3", "x")) == ()
    assert identity_names(tls_with(ca, "node1.example", "192.0.2.5",
                                   common_name="sensor-17")) == ("sensor-17", "node1.example")
    assert identity_names(psk(b"device-9")) == ("device-9",)


def test_over_tls_the_endpoint_name_must_be_the_peers_identity(
    rd: DirectorySite, ca: CertificateAuthority
) -> None:
    tls = tls_with(ca, "node1.example", common_name="sensor-17")
    for name in ("sensor-17", "node1.example"):
        rd.register(f"ep={name}", tls=tls)
    answer = rd.request(Code.POST, "rd", "ep=sensor-18", payload=LINKS, tls=tls)
    assert answer.code == Code.FORBIDDEN
    assert answer.payload.decode() == ("this peer may not register as 'sensor-18': its TLS "
                                       "identity is 'sensor-17', 'node1.example'")
    assert rd.directory.find("sensor-18") is None
    rd.register("ep=device-9", tls=psk(b"device-9"))
    assert rd.request(Code.POST, "rd", "ep=x", tls=psk(b"device-9")).code == Code.FORBIDDEN
    # Without TLS, or over TLS without a client credential, any name may be used.
    rd.register("ep=anything")
    rd.register("ep=anon", tls=TLSInfo("TLSv1.3", "x"))


def test_operations_on_a_registration_are_checked_against_the_identity_too(
    rd: DirectorySite, ca: CertificateAuthority
) -> None:
    location = rd.register("ep=device-9", tls=psk(b"device-9"))
    assert rd.request(Code.DELETE, location, tls=psk(b"device-8")).code == Code.FORBIDDEN
    assert rd.request(Code.POST, location, tls=psk(b"device-8")).code == Code.FORBIDDEN
    assert rd.request(Code.DELETE, location, tls=psk(b"device-9")).code == Code.DELETED


def test_without_ep_the_one_name_a_psk_identity_gives_is_assigned(rd: DirectorySite) -> None:
    rd.register(tls=psk(b"device-9"))
    registration = rd.directory.find("device-9")
    assert registration is not None and registration.identity == ("device-9",)
    assert rd.directory.find_by_identity("device-9") == [registration]
    assert rd.directory.find_by_identity("device-8") == []


def test_an_authorizer_hook_decides_otherwise() -> None:
    def authorize(request: Request, endpoint: str, sector: str | None) -> bool:
        return sector == "lab" or endpoint.startswith("guest-")

    rd = DirectorySite(authorize=authorize)
    rd.register("ep=guest-1", tls=psk(b"someone"))
    rd.register("ep=anything", "d=lab")
    answer = rd.request(Code.POST, "rd", "ep=other", payload=LINKS)
    assert answer.code == Code.FORBIDDEN and answer.payload == (
        b"this peer may not register as 'other'")


def test_the_number_of_registrations_is_bounded_with_5_03_and_max_age_logged_once() -> None:
    rd = DirectorySite(DirectoryLimits(max_registrations=3, retry_after=45))
    for i in range(3):
        rd.register(f"ep=n{i}", peer=(f"192.0.2.{i}", 5683))
    with capturedLogs() as events:
        for _ in range(4):
            answer = rd.request(Code.POST, "rd", "ep=more", payload=LINKS)
            assert answer.code == Code.SERVICE_UNAVAILABLE
            assert answer.options.get_uint(OptionNumber.MAX_AGE) == 45
            assert b"holds 3 registrations" in answer.payload
    warnings = [e for e in events if "limit reached" in e.get("log_format", "")]
    assert len(warnings) == 1
    assert rd.directory.refused == {"registrations": 4}
    # A registration of a name held already is no new one: it still goes through.
    rd.register("ep=n0", peer=("192.0.2.0", 5683))
    n1 = rd.directory.find("n1")
    assert n1 is not None
    rd.directory.remove(n1)
    rd.register("ep=more")


def test_registrations_per_address_are_bounded_whatever_the_port() -> None:
    rd = DirectorySite(DirectoryLimits(max_per_peer=2))
    rd.register("ep=a", peer=("192.0.2.1", 1))
    rd.register("ep=b", peer=("192.0.2.1", 2))
    answer = rd.request(Code.POST, "rd", "ep=c", payload=LINKS, peer=("192.0.2.1", 3))
    assert answer.code == Code.SERVICE_UNAVAILABLE and answer.options.max_age == 30
    assert b"192.0.2.1 holds 2 registrations" in answer.payload
    rd.register("ep=c", peer=("192.0.2.2", 3))
    # Registering a name again from another address moves it to that address's count.
    rd.register("ep=a", peer=("192.0.2.2", 1))
    rd.register("ep=d", peer=("192.0.2.1", 4))
    assert rd.directory._per_host == {"192.0.2.1": 2, "192.0.2.2": 2}
    for registration in list(rd.directory):
        rd.directory.remove(registration)
    assert rd.directory._per_host == {}


def test_payload_size_and_link_count_get_4_13_with_size1() -> None:
    rd = DirectorySite(DirectoryLimits(max_payload=64, max_links=3))
    answer = rd.request(Code.POST, "rd", "ep=a", payload=b"</x>;title=" + b"y" * 60)
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.size1 == 64 and b"at most 64" in answer.payload
    answer = rd.request(Code.POST, "rd", "ep=a", payload=b"</a>,</b>,</c>,</d>")
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE and b"at most 3 links" in answer.payload
    location = rd.register("ep=a", payload=b"</a>,</b>,</c>")
    answer = rd.request(Code.POST, location, payload=b"</a>,</b>,</c>,</d>")
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE


def test_links_in_total_are_bounded() -> None:
    rd = DirectorySite(DirectoryLimits(max_total_links=4))
    location = rd.register("ep=a", payload=b"</1>,</2>,</3>")
    answer = rd.request(Code.POST, "rd", "ep=b", payload=b"</1>,</2>")
    assert answer.code == Code.SERVICE_UNAVAILABLE and b"holds 3 links" in answer.payload
    rd.register("ep=b", payload=b"</1>")
    assert rd.directory.total_links == 4
    assert rd.request(Code.POST, location, payload=b"</1>,</2>,</3>,</4>").code == (
        Code.SERVICE_UNAVAILABLE)
    assert rd.request(Code.POST, location, payload=b"</1>").code == Code.CHANGED
    rd.register("ep=b", payload=b"</1>,</2>,</3>")  # replacing: only the difference counts
    assert rd.directory.total_links == 4
    rd.clock.advance(90000)
    assert rd.directory.total_links == 0


def test_endpoint_attributes_are_bounded() -> None:
    rd = DirectorySite(DirectoryLimits(max_attributes=2))
    rd.register("ep=a", "et=1", "et=2")
    answer = rd.request(Code.POST, "rd", "ep=b", "et=1", "et=2", "x", payload=LINKS)
    assert answer.code == Code.BAD_REQUEST and b"more than 2 endpoint attributes" in answer.payload


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_per_peer must be a positive integer"):
        DirectoryLimits(max_per_peer=0)
    with pytest.raises(ValueError, match="default_lifetime exceeds"):
        DirectoryLimits(default_lifetime=2**32)


def test_listeners_and_deferreds_hear_of_registrations_and_their_end(rd: DirectorySite) -> None:
    made: list[Registration] = []
    ended: list[tuple[str, str]] = []
    remove = rd.directory.add_listener(made.append, lambda r, why: ended.append((r.endpoint, why)))
    waiting = result_of(rd.directory.when_registered("node1"))
    cancelled = result_of(rd.directory.when_registered("never"))
    assert waiting == []
    rd.register("ep=node1", "lt=60")
    registration = success(waiting)
    assert made == [registration] and registration.endpoint == "node1"
    assert success(result_of(rd.directory.when_registered("node1"))) is registration
    rd.register("ep=node1", "lt=60")  # a registration anew is announced again
    assert made == [registration, registration]
    gone = result_of(registration.when_gone())
    rd.clock.advance(60)
    assert success(gone) == "its lifetime of 60 s passed without an update"
    assert ended == [("node1", "its lifetime of 60 s passed without an update")]
    assert success(result_of(registration.when_gone())) == registration.gone_reason
    rd.directory.when_registered("never").cancel()
    assert cancelled == []  # the other waiter is still there
    assert rd.directory._name_waiters == {("never", None): rd.directory._name_waiters[
        ("never", None)]}
    remove()
    rd.register("ep=later")
    assert len(made) == 2


def test_a_failing_listener_is_logged_and_does_not_stop_the_others(rd: DirectorySite) -> None:
    made: list[str] = []

    def broken(registration: Registration) -> None:
        raise RuntimeError("listener bug")

    rd.directory.add_listener(broken)
    rd.directory.add_listener(lambda r: made.append(r.endpoint))
    with capturedLogs() as events:
        rd.register("ep=a")
    assert made == ["a"]
    assert any("listener" in e.get("log_format", "") and e.get("log_failure")
               for e in events)
    for event in events:
        if event.get("log_failure") is not None:
            event["log_failure"].cleanFailure()


def test_a_cancelled_when_gone_is_forgotten(rd: DirectorySite) -> None:
    rd.register("ep=a")
    registration = rd.directory.find("a")
    assert registration is not None
    d = registration.when_gone()
    results = result_of(d)
    d.cancel()
    failure(results)
    assert registration._gone_waiters == []
