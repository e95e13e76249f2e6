"""Length-prefixed framing: round trips, the size limit, timeouts and end of stream.

Every test runs on in-memory streams (``trio.testing``) under ``autojump_clock``,
so timeouts cost no wall time.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gossipreg.runtime.framing import FramedStream, FrameError

TIMEOUT = 5.0


def header(n: int) -> bytes:
    return n.to_bytes(4, "big")


class RecordingStream(trio.abc.Stream):
    """Wraps a stream and records the ``max_bytes`` of every ``receive_some`` call."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.asked: list[int | None] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:  # pragma: no cover - unused
        raise NotImplementedError

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self.asked.append(max_bytes)
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_frames_round_trip_in_order() -> None:
    left, right = trio.testing.memory_stream_pair()
    sender = FramedStream(left, max_frame=200_000, timeout=TIMEOUT)
    receiver = FramedStream(right, max_frame=200_000, timeout=TIMEOUT)
    payloads = [b"", b"x", bytes(range(256)), b"\x00" * 4, bytes(200_000), b"last"]
    with trio.fail_after(5):
        for p in payloads:
            await sender.send(p)
        assert [await receiver.receive() for _ in payloads] == payloads
        await sender.aclose()
        assert await receiver.receive() is None


async def test_frames_reassemble_from_any_chunking(autojump_clock: trio.testing.MockClock) -> None:
    """Frames split byte by byte, or several in one write, come out whole and in order."""
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=1000, timeout=TIMEOUT)
    wire = b"".join(header(len(p)) + p for p in (b"alpha", b"", b"gamma" * 20))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                for i in range(len(wire)):
                    await left.send_all(wire[i : i + 1])
                    await trio.sleep(0.01)
                await left.send_all(wire)  # the same three frames in one write
                await left.aclose()

            nursery.start_soon(trickle)
            got = []
            while (frame := await receiver.receive()) is not None:
                got.append(frame)
    assert got == [b"alpha", b"", b"gamma" * 20] * 2


async def test_frame_of_exactly_max_frame_is_accepted() -> None:
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        await FramedStream(left, max_frame=64, timeout=TIMEOUT).send(b"m" * 64)
        assert await FramedStream(right, max_frame=64, timeout=TIMEOUT).receive() == b"m" * 64


@pytest.mark.parametrize("announced", [65, 2**32 - 1])
async def test_oversized_frame_is_refused_from_its_header_alone(
    announced: int, autojump_clock: trio.testing.MockClock
) -> None:
    """The announced length is checked before a byte of the body is read or buffered."""
    left, right = trio.testing.memory_stream_pair()
    recording = RecordingStream(right)
    receiver = FramedStream(recording, max_frame=64, timeout=TIMEOUT)
    # Only the header: were the body awaited, receive() would stall until the timeout.
    await left.send_all(header(announced))
    start = trio.current_time()
    with pytest.raises(FrameError, match="limit"):
        await receiver.receive()
    assert trio.current_time() == start  # refused at once, not after a timeout
    # One read, of the header's size class: nothing was read or reserved for the body.
    assert recording.asked == [65536]
    assert len(receiver._buffer) == 4


async def test_oversized_payload_is_refused_on_send() -> None:
    left, right = trio.testing.memory_stream_pair()
    sender = FramedStream(left, max_frame=64, timeout=TIMEOUT)
    with trio.fail_after(5):
        with pytest.raises(FrameError, match="exceeds"):
            await sender.send(b"m" * 65)
        # Nothing of the refused frame went out: the next frame is the first the peer sees.
        await sender.send(b"ok")
        assert await FramedStream(right, max_frame=64, timeout=TIMEOUT).receive() == b"ok"


@pytest.mark.parametrize("sent", [header(10)[:2], header(10), header(10) + b"12345"])
async def test_peer_stalling_mid_frame_hits_the_timeout(
    sent: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=64, timeout=TIMEOUT)
    await left.send_all(sent)
    start = trio.current_time()
    with pytest.raises(FrameError, match="stalled"):
        await receiver.receive(idle_timeout=100 * TIMEOUT)
    # The frame had started, so the frame timeout applied, not the (longer) idle one,
    # and once for the whole frame, header included (virtual time).
    assert trio.current_time() - start == pytest.approx(TIMEOUT)
    await left.aclose()


async def test_no_frame_within_the_idle_timeout_is_a_stall(autojump_clock: trio.testing.MockClock) -> None:
    _left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=64, timeout=TIMEOUT)
    start = trio.current_time()
    with pytest.raises(FrameError, match="stalled"):
        await receiver.receive(idle_timeout=3 * TIMEOUT)
    assert trio.current_time() - start == pytest.approx(3 * TIMEOUT)


async def test_idle_timeout_lets_a_quiet_peer_start_a_frame_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=64, timeout=TIMEOUT)

    async def late() -> None:
        await trio.sleep(2 * TIMEOUT)
        await FramedStream(left, max_frame=64, timeout=TIMEOUT).send(b"late")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late)
        assert await receiver.receive(idle_timeout=3 * TIMEOUT) == b"late"


async def test_clean_eof_between_frames_is_none() -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=64, timeout=TIMEOUT)
    with trio.fail_after(5):
        await left.send_all(header(2) + b"ok")
        await left.aclose()
        assert await receiver.receive() == b"ok"
        assert await receiver.receive() is None


@pytest.mark.parametrize("sent", [header(10)[:3], header(10), header(10) + b"123"])
async def test_eof_mid_frame_is_an_error(sent: bytes) -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedStream(right, max_frame=64, timeout=TIMEOUT)
    with trio.fail_after(5):
        await left.send_all(sent)
        await left.aclose()
        with pytest.raises(FrameError, match="mid-frame"):
            await receiver.receive()


async def test_send_to_a_peer_that_never_reads_times_out(autojump_clock: trio.testing.MockClock) -> None:
    left, _right = trio.testing.lockstep_stream_pair()  # send_all waits for the reader
    sender = FramedStream(left, max_frame=64, timeout=TIMEOUT)
    with pytest.raises(FrameError, match="timed out"):
        await sender.send(b"unread")
