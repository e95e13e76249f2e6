"""A join that fails says why, on real 127.0.0.1 sockets: the cause and the fix.

Where the cause is certain (the seed refused this member's messages, or the
address speaks another protocol), the JoinError comes at once instead of at
the join deadline: each test gives a deadline of 60 s and fails if the error
takes a third of that (a hang guard: no test asserts how long anything took).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from gossipreg import ConfigError, JoinError, Registry
from gossipreg.core.config import Config
from gossipreg.registry import open_registry

from .helpers import FAST, KEY, OTHER_KEY, seed_of

OTHER_LABEL = Config.lan(label="other")
#: A join deadline the permanent causes must not wait for.
DEADLINE = 60.0


async def join_error(seed: str, **options: Any) -> str:
    options = {"config": FAST, **options}
    with trio.fail_after(DEADLINE / 3), pytest.raises(JoinError) as info:
        async with open_registry(seeds=[seed], name="joiner", timeout=DEADLINE, **options):
            pytest.fail("joined")
    return str(info.value)


@asynccontextmanager
async def seed_member(**options: Any) -> AsyncIterator[str]:
    async with open_registry(name="seed", config=FAST, **options) as reg:
        yield seed_of(reg)


@pytest.mark.parametrize(
    ("seed_options", "joiner_options", "cause"),
    [
        ({"keyring": KEY}, {"keyring": OTHER_KEY}, "the seed cannot open this member's messages: no key"),
        ({"keyring": KEY}, {"keyring": KEY, "config": OTHER_LABEL}, "or the cluster labels differ"),
        ({"keyring": KEY}, {"insecure": True}, "refuses plaintext, and this member runs insecure=True"),
        ({"insecure": True}, {"keyring": KEY}, "the seed runs insecure=True and cannot open sealed messages"),
    ],
    ids=["wrong key", "wrong label", "plaintext to sealed", "sealed to plaintext"],
)
async def test_a_seed_that_refuses_says_why_and_the_join_fails_at_once(
    seed_options: dict[str, object], joiner_options: dict[str, object], cause: str
) -> None:
    async with seed_member(**seed_options) as seed:
        message = await join_error(seed, **joiner_options)
    assert message.startswith(f"could not join through any seed ({seed}): {seed}: refused: ")
    assert cause in message
    assert "within" not in message  # it did not wait for the deadline


async def test_an_http_port_given_as_a_seed_is_named_as_such() -> None:
    async def http_server(task_status: trio.TaskStatus[int]) -> None:
        async def answer(stream: trio.SocketStream) -> None:
            await stream.receive_some(100)
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(answer, listeners)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(http_server)
        message = await join_error(f"127.0.0.1:{port}", keyring=KEY)
        nursery.cancel_scope.cancel()
    assert "the peer speaks HTTP (an agent's API port?), not the gossip protocol" in message


async def test_a_seed_nothing_listens_on_is_named_and_retried_until_the_deadline() -> None:
    with socket.socket() as held:  # a port nobody listens on (bound, never listening)
        held.bind(("127.0.0.1", 0))
        seed = f"127.0.0.1:{held.getsockname()[1]}"
        with trio.fail_after(30), pytest.raises(JoinError) as info:
            async with open_registry(seeds=[seed], keyring=KEY, config=FAST, timeout=1.0):
                pytest.fail("joined")
    message = str(info.value)
    assert "within 1s" in message  # not certain: the seed may be starting, so retried
    assert "connection refused: nothing listens there; is the seed running, and is this its gossip" in message


@pytest.mark.parametrize(
    ("seeds", "problem"),
    [
        ("http://10.0.0.1:7946", "is a URL; give the address as 'host[:port]', no scheme or path"),
        ("10.0.0.1:7946 10.0.0.2:7946", "holds spaces; give one address as 'host[:port]', and separate"),
    ],
)
def test_a_malformed_seed_says_what_to_write_instead(seeds: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^seeds\[0\]: ") as info:
        Registry(seeds=seeds, keyring=KEY, handle_signals=False)
    assert problem in str(info.value)
