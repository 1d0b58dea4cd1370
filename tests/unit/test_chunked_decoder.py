"""The lean upstream client's chunked decoding, fed in every possible split."""

from __future__ import annotations

from sparkstack.gateway.upstream import ChunkedDecoder

WIRE = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"


def test_decodes_across_every_split() -> None:
    for step in range(1, len(WIRE) + 1):
        decoder = ChunkedDecoder()
        out = b"".join(decoder.feed(WIRE[i : i + step]) for i in range(0, len(WIRE), step))
        assert out == b"hello world!"
        assert decoder.done
        assert decoder.leftover == b"\r\n"[: len(decoder.leftover)]


def test_leftover_is_the_final_crlf() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(WIRE) == b"hello world!"
    assert decoder.leftover == b"\r\n"
