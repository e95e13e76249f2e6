"""gossipreg's test kit: fakes and harnesses for the tests of code that uses gossipreg.

Two ways to test code that talks to a registry:

* **a fake**, for unit tests: :class:`MemoryRegistry` has the interface of
  :class:`~gossipreg.AsyncRegistry` (it satisfies
  :class:`~gossipreg.RegistryProtocol`) and answers as one real member with
  no peers would, on trio's clock, with no network and no task;
  :class:`SyncMemoryRegistry` is the same behind the sync
  :class:`~gossipreg.Registry`'s interface, on a clock you can drive.
* **a real cluster**, for integration tests: :func:`cluster` runs N real
  members (:func:`~gossipreg.open_registry`) on an in-memory network
  (:class:`MemoryNetwork`), meant for trio's ``autojump_clock``, where
  failure detection and expiry cost virtual seconds only.

And one way to test protocol logic itself: :class:`CoreNetwork` drives a few
sans-IO :class:`~gossipreg.core.node.NodeCore` members by hand on a fake
clock, with no trio and no socket (gossipreg's own core tests use it).

Import it on its own (``import gossipreg.testing``); ``import gossipreg``
does not load it.
"""

from __future__ import annotations

from .. import _fixup_module_metadata
from ..core.config import Config as _Config
from ..runtime.memory import MemoryNetwork as MemoryNetwork
from ._cluster import TEST_KEY as TEST_KEY
from ._cluster import Cluster as Cluster
from ._cluster import cluster as cluster
from ._cluster import wait_until as wait_until
from ._corenet import WALL0 as WALL0
from ._corenet import CoreNetwork as CoreNetwork
from ._corenet import Datagram as Datagram
from ._corenet import decode_datagram as decode_datagram
from ._memory import MemoryRegistry as MemoryRegistry
from ._memory import MemoryWatcher as MemoryWatcher
from ._memory import SyncMemoryKeepAlive as SyncMemoryKeepAlive
from ._memory import SyncMemoryRegistry as SyncMemoryRegistry
from ._memory import SyncMemoryWatcher as SyncMemoryWatcher

#: Changes to the LAN profile for a real cluster on loopback in tests and
#: demos: short periods, so a crash is detected in a few seconds, with the
#: LAN's suspicion and retransmission multipliers, so a loaded host causes no
#: false deaths; dead members stay listed (not reaped) for 60 s, so a test can
#: see DEAD or LEFT.
FAST_CHANGES: dict[str, float] = {
    "probe_interval": 0.5,
    "probe_timeout": 0.2,
    "gossip_interval": 0.1,
    "push_pull_interval": 15.0,
    "stream_timeout": 2.0,
    "gossip_to_the_dead": 60.0,
}
#: ``Config.lan(**FAST_CHANGES)``: the protocol of the demo and of the project's real-socket tests.
FAST_CONFIG = _Config.lan(**FAST_CHANGES)

__all__ = [
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

_fixup_module_metadata(__name__, globals(), __all__)
