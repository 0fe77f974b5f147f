"""Reading a PNG the way a chat client would check it: signature, size, pixels."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == SIGNATURE, data[:8]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, kind
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (type, body) of the PNG, each chunk's CRC checked."""
    out, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        out.append((kind, body))
        at += 12 + length
    assert out[-1][0] == b"IEND"
    return out


def assert_chart(data: bytes) -> None:
    """A chart as SPEC 6b allows it: a whole PNG, at most 1200 x 600, under 200 KB."""
    width, height = dimensions(data)
    assert 0 < width <= 1200 and 0 < height <= 600, (width, height)
    assert len(data) <= 200_000, len(data)
    chunks(data)
