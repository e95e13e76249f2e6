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

Import it on its own (``import gossipreg.testing``); ``import gossipreg``
does not load it.
"""

from __future__ import annotations

from .. import _fixup_module_metadata
from ..runtime.memory import MemoryNetwork as MemoryNetwork
from ._cluster import TEST_KEY as TEST_KEY
from ._cluster import Cluster as Cluster
from ._cluster import cluster as cluster
from ._cluster import wait_until as wait_until
from ._memory import MemoryRegistry as MemoryRegistry
from ._memory import MemoryWatcher as MemoryWatcher
from ._memory import SyncMemoryKeepAlive as SyncMemoryKeepAlive
from ._memory import SyncMemoryRegistry as SyncMemoryRegistry
from ._memory import SyncMemoryWatcher as SyncMemoryWatcher

__all__ = [
    "TEST_KEY",
    "Cluster",
    "MemoryNetwork",
    "MemoryRegistry",
    "MemoryWatcher",
    "SyncMemoryKeepAlive",
    "SyncMemoryRegistry",
    "SyncMemoryWatcher",
    "cluster",
    "wait_until",
]

_fixup_module_metadata(__name__, globals(), __all__)
