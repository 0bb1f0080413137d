"""The 4.02 diagnostics name an option once, by name where it has one (RFC 7252 5.4.1)."""

from coaptcp.core.options import Options
from coaptcp.core.validation import unrecognized_critical_option


def test_an_unregistered_critical_option_is_named_by_its_number_once():
    problem = unrecognized_critical_option(Options([(65001, b"x")]), understood=())
    assert problem == (65001, "unrecognized critical option 65001")


def test_a_registered_option_the_server_does_not_process_is_named_with_its_number():
    problem = unrecognized_critical_option(Options([(9, b"")]), understood=())  # OSCORE
    assert problem is not None
    assert problem[1] == "unrecognized critical option OSCORE (9)"
