"""Checks on a received request's options (RFC 7252 sections 5.4.1, 5.4.5 and 5.10).

An option is *unrecognized* when its number is unknown to the server, when its value
length is outside the registered range, or when a non-repeatable option occurs again (from
the second occurrence on).  Unrecognized elective options are ignored; an unrecognized
critical option in a request is answered with 4.02 (Bad Option) and a diagnostic.
"""

from __future__ import annotations

from collections.abc import Collection

from coaptcp.core.options import OPTION_SPECS, OptionNumber, Options, is_critical

__all__ = ["PROXY_OPTIONS", "CriticalOptionCheck", "unrecognized_critical_option"]

#: Proxy-Uri and Proxy-Scheme: a server that is not a proxy answers 5.05 (section 5.7.2).
PROXY_OPTIONS = frozenset({OptionNumber.PROXY_URI, OptionNumber.PROXY_SCHEME})


def unrecognized_critical_option(
    options: Options, understood: Collection[int]
) -> tuple[int, str] | None:
    """Return ``(number, reason)`` for the first unrecognized critical option, else ``None``.

    :param understood: option numbers the server processes; any other critical option is
        unrecognized even if a registry knows it (for example OSCORE on a server without
        OSCORE).
    """
    previous = -1
    for number, value in options.items:
        repeated = number == previous
        previous = number
        if not is_critical(number):
            continue
        spec = OPTION_SPECS.get(number)
        if spec is None:
            return number, f"unrecognized critical option {number}"
        name = spec.name
        if number not in understood:
            return number, f"unrecognized critical option {name} ({number})"
        if repeated and not spec.repeatable:
            return number, f"critical option {name} ({number}) is not repeatable"
        if not spec.length_ok(len(value)):
            return number, (
                f"critical option {name} ({number}) has a value of {len(value)} bytes; "
                f"{spec.min_length}-{spec.max_length} allowed"
            )
    return None


class CriticalOptionCheck:
    """:func:`unrecognized_critical_option` for one fixed set of understood options.

    A server checks every request against the same set, so the specs of the critical
    options it understands are looked up once, here; :meth:`first_problem` gives the
    same answer as the function.
    """

    __slots__ = ("_specs", "_understood")

    def __init__(self, understood: Collection[int]) -> None:
        self._understood = frozenset(understood)
        self._specs = {
            number: spec
            for number, spec in OPTION_SPECS.items()
            if is_critical(number) and number in self._understood
        }

    def first_problem(self, options: Options) -> tuple[int, str] | None:
        """``(number, reason)`` for the first unrecognized critical option, else ``None``.

        Options found fine are marked so (``options._checked``): the decoder hands out
        one :class:`Options` instance for the same option bytes, checked once.
        """
        if options._checked is self:
            return None
        specs = self._specs
        previous = -1
        for number, value in options.items:
            if number & 1:  # critical (RFC 7252 section 5.4.6)
                spec = specs.get(number)
                if (
                    spec is None
                    or (number == previous and not spec.repeatable)
                    or not spec.min_length <= len(value) <= spec.max_length
                ):
                    return unrecognized_critical_option(options, self._understood)
            previous = number
        options._checked = self
        return None
