"""The IANA "CoAP Content-Formats" registry as data (RFC 7252 section 12.3).

Each row is one registration: the Content-Format number, the media type with its
parameters exactly as the registry writes it, the content coding (``""`` for identity),
and the registry's reference.  Unassigned ranges are not listed; numbers the registry
reserves are in :data:`RESERVED`.  :mod:`coaptcp.core.mediatypes` builds its lookups from
this table.

The rows were compiled on :data:`COMPILED` from the registry at :data:`SOURCE`; its
newest reference then was RFC 9820.  To update: compare with the registry's CSV
(``content-formats.csv`` beside that page) and edit the rows; the tests check the
table's shape (sorted, unique numbers, ranges of RFC 7252 section 12.3).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COMPILED", "REGISTRY", "RESERVED", "SOURCE", "ContentFormatEntry"]

#: Where the registry is published.
SOURCE = "https://www.iana.org/assignments/core-parameters/core-parameters.xhtml#content-formats"
#: When these rows were compiled from it.
COMPILED = "2026-12-03"


class ContentFormatEntry(NamedTuple):
    """One row of the registry."""

    number: int
    media_type: str
    coding: str  # the content coding, "" for identity
    reference: str


_ROWS: tuple[tuple[int, str, str, str], ...] = (
    (0, "text/plain; charset=utf-8", "", "RFC2046, RFC3676, RFC5147"),
    (16, 'application/cose; cose-type="cose-encrypt0"', "", "RFC9052"),
    (17, 'application/cose; cose-type="cose-mac0"', "", "RFC9052"),
    (18, 'application/cose; cose-type="cose-sign1"', "", "RFC9052"),
    (19, "application/ace+cbor", "", "RFC9200"),
    (21, "image/gif", "", "W3C GIF89a"),
    (22, "image/jpeg", "", "ISO/IEC 10918-5"),
    (23, "image/png", "", "PNG"),
    (40, "application/link-format", "", "RFC6690"),
    (41, "application/xml", "", "RFC3023"),
    (42, "application/octet-stream", "", "RFC2045, RFC2046"),
    (47, "application/exi", "", "EXI Format 1.0 (Second Edition)"),
    (50, "application/json", "", "RFC8259"),
    (51, "application/json-patch+json", "", "RFC6902"),
    (52, "application/merge-patch+json", "", "RFC7396"),
    (60, "application/cbor", "", "RFC8949"),
    (61, "application/cwt", "", "RFC8392"),
    (62, "application/multipart-core", "", "RFC8710"),
    (63, "application/cbor-seq", "", "RFC8742"),
    (64, "application/edhoc+cbor-seq", "", "RFC9528"),
    (65, "application/cid-edhoc+cbor-seq", "", "RFC9528"),
    (96, 'application/cose; cose-type="cose-encrypt"', "", "RFC9052"),
    (97, 'application/cose; cose-type="cose-mac"', "", "RFC9052"),
    (98, 'application/cose; cose-type="cose-sign"', "", "RFC9052"),
    (101, "application/cose-key", "", "RFC9052"),
    (102, "application/cose-key-set", "", "RFC9052"),
    (110, "application/senml+json", "", "RFC8428"),
    (111, "application/sensml+json", "", "RFC8428"),
    (112, "application/senml+cbor", "", "RFC8428"),
    (113, "application/sensml+cbor", "", "RFC8428"),
    (114, "application/senml-exi", "", "RFC8428"),
    (115, "application/sensml-exi", "", "RFC8428"),
    (140, "application/yang-data+cbor; id=sid", "", "RFC9254"),
    (256, "application/coap-group+json", "", "RFC7390"),
    (257, "application/concise-problem-details+cbor", "", "RFC9290"),
    (258, "application/swid+cbor", "", "RFC9393"),
    (259, "application/pkixcmp", "", "RFC9482, RFC9811"),
    (260, "application/yang-sid+json", "", "RFC9595"),
    (261, "application/ace-groupcomm+cbor", "", "RFC9594"),
    (262, "application/ace-trl+cbor", "", "RFC9770"),
    (263, "application/eat+cwt", "", "RFC9782"),
    (264, "application/eat+jwt", "", "RFC9782"),
    (265, "application/eat-bun+cbor", "", "RFC9782"),
    (266, "application/eat-bun+json", "", "RFC9782"),
    (267, "application/eat-ucs+cbor", "", "RFC9782"),
    (268, "application/eat-ucs+json", "", "RFC9782"),
    (269, "application/coap-eap", "", "RFC9820"),
    (271, "application/dots+cbor", "", "RFC9132"),
    (272, "application/missing-blocks+cbor-seq", "", "RFC9177"),
    (280, "application/pkcs7-mime; smime-type=server-generated-key", "",
     "RFC7030, RFC8551, RFC9148"),
    (281, "application/pkcs7-mime; smime-type=certs-only", "", "RFC8551, RFC9148"),
    (284, "application/pkcs8", "", "RFC5958, RFC8551, RFC9148"),
    (285, "application/csrattrs", "", "RFC7030, RFC9148"),
    (286, "application/pkcs10", "", "RFC5967, RFC8551, RFC9148"),
    (287, "application/pkix-cert", "", "RFC2585, RFC9148"),
    (290, "application/aif+cbor", "", "RFC9237"),
    (291, "application/aif+json", "", "RFC9237"),
    (310, "application/senml+xml", "", "RFC8428"),
    (311, "application/sensml+xml", "", "RFC8428"),
    (320, "application/senml-etch+json", "", "RFC8790"),
    (322, "application/senml-etch+cbor", "", "RFC8790"),
    (340, "application/yang-data+cbor", "", "RFC9254"),
    (341, "application/yang-data+cbor; id=name", "", "RFC9254"),
    (432, "application/td+json", "", "W3C WoT Thing Description 1.1"),
    (433, "application/tm+json", "", "W3C WoT Thing Description 1.1"),
    (553, "application/dns-message", "", "RFC8484"),
    (601, "application/uccs+cbor", "", "RFC9781"),
    (10000, "application/vnd.ocf+cbor", "", "Michael Koster"),
    (10001, "application/oscore", "", "RFC8613"),
    (10002, "application/javascript", "", "RFC4329"),
    (11050, "application/json", "deflate", "RFC8259"),
    (11060, "application/cbor", "deflate", "RFC8949"),
    (11542, "application/vnd.oma.lwm2m+tlv", "", "OMA-TS-LightweightM2M-V1_0"),
    (11543, "application/vnd.oma.lwm2m+json", "", "OMA-TS-LightweightM2M-V1_0"),
    (11544, "application/vnd.oma.lwm2m+cbor", "", "OMA-TS-LightweightM2M-V1_2"),
    (20000, "text/css", "", "RFC2318"),
    (30000, "image/svg+xml", "", "W3C SVG"),
)

#: Every registration, in number order.
REGISTRY: tuple[ContentFormatEntry, ...] = tuple(ContentFormatEntry(*row) for row in _ROWS)

#: Numbers the registry reserves: 1542 and 1543 (early LwM2M values, kept so that they
#: are never reassigned) and 65000-65535 (experimental use, RFC 7252 section 12.3).
RESERVED: tuple[range, ...] = (range(1542, 1544), range(65000, 65536))
