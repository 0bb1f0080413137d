"""Walk a Block2 download by hand with the aiocoap 0.4.17 library, reporting every block.

Usage: ``python aiocoap_blocks.py URI``.  Sends GET without a Block2 option, then asks for
each following block (same SZX, NUM advanced by the 1024-byte blocks received for BERT),
with aiocoap's own block-wise handling turned off so each response is seen.  Prints one
JSON object: ``{"blocks": [[num, more, szx, length], ...], "size2": N, "length": N,
"sha256": "..."}``.
"""

import asyncio
import hashlib
import json
import sys

import aiocoap
from aiocoap.optiontypes import BlockOption


async def walk(uri: str) -> dict[str, object]:
    context = await aiocoap.Context.create_client_context()
    try:
        body = b""
        blocks = []
        size2 = None
        block2 = None
        while True:
            request = aiocoap.Message(code=aiocoap.GET, uri=uri)
            if block2 is not None:
                request.opt.block2 = block2
            response = await context.request(request, handle_blockwise=False).response
            if not response.code.is_successful():
                raise SystemExit(f"{response.code}: {response.payload!r}")
            got = response.opt.block2
            if got is None:
                body = response.payload
                break
            if got.block_number == 0:
                size2 = response.opt.size2
            unit = 1024 if got.size_exponent == 7 else 2 ** (got.size_exponent + 4)
            if got.block_number * unit != len(body):
                raise SystemExit(f"block {got} does not continue at {len(body)}")
            blocks.append(
                [got.block_number, bool(got.more), got.size_exponent, len(response.payload)]
            )
            body += response.payload
            if not got.more:
                break
            block2 = BlockOption.BlockwiseTuple(len(body) // unit, 0, got.size_exponent)
        return {
            "blocks": blocks,
            "size2": size2,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    finally:
        await context.shutdown()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(asyncio.wait_for(walk(sys.argv[1]), 60))))
