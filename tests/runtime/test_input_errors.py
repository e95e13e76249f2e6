"""Hostile and mistaken input to the public API (issue 13, point 6).

Every bad argument of ``open_registry``, ``Registry``, the default registry,
``register``/``keep_alive`` and ``watch`` is a typed gossipreg error (never a
bare ``TypeError``/``ValueError``/``OverflowError``, never an exception group)
whose message names the option, shows the value and states the rule, and it
is raised before anything starts: no socket bound, no thread or task started,
no default registry created.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import gossipreg
import gossipreg.aio
from gossipreg import (
    ConfigError,
    InvalidServiceError,
    Node,
    NotFoundError,
    Registry,
    RegistryError,
    Service,
    open_registry,
)
from gossipreg._options import check_options
from gossipreg.core.config import Config
from gossipreg.core.model import MAX_NAME_LENGTH, MAX_TTL, control_character
from gossipreg.registry import AsyncRegistry
from gossipreg.runtime.memory import MemoryNetwork

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
CONFIG = Config.local()
SVC = Service("greeter", "1", nodes=(Node("g1", "10.9.0.1:80"),))

# ------------------------------------------------------------------ the table of bad options

#: (options over the defaults bind="127.0.0.1:0", keyring=KEY; error type; fragment of the message)
BAD_OPTIONS: list[tuple[dict[str, Any], type[RegistryError], str]] = [
    # keyring: the type is named, the key material never shown
    ({"keyring": 12345}, ConfigError, "keyring: must be a Keyring, raw key bytes, or base64 keys"),
    ({"keyring": 1.5}, ConfigError, "not float"),
    ({"keyring": {"k": "v"}}, ConfigError, "not dict"),
    ({"keyring": b"SECRETKEY"}, ConfigError, "keyring: primary: "),
    ({"keyring": ["SECRET!KEY"]}, ConfigError, "keyring: keys[0]: is not valid base64"),
    ({"keyring": [KEY]}, ConfigError, "keyring: keys[0]: must be a base64 str"),
    ({"keyring": None}, ConfigError, "keyring: a cluster keyring is required"),
    ({"keyring": None, "insecure": True, "secure": True}, ConfigError, "secure: set a keyring or tls"),
    # seeds
    (
        {"seeds": [("h", "x")]},
        ConfigError,
        "seeds[0]: ('h', 'x'): the port must be an int from 1 to 65535, not str 'x'",
    ),
    ({"seeds": [42]}, ConfigError, "seeds[0]: must be 'host[:port]' or a (host, port) pair, not int 42"),
    (
        {"seeds": [("h",)]},
        ConfigError,
        "seeds[0]: must be 'host[:port]' or a (host, port) pair, not tuple ('h',)",
    ),
    ({"seeds": ["10.0.0.1", ("h", 1, 2)]}, ConfigError, "seeds[1]: must be 'host[:port]'"),
    ({"seeds": [("h", 0)]}, ConfigError, "the port must be an int from 1 to 65535, not int 0"),
    ({"seeds": [("h", 70000)]}, ConfigError, "not int 70000"),
    ({"seeds": [("h", True)]}, ConfigError, "not bool True"),
    ({"seeds": [("h", 7946.0)]}, ConfigError, "not float 7946.0"),
    ({"seeds": [(None, 7946)]}, ConfigError, "the host must be a str, not NoneType None"),
    (
        {"seeds": [("h\nINFO forged", 7946)]},
        ConfigError,
        "the host 'h\\nINFO forged' contains the control character U+000A",
    ),
    ({"seeds": [("x" * 256, 7946)]}, ConfigError, "is 256 characters, over the limit of 255"),
    ({"seeds": ["h:99999"]}, ConfigError, "seeds[0]: 'h:99999': port must be a number from 0 to 65535"),
    ({"seeds": ["h:0"]}, ConfigError, "seeds[0]: 'h:0': the port must be an int from 1 to 65535"),
    (
        {"seeds": "10.0.0.1:7946,a:b:c"},
        ConfigError,
        "seeds[1]: 'a:b:c': write IPv6 addresses as [address]:port",
    ),
    ({"seeds": 42}, ConfigError, "seeds: must be a list of 'host[:port]' or (host, port)"),
    ({"seeds": b"10.0.0.1:7946"}, ConfigError, "not bytes"),
    ({"seeds": {"h": 1}}, ConfigError, "not dict"),
    # advertise
    (
        {"advertise": ("h",)},
        ConfigError,
        "advertise: must be 'host[:port]' or a (host, port) pair, not tuple ('h',)",
    ),
    ({"advertise": 5}, ConfigError, "advertise: must be 'host[:port]' or a (host, port) pair, not int 5"),
    ({"advertise": "a:b:c"}, ConfigError, "advertise: 'a:b:c': write IPv6 addresses as [address]:port"),
    ({"advertise": ("h", "80")}, ConfigError, "advertise: ('h', '80'): the port must be an int"),
    ({"advertise": ("", 80)}, ConfigError, "the host must not be empty"),
    ({"advertise": "evil\x1b[31m:80"}, ConfigError, "U+001B"),
    ({"advertise": "x" * 100_000}, ConfigError, "advertise: 'xxx"),
    # bind
    ({"bind": 7946}, ConfigError, "bind: must be a 'host:port' str, not int 7946"),
    ({"bind": None}, ConfigError, "bind: must be a 'host:port' str, not NoneType None"),
    ({"bind": "127.0.0.1"}, ConfigError, "bind: '127.0.0.1': missing :port"),
    ({"bind": "127.0.0.1:65536"}, ConfigError, "port must be a number from 0 to 65535"),
    ({"bind": "127.0.0.1\x00:0"}, ConfigError, "U+0000"),
    # name: what the wire carries (codec: at most 256 characters, non-empty, no control character)
    ({"name": "n" * (MAX_NAME_LENGTH + 1)}, ConfigError, "is 257 characters, over the limit of 256"),
    ({"name": "é" * (MAX_NAME_LENGTH + 1)}, ConfigError, "over the limit of 256"),
    ({"name": ""}, ConfigError, "name: must not be empty"),
    (
        {"name": "m\nINFO forged"},
        ConfigError,
        "name: 'm\\nINFO forged' contains the control character U+000A",
    ),
    ({"name": "m\x00"}, ConfigError, "U+0000"),
    ({"name": "m\x85"}, ConfigError, "U+0085"),
    ({"name": "m\u2028"}, ConfigError, "U+2028"),
    ({"name": "m\ud800"}, ConfigError, "lone surrogate"),
    ({"name": 42}, ConfigError, "name: must be a str, not int 42"),
    # timeout, metadata, flags, config
    ({"timeout": "5"}, ConfigError, "timeout: must be a finite, non-negative number of seconds, not str '5'"),
    ({"timeout": -1}, ConfigError, "not int -1"),
    ({"timeout": math.nan}, ConfigError, "not float nan"),
    ({"timeout": math.inf}, ConfigError, "not float inf"),
    ({"timeout": 10**400}, ConfigError, "not int <int of"),
    ({"timeout": True}, ConfigError, "not bool True"),
    ({"metadata": [("a", "b")]}, ConfigError, "metadata: must be a mapping of str to str, not list"),
    ({"metadata": {"a": 1}}, ConfigError, "metadata['a']: must be a str, not int 1"),
    ({"metadata": {1: "v"}}, ConfigError, "metadata: a key must be a str, not int 1"),
    ({"metadata": {"k\n": "v"}}, ConfigError, "metadata: a key 'k\\n' contains the control character U+000A"),
    ({"metadata": {"k": "v" * 600}}, ConfigError, "over the limit of 512 bytes"),
    ({"metadata": {"k": "\udc80"}}, ConfigError, "is not valid Unicode"),
    ({"insecure": "false"}, ConfigError, "insecure: must be True or False, not str 'false'"),
    ({"secure": 1}, ConfigError, "secure: must be True or False, not int 1"),
    ({"config": {"probe_interval": 1}}, ConfigError, "config: must be a Config, not dict"),
    # seed, limits, identity
    ({"seed": True}, ConfigError, "seed: must be an int or None, not bool True"),
    ({"seed": "7"}, ConfigError, "seed: must be an int or None, not str '7'"),
    ({"seed": 1.0}, ConfigError, "not float 1.0"),
    ({"limits": {"auth_timeout": 1}}, ConfigError, "limits: must be a DriverLimits, not dict"),
    ({"identity": ("ca.pem", "c.pem", "k.pem")}, ConfigError, "identity: must be a TLSFiles"),
    ({"retry_join": "yes"}, ConfigError, "retry_join: must be True or False, not str 'yes'"),
    ({"metrics_port": "9100"}, ConfigError, "metrics_port: must be an int from 0 to 65535, not str '9100'"),
    ({"metrics_port": 70000}, ConfigError, "not int 70000"),
    ({"metrics_port": True}, ConfigError, "not bool True"),
]


def _ids() -> list[str]:
    out = []
    for options, _, _ in BAD_OPTIONS:
        (key, value), *_ = options.items()
        text = repr(value)
        out.append(f"{key}={text if len(text) <= 24 else text[:21] + '...'}")
    return out


def check_message(exc: BaseException, error: type[RegistryError], fragment: str) -> None:
    """The error is exactly the typed error, its message holds the fragment and fits one short log line."""
    assert type(exc) is error, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, ValueError)  # every option error is also a ValueError
    message = str(exc)
    assert fragment in message
    assert control_character(message) < 0, "a raw control character would break the log line"
    assert len(message) < 400
    assert "SECRET" not in message, "key material is never shown"


@pytest.fixture
def nothing_binds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to bind a real socket, recorded (and refused)."""
    attempts: list[object] = []

    async def refuse(host: str, port: int) -> object:
        attempts.append((host, port))
        raise AssertionError(f"bound {host}:{port} despite an invalid option")

    monkeypatch.setattr("gossipreg.registry.NetTransport.bind", refuse)
    return attempts


@pytest.fixture
def started_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of gossipreg threads started during the test."""
    names: list[str] = []
    start = threading.Thread.start

    def recording_start(self: threading.Thread) -> None:
        if self.name.startswith("gossipreg-"):
            names.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    return names


def all_tasks() -> list[trio.lowlevel.Task]:
    """Every task of the current trio run."""
    out: list[trio.lowlevel.Task] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    while todo:
        task = todo.pop()
        out.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return out


@pytest.mark.parametrize(("options", "error", "fragment"), BAD_OPTIONS, ids=_ids())
async def test_a_bad_option_of_open_registry_is_a_typed_error_before_anything_starts(
    options: dict[str, Any], error: type[RegistryError], fragment: str, nothing_binds: list[object]
) -> None:
    options = {"bind": "127.0.0.1:0", "keyring": KEY, **options}
    tasks = len(all_tasks())
    with pytest.raises(error) as info:
        async with open_registry(**options):
            pytest.fail("the member started")
    check_message(info.value, error, fragment)
    assert nothing_binds == []
    assert len(all_tasks()) == tasks, "a task was left behind"


def _open_sync(options: dict[str, Any]) -> None:
    Registry(**options).close()


def _open_asyncio(options: dict[str, Any]) -> None:
    async def main() -> None:
        async with gossipreg.aio.open_registry(**options):
            pytest.fail("the member started")

    asyncio.run(main())


@pytest.mark.parametrize("front", [_open_sync, _open_asyncio], ids=["sync", "asyncio"])
@pytest.mark.parametrize(("options", "error", "fragment"), BAD_OPTIONS, ids=_ids())
def test_a_bad_option_of_the_sync_and_asyncio_registries_is_the_same_error_before_any_thread_starts(
    options: dict[str, Any],
    error: type[RegistryError],
    fragment: str,
    front: Callable[[dict[str, Any]], None],
    nothing_binds: list[object],
    started_threads: list[str],
) -> None:
    with pytest.raises(error) as info:
        front({"bind": "127.0.0.1:0", "keyring": KEY, **options})
    check_message(info.value, error, fragment)
    assert started_threads == [], "the member's thread was started"
    assert nothing_binds == []


async def test_a_bad_option_leaves_a_given_transport_unused() -> None:
    # With a ready transport (tests, the in-memory network) nothing is served either.
    transport = MemoryNetwork().transport()
    with pytest.raises(ConfigError, match="name: must not be empty"):
        async with open_registry(transport=transport, keyring=KEY, name=""):
            pytest.fail("the member started")
    assert transport._nursery is None  # serve() never ran


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=MAX_NAME_LENGTH + 3))
def test_any_text_is_a_valid_member_name_or_a_config_error(text: str) -> None:
    valid = (
        0 < len(text) <= MAX_NAME_LENGTH
        and control_character(text) < 0
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    )

    def check() -> str | None:
        return check_options(
            "127.0.0.1:0", None, name=text, keyring=KEY, tls=None, insecure=False, secure=None,
            advertise=None, config=None, timeout=1.0, metadata=None,
        ).name

    if valid:
        assert check() == text
    else:  # a ConfigError, and no other exception type
        with pytest.raises(ConfigError, match=r"^name: "):
            check()


async def test_a_member_name_at_the_wire_limit_joins(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    longest = "é" * MAX_NAME_LENGTH  # the limit is in characters, as the codec counts them
    async with open_registry(transport=net.transport(), keyring=KEY, name="a", config=CONFIG, seed=1) as a:
        seed = f"{a.address[0]}:{a.address[1]}"
        async with open_registry(
            transport=net.transport(), seeds=seed, keyring=KEY, name=longest, config=CONFIG, seed=2
        ) as b:
            assert b.name == longest
            with trio.fail_after(30):
                while {m.name for m in a.members() if m.state == "alive"} != {"a", longest}:  # noqa: ASYNC110
                    await trio.sleep(0.05)


# ------------------------------------------------------------------ ttl

#: (ttl, fragment of the message)
BAD_TTLS: list[tuple[object, str]] = [
    (1e308, "1e+308 is out of range: a ttl is from 0.001 to 4294967 seconds"),
    (10**400, "<int of"),
    (MAX_TTL + 1, "4294968 is out of range"),
    (math.inf, "inf is out of range"),
    (-math.inf, "-inf is out of range"),
    (math.nan, "nan is out of range"),
    (0, "0 is out of range"),
    (-5, "-5 is out of range"),
    (0.0001, "0.0001 is out of range"),
    (True, "ttl: must be a number of seconds or None, not bool True"),
    ("30", "not str '30'"),
    ([30], "not list [30]"),
]


def _one_member(net: MemoryNetwork) -> Any:
    return open_registry(transport=net.transport(), keyring=KEY, name="solo", config=CONFIG, seed=1)


@pytest.mark.parametrize(("ttl", "fragment"), BAD_TTLS, ids=repr)
async def test_a_bad_ttl_is_an_invalid_service_error_and_registers_nothing(
    ttl: object, fragment: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with _one_member(MemoryNetwork()) as reg:
        with pytest.raises(InvalidServiceError) as info:
            await reg.register(SVC, ttl)
        check_message(info.value, InvalidServiceError, fragment)
        with pytest.raises(InvalidServiceError) as info:
            await reg.keep_alive(SVC, ttl)
        check_message(info.value, InvalidServiceError, fragment)
        with pytest.raises(NotFoundError):
            reg.get_service("greeter")


async def test_ttl_beyond_the_maximum_is_an_invalid_service_error_not_an_overflow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # ttl=1e308 used to raise OverflowError from round(ttl * 1000) (HTTP 500 from the agent).
    async with _one_member(MemoryNetwork()) as reg:
        with pytest.raises(InvalidServiceError, match=r"^ttl: 1e\+308 is out of range"):
            await reg.register(SVC, 1e308)
        # Within MAX_TTL, the configuration's own maximum still applies (tombstone_ttl - 300 s).
        with pytest.raises(InvalidServiceError, match=r"^ttl: 4000(\.0)? is out of range \[0\.001, 3300\]"):
            await reg.register(SVC, 4000)
        with pytest.raises(InvalidServiceError, match="needs a ttl"):
            await reg.keep_alive(SVC, None)
        await reg.register(SVC, Fraction(61, 2))  # any real number of seconds
        assert [n.id for n in reg.get_service("greeter")[0].nodes] == ["g1"]


async def test_the_longest_ttl_registers_and_reaches_a_peer(autojump_clock: trio.testing.MockClock) -> None:
    config = CONFIG.replace(tombstone_ttl=MAX_TTL + 10_000.0)
    net = MemoryNetwork()
    async with open_registry(transport=net.transport(), keyring=KEY, name="a", config=config, seed=1) as a:
        seed = f"{a.address[0]}:{a.address[1]}"
        async with open_registry(transport=net.transport(), seeds=seed, keyring=KEY, name="b", config=config,
                                 seed=2) as b:
            await a.register(SVC, MAX_TTL)
            with trio.fail_after(30):
                while True:
                    try:
                        [svc] = b.get_service("greeter")
                    except NotFoundError:
                        await trio.sleep(0.05)
                    else:
                        break
            assert [n.id for n in svc.nodes] == ["g1"]


# ------------------------------------------------------------------ watch

#: (watch arguments, error type, fragment of the message)
BAD_WATCHES: list[tuple[dict[str, Any], type[RegistryError], str]] = [
    (
        {"buffer": 0},
        ConfigError,
        "buffer: must be an int of at least 1 (the results a watcher holds), not int 0",
    ),
    ({"buffer": -3}, ConfigError, "not int -3"),
    ({"buffer": True}, ConfigError, "not bool True"),
    ({"buffer": 1.5}, ConfigError, "not float 1.5"),
    ({"buffer": "8"}, ConfigError, "not str '8'"),
    ({"buffer": None}, ConfigError, "not NoneType None"),
    ({"snapshot": "yes"}, ConfigError, "snapshot: must be True or False, not str 'yes'"),
    ({"snapshot": 1}, ConfigError, "snapshot: must be True or False, not int 1"),
    ({"service": 42}, InvalidServiceError, "service: must be a service name (str) or None, not int 42"),
    ({"service": b"greeter"}, InvalidServiceError, "not bytes b'greeter'"),
]


@pytest.mark.parametrize(("arguments", "error", "fragment"), BAD_WATCHES, ids=repr)
async def test_bad_watch_arguments_are_typed_errors_and_leave_no_watcher(
    arguments: dict[str, Any],
    error: type[RegistryError],
    fragment: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _one_member(MemoryNetwork()) as reg:
        assert isinstance(reg, AsyncRegistry)
        with pytest.raises(error) as info:
            reg.watch(**arguments)
        check_message(info.value, error, fragment)
        assert not reg._watchers
        async with reg.watch("greeter", buffer=1) as watcher:  # the smallest buffer works
            await reg.register(SVC)
            assert (await watcher.next()).action == "create"


# ------------------------------------------------------------------ the sync API and the default registry


@pytest.fixture
def sync_registry() -> Iterator[Registry]:
    reg = Registry(bind="127.0.0.1:0", keyring=KEY, name="sync")
    yield reg
    reg.close()


@pytest.mark.parametrize(("ttl", "fragment"), BAD_TTLS, ids=repr)
def test_a_bad_ttl_of_the_sync_registry_is_an_invalid_service_error(
    sync_registry: Registry, ttl: object, fragment: str
) -> None:
    with pytest.raises(InvalidServiceError) as info:
        sync_registry.register(SVC, ttl)  # type: ignore[arg-type]
    check_message(info.value, InvalidServiceError, fragment)
    with pytest.raises(InvalidServiceError) as info:
        sync_registry.keep_alive(SVC, ttl)  # type: ignore[arg-type]
    check_message(info.value, InvalidServiceError, fragment)
    with pytest.raises(NotFoundError):
        sync_registry.get_service("greeter")


@pytest.mark.parametrize(("arguments", "error", "fragment"), BAD_WATCHES, ids=repr)
def test_bad_watch_arguments_of_the_sync_registry_are_typed_errors(
    sync_registry: Registry, arguments: dict[str, Any], error: type[RegistryError], fragment: str
) -> None:
    with pytest.raises(error) as info:
        sync_registry.watch(**arguments)
    check_message(info.value, error, fragment)


@pytest.mark.parametrize("timeout", [-1, math.nan, "1", True])
def test_a_bad_timeout_of_a_sync_watcher_is_a_config_error(sync_registry: Registry, timeout: object) -> None:
    with sync_registry.watch() as watcher:
        with pytest.raises(ConfigError, match=r"^timeout: must be a non-negative"):
            watcher.next(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(TimeoutError):  # the watcher stays usable
            watcher.next(timeout=0)


@pytest.fixture
def insecure_env(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared clean environment (tests/conftest.py), with GOSSIPREG_INSECURE=1."""
    monkeypatch.setenv("GOSSIPREG_INSECURE", "1")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("GOSSIPREG_NAME", "n" * (MAX_NAME_LENGTH + 1), "is 257 characters, over the limit of 256"),
        ("GOSSIPREG_NAME", "m\x1b[2J", "contains the control character U+001B"),
        ("GOSSIPREG_NAME", "m\nINFO forged", "contains the control character U+000A"),
        ("GOSSIPREG_SEEDS", "10.0.0.1:0", "the port must be an int from 1 to 65535"),
        ("GOSSIPREG_SEEDS", "a:b:c", "write IPv6 addresses"),
        ("GOSSIPREG_SEEDS", "h" * 300, "too long for an address"),
        ("GOSSIPREG_SEEDS", "h\x7f:1", "U+007F"),
        ("GOSSIPREG_ADVERTISE", "a:b:c", "write IPv6 addresses"),
        ("GOSSIPREG_ADVERTISE", "h\tx", "U+0009"),
        ("GOSSIPREG_BIND", "127.0.0.1", "missing :port"),
    ],
    ids=repr,
)
def test_a_bad_environment_value_names_the_variable_before_anything_starts(
    insecure_env: None,
    monkeypatch: pytest.MonkeyPatch,
    nothing_binds: list[object],
    started_threads: list[str],
    variable: str,
    value: str,
    fragment: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        gossipreg.list_services()
    check_message(info.value, ConfigError, fragment)
    assert str(info.value).startswith(f"{variable}: ")
    assert (nothing_binds, started_threads) == ([], [])
    assert gossipreg.default._default is None


def test_the_default_registry_functions_check_their_arguments_first(
    insecure_env: None, nothing_binds: list[object], started_threads: list[str]
) -> None:
    checks: list[tuple[Callable[[], object], type[RegistryError], str]] = [
        (lambda: gossipreg.register(SVC, ttl=1e308), InvalidServiceError, "ttl: 1e+308 is out of range"),
        (lambda: gossipreg.register(SVC, ttl="30"), InvalidServiceError, "not str '30'"),  # type: ignore[arg-type]
        (lambda: gossipreg.watch(buffer=0), ConfigError, "buffer: must be an int of at least 1"),
        (lambda: gossipreg.watch(snapshot="no"), ConfigError, "snapshot: must be True or False"),  # type: ignore[arg-type]
        (lambda: gossipreg.watch(42), InvalidServiceError, "service: must be a service name"),  # type: ignore[arg-type]
    ]
    for call, error, fragment in checks:
        with pytest.raises(error) as info:
            call()
        check_message(info.value, error, fragment)
    assert (nothing_binds, started_threads) == ([], [])
    assert gossipreg.default._default is None
