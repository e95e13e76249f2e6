"""The public surface of ``gossipreg`` stays what it says it is.

* the exact exported names (a change here is an API change: update the list
  on purpose, and docs/architecture.md, "Public API");
* every exported object reports ``gossipreg`` as its module, and still
  pickles, reprs and resolves its type hints;
* ``__version__`` is the installed distribution's;
* every exception a public call can raise (by its docstring or by a ``raise``
  in the API modules) is exported, or is a builtin;
* after close, every call that needs the member raises ``RegistryClosedError``
  (watchers: ``WatcherStoppedError``), for every registry class;
* the sync API refuses to run inside trio with ``BlockingCallError``;
* ``AsyncRegistry``, ``MemoryRegistry`` and ``gossipreg.aio.AsyncioRegistry``
  satisfy ``RegistryProtocol``:
  checked by ``mypy --strict`` on this very file (the ``_typed_*`` functions),
  which :func:`test_the_registries_satisfy_the_protocols_for_mypy` runs.
"""

from __future__ import annotations

import ast
import builtins
import importlib.metadata
import inspect
import pickle
import re
import subprocess
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import gossipreg
import gossipreg.aio
import gossipreg.testing
from gossipreg import (
    AsyncRegistry,
    BlockingCallError,
    Node,
    Registry,
    RegistryClosedError,
    RegistryError,
    RegistryProtocol,
    Service,
    Watcher,
    WatcherProtocol,
    WatcherStoppedError,
)
from gossipreg.aio import AsyncioRegistry, AsyncioWatcher
from gossipreg.core import errors as core_errors
from gossipreg.testing import MemoryRegistry, MemoryWatcher, SyncMemoryRegistry

ROOT = Path(__file__).resolve().parents[1]

#: Every name ``from gossipreg import *`` gives, sorted. An API change: keep it deliberate.
EXPORTS = [
    "AsyncRegistry",
    "AuthenticationError",
    "BlockingCallError",
    "Config",
    "ConfigError",
    "DriverLimits",
    "Endpoint",
    "InvalidServiceError",
    "JoinError",
    "KeepAlive",
    "Keyring",
    "Member",
    "Node",
    "NotFoundError",
    "RegistrationLimitError",
    "Registry",
    "RegistryClosedError",
    "RegistryError",
    "RegistryProtocol",
    "Result",
    "Service",
    "Status",
    "SyncWatcher",
    "TLSFiles",
    "Value",
    "WatchOverflowError",
    "Watcher",
    "WatcherProtocol",
    "WatcherStoppedError",
    "default_registry",
    "deregister",
    "get_service",
    "list_services",
    "open_registry",
    "register",
    "watch",
]

#: Every name of ``gossipreg.testing``.
TESTING_EXPORTS = [
    "FAST_CHANGES",
    "FAST_CONFIG",
    "TEST_KEY",
    "WALL0",
    "Cluster",
    "CoreNetwork",
    "Datagram",
    "MemoryNetwork",
    "MemoryRegistry",
    "MemoryWatcher",
    "SyncMemoryKeepAlive",
    "SyncMemoryRegistry",
    "SyncMemoryWatcher",
    "cluster",
    "decode_datagram",
    "wait_until",
]

#: Errors of gossipreg.core.errors deliberately not exported: no public call raises them.
#: A peer's undecodable bytes and a peer's clock stamp too far ahead are caught and
#: counted inside the member (statistics()), never raised to a caller.
NOT_RAISED_TO_CALLERS = {"DecodeError", "ClockDriftError"}

#: The modules that implement the public calls (where a ``raise`` reaches a caller).
API_MODULES = [
    "gossipreg/registry.py",
    "gossipreg/sync.py",
    "gossipreg/default.py",
    "gossipreg/tls.py",
    "gossipreg/interface.py",
    "gossipreg/aio.py",
    "gossipreg/_options.py",
    "gossipreg/runtime/member.py",
    "gossipreg/testing/_memory.py",
    "gossipreg/testing/_cluster.py",
]

SERVICE = Service("greeter", "1.0.0", nodes=(Node("greeter-1", "10.0.0.7:8080"),))


# ------------------------------------------------------------------ the names


def _public_names(module: Any) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name not in {"annotations"}
    }


def test_the_exported_names_are_exactly_the_list() -> None:
    assert sorted(gossipreg.__all__) == EXPORTS
    assert _public_names(gossipreg) == set(EXPORTS)
    assert sorted(gossipreg.testing.__all__) == sorted(TESTING_EXPORTS)
    assert _public_names(gossipreg.testing) == set(TESTING_EXPORTS)


@pytest.mark.parametrize(
    ("module", "names"),
    [(gossipreg, EXPORTS), (gossipreg.testing, TESTING_EXPORTS)],
    ids=["gossipreg", "testing"],
)
def test_every_export_reports_its_public_module(module: Any, names: list[str]) -> None:
    for name in names:
        obj = getattr(module, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == module.__name__, name
            assert obj.__qualname__ == name, name
            if isinstance(obj, type):
                for attr, value in vars(obj).items():
                    if inspect.isfunction(value) and not attr.startswith("__"):
                        assert value.__module__ == module.__name__, f"{name}.{attr}"


def test_exports_still_pickle_repr_and_resolve_their_type_hints() -> None:
    service = pickle.loads(pickle.dumps(SERVICE))
    assert service == SERVICE
    assert repr(service).startswith("Service(name='greeter'")
    error = pickle.loads(pickle.dumps(gossipreg.NotFoundError("service 'x' not found")))
    assert type(error) is gossipreg.NotFoundError
    assert repr(error) == "NotFoundError(\"service 'x' not found\")"
    assert pickle.loads(pickle.dumps(gossipreg.Config.local())) == gossipreg.Config.local()
    assert pickle.loads(pickle.dumps(gossipreg.register)) is gossipreg.register
    for name in EXPORTS + [f"testing.{n}" for n in TESTING_EXPORTS]:
        obj = gossipreg.testing if name.startswith("testing.") else gossipreg
        obj = getattr(obj, name.removeprefix("testing."))
        if isinstance(obj, type):
            typing.get_type_hints(obj)  # annotations resolve after the __module__ fixup
    hints = typing.get_type_hints(gossipreg.Service)
    assert hints["nodes"] == tuple[gossipreg.Node, ...]


def test_version_is_the_distributions() -> None:
    assert gossipreg.__version__ == importlib.metadata.version("gossipreg")


def test_testing_is_not_loaded_by_import_gossipreg() -> None:
    code = "import sys, gossipreg; print('gossipreg.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the errors


def test_every_error_class_is_exported_or_never_reaches_a_caller() -> None:
    classes = {
        name
        for name, obj in vars(core_errors).items()
        if isinstance(obj, type) and issubclass(obj, RegistryError)
    }
    assert classes >= NOT_RAISED_TO_CALLERS
    assert classes - NOT_RAISED_TO_CALLERS == {n for n in EXPORTS if n.endswith("Error")}
    for name in NOT_RAISED_TO_CALLERS:
        assert not hasattr(gossipreg, name)
        assert getattr(core_errors, name).__module__ == "gossipreg.core.errors"  # still importable there


def _raised_names(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id[:1].isupper():
                yield node.lineno, exc.id
            elif isinstance(exc, ast.Attribute) and exc.attr[:1].isupper():  # trio.X, not self.make_error()
                yield node.lineno, ast.unparse(exc)


def _acceptable(name: str) -> bool:
    builtin = getattr(builtins, name, None)
    return name in EXPORTS or (isinstance(builtin, type) and issubclass(builtin, BaseException))


@pytest.mark.parametrize("path", API_MODULES)
def test_the_api_modules_raise_only_exported_or_builtin_errors(path: str) -> None:
    # Ends of iterations and the caller's own cancellation are not errors.
    not_errors = {"StopAsyncIteration", "StopIteration", "asyncio.CancelledError"}
    bad = [
        f"{path}:{line}: {name}"
        for line, name in _raised_names(ROOT / path)
        if not _acceptable(name) and name not in not_errors
    ]
    assert not bad, bad


_RAISES_ITEM = re.compile(r"^(\s+)([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*):(?:\s|$)")


def _documented_raises(doc: str) -> Iterator[str]:
    """The exception names of the ``Raises:`` sections of a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Raises:":
            continue
        indent = len(line) - len(line.lstrip())
        item_indent: int | None = None
        for item in lines[i + 1 :]:
            if not item.strip():
                continue
            depth = len(item) - len(item.lstrip())
            if depth <= indent:
                break
            m = _RAISES_ITEM.match(item)
            if m and (item_indent is None or depth == item_indent):
                item_indent = depth
                yield from (n.strip() for n in m.group(2).split(","))


def _public_callables() -> Iterator[tuple[str, Any]]:
    modules = [(gossipreg, EXPORTS), (gossipreg.testing, TESTING_EXPORTS)]
    modules.append((gossipreg.aio, gossipreg.aio.__all__))
    for module, names in modules:
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, type):
                yield f"{module.__name__}.{name}", obj
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") or attr == "__init__":
                        yield f"{module.__name__}.{name}.{attr}", value
            elif callable(obj):
                yield f"{module.__name__}.{name}", obj


def test_every_documented_error_of_a_public_call_is_exported() -> None:
    documented: dict[str, set[str]] = {}
    for where, obj in _public_callables():
        target = obj.fget if isinstance(obj, property) else obj
        doc = getattr(target, "__doc__", None)
        if isinstance(doc, str):
            for name in _documented_raises(doc):
                documented.setdefault(name, set()).add(where)
    assert "AuthenticationError" in documented  # Keyring.open's: the case that was not exported
    assert "RegistryClosedError" in documented
    bad = {name: sorted(where) for name, where in documented.items() if not _acceptable(name)}
    assert not bad, bad


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        where
        for where, obj in _public_callables()
        if (inspect.isfunction(obj) or isinstance(obj, type | property))
        and not where.endswith("__init__")
        and not (obj.fget if isinstance(obj, property) else obj).__doc__
    ]
    assert not missing, missing


# ------------------------------------------------------------------ after close


def _calls(reg: Any) -> dict[str, Callable[[], Any]]:
    """A call of every public method of a registry, with valid arguments."""
    return {
        "register": lambda: reg.register(SERVICE, 30),
        "deregister": lambda: reg.deregister(SERVICE),
        "get_service": lambda: reg.get_service("greeter"),
        "list_services": lambda: reg.list_services(),
        "watch": lambda: reg.watch("greeter", snapshot=True),
        "keep_alive": lambda: reg.keep_alive(SERVICE, 30),
        "members": lambda: reg.members(),
        "statistics": lambda: reg.statistics(),
        "status": lambda: reg.status(),
    }


#: Public attributes that stay usable after close, per class.
AFTER_CLOSE_OK = {"name", "address", "keyring", "closed", "close"}


def _methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")} - AFTER_CLOSE_OK


async def _call_async(call: Callable[[], Any]) -> None:
    result = call()
    if inspect.isawaitable(result):
        await result


async def _check_closed_async_registry(reg: Any, watcher: Any) -> None:
    calls = _calls(reg)
    assert set(calls) == _methods(type(reg)), "a new method: add it to _calls"
    for call in calls.values():
        with pytest.raises(RegistryClosedError, match="closed"):
            await _call_async(call)
    assert reg.name  # still readable
    assert reg.address
    assert (await watcher.next()).action == "create"  # buffered before the close
    with pytest.raises(WatcherStoppedError):
        await watcher.next()
    with pytest.raises(WatcherStoppedError):
        watcher.next_nowait()


async def test_after_close_every_call_raises_registry_closed_error_async(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = gossipreg.testing.MemoryNetwork()
    async with gossipreg.open_registry(transport=network.transport(), insecure=True) as reg:
        watcher = reg.watch("greeter")
        await reg.register(SERVICE)
    await _check_closed_async_registry(reg, watcher)

    memory = MemoryRegistry()
    memory_watcher = memory.watch("greeter")
    await memory.register(SERVICE)
    memory.close()
    await _check_closed_async_registry(memory, memory_watcher)


def _check_closed_sync_registry(reg: Any, watcher: Any) -> None:
    calls = _calls(reg)
    assert set(calls) == _methods(type(reg)), "a new method: add it to _calls"
    for call in calls.values():
        with pytest.raises(RegistryClosedError, match="closed"):
            call()
    assert reg.name
    assert reg.address
    assert watcher.next(timeout=0).action == "create"
    with pytest.raises(WatcherStoppedError):
        watcher.next(timeout=1)
    watcher.stop()  # idempotent, and quiet after close


def test_after_close_every_call_raises_registry_closed_error_sync() -> None:
    with Registry(bind="127.0.0.1:0", insecure=True) as reg:
        watcher = reg.watch("greeter")
        reg.register(SERVICE)
    _check_closed_sync_registry(reg, watcher)

    memory = SyncMemoryRegistry()
    memory_watcher = memory.watch("greeter")
    memory.register(SERVICE)
    memory.close()
    _check_closed_sync_registry(memory, memory_watcher)


# ------------------------------------------------------------------ sync inside trio


async def test_the_sync_api_refuses_to_run_inside_trio() -> None:
    sync_calls: list[Callable[[], Any]] = [
        lambda: Registry(bind="127.0.0.1:0", insecure=True),
        gossipreg.default_registry,
        lambda: gossipreg.register(SERVICE),
        lambda: gossipreg.deregister(SERVICE),
        lambda: gossipreg.get_service("greeter"),
        gossipreg.list_services,
        lambda: gossipreg.watch(),
    ]
    for call in sync_calls:
        with pytest.raises(BlockingCallError, match="open_registry") as info:
            call()
        assert isinstance(info.value, RuntimeError)  # what this refusal raised before
    # A registry made in another thread refuses its blocking calls here too.
    reg = await trio.to_thread.run_sync(lambda: Registry(bind="127.0.0.1:0", insecure=True))
    try:
        watcher = await trio.to_thread.run_sync(reg.watch)
        handle = await trio.to_thread.run_sync(lambda: reg.keep_alive(SERVICE, 30))
        for call in [*_calls(reg).values(), reg.close, lambda: watcher.next(timeout=0), watcher.stop,
                     handle.stop]:
            with pytest.raises(BlockingCallError, match="open_registry"):
                call()
        assert not reg.closed
    finally:
        await trio.to_thread.run_sync(reg.close)


def test_the_sync_api_still_runs_in_a_thread_of_a_trio_program() -> None:
    """trio.to_thread threads are not trio threads: the sync API works there."""
    done = threading.Event()

    def use() -> None:
        with Registry(bind="127.0.0.1:0", insecure=True) as reg:
            reg.register(SERVICE)
            assert reg.get_service("greeter")[0].nodes[0].id == "greeter-1"
        done.set()

    async def main() -> None:
        await trio.to_thread.run_sync(use)

    trio.run(main)
    assert done.is_set()


# ------------------------------------------------------------------ the protocol


def _typed_registries(a: AsyncRegistry, m: MemoryRegistry, aio: AsyncioRegistry) -> list[RegistryProtocol]:
    """mypy --strict fails here if a registry stops satisfying the protocol."""
    as_protocol: RegistryProtocol = a
    return [as_protocol, m, aio]


def _typed_watchers(a: Watcher, m: MemoryWatcher, aio: AsyncioWatcher) -> list[WatcherProtocol]:
    """mypy --strict fails here if a watcher stops satisfying the protocol."""
    as_protocol: WatcherProtocol = a
    return [as_protocol, m, aio]


async def _typed_use(registry: RegistryProtocol) -> str:
    """Code written against the protocol type-checks with what it promises."""
    await registry.register(SERVICE, ttl=30)
    async with registry.watch("greeter", snapshot=True) as watcher:
        async for result in watcher:
            return result.service.nodes[0].address
    return registry.get_service("greeter")[0].version


async def test_the_registries_satisfy_the_protocols_at_run_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    memory = MemoryRegistry()
    assert isinstance(memory, RegistryProtocol)
    assert isinstance(memory.watch(), WatcherProtocol)
    assert await _typed_use(memory) == "10.0.0.7:8080"
    network = gossipreg.testing.MemoryNetwork()
    async with gossipreg.open_registry(transport=network.transport(), insecure=True) as reg:
        assert isinstance(reg, RegistryProtocol)
        assert isinstance(reg.watch(), WatcherProtocol)
        assert await _typed_use(reg) == "10.0.0.7:8080"


@pytest.mark.timeout(300)
def test_the_registries_satisfy_the_protocols_for_mypy() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(Path(__file__))],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
