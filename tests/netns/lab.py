"""A throw-away network: one namespace per member, every one attached to one bridge.

Layout (``P`` is a prefix unique to the lab, ``gr<pid % 1000><n>``)::

    namespace Pb:   bridge Pbr (the network) and bridge Pbs (the far side of a split),
                    veth Pv<i> (bridge side of member i's link), enslaved to Pbr
    namespace Pm<i>: veth Pe<i> with 10.213.<k>.<i + 1>/24, and lo

Everything lives inside namespaces the lab creates (nothing in the root
namespace), so traffic can only reach the lab's own addresses. Faults use
``ip`` only:

* :meth:`NetLab.split` / :meth:`NetLab.heal`: move member links to the bridge
  ``Pbs`` and back (each side keeps talking within itself);
* :meth:`NetLab.set_link`: set a member's bridge-side veth down or up;
* :meth:`NetLab.set_blackhole`: in a member's namespace, blackhole routes for
  both halves of the subnet, more specific than the connected /24: packets
  still arrive on the interface that stays up, but nothing can be sent to
  the subnet (``sendto`` and ``connect`` fail with ``EINVAL``).

:meth:`NetLab.destroy` deletes the veths, the bridges and the namespaces and
ignores what is already gone; it never raises.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

import trio

IP = shutil.which("ip") or "/sbin/ip"
#: Seconds any one ``ip`` command may take.
IP_TIMEOUT = 15.0
#: The members' gossip port (UDP and TCP).
PORT = 7946
#: First two octets of every lab's /24 (10.213.<k>.0/24); labs never share a namespace,
#: so the same subnet in two labs cannot collide.
NET = "10.213"

_lab_numbers = itertools.count()


class IpError(RuntimeError):
    """An ``ip`` command failed."""


def _ip_sync(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IP, *args], input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )


async def ip(*args: str, stdin: str | None = None) -> None:
    """Run ``ip ARGS`` (fed ``stdin``); raise :class:`IpError` with its output if it fails."""
    with trio.fail_after(IP_TIMEOUT):
        result = await trio.run_process(
            [IP, *args],
            stdin=stdin.encode() if stdin is not None else b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if result.returncode != 0:
        err = (result.stderr or b"").decode(errors="replace").strip()
        raise IpError(f"ip {' '.join(args)} failed ({result.returncode}): {err}")


def netns_unavailable() -> str | None:
    """Why this host cannot run the lab (not root, no ``ip``, no veth or bridge), or ``None``."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (euid 0) to create network namespaces, veths and bridges"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    for n in range(20):
        name = f"gr{os.getpid() % 1000}chk{n}"
        try:
            added = _ip_sync(["netns", "add", name])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`ip netns add` failed: {exc}"
        if added.returncode != 0:
            if "File exists" in added.stderr:
                continue
            return f"`ip netns add {name}` failed (exit {added.returncode}): {added.stderr.strip()}"
        try:
            for args in (
                ["link", "add", "chka", "type", "veth", "peer", "name", "chkb"],
                ["link", "add", "chkbr", "type", "bridge"],
            ):
                made = _ip_sync(["-n", name, *args])
                if made.returncode != 0:
                    return (
                        f"`ip {' '.join(args)}` failed in a namespace (exit {made.returncode}): "
                        f"{made.stderr.strip()}"
                    )
        finally:
            _ip_sync(["netns", "del", name])
        return None
    return "could not find a free namespace name to try `ip netns add`"


class NetLab:
    """``size`` namespaces on one bridge; make one with :meth:`create`, always :meth:`destroy` it."""

    def __init__(self, prefix: str, size: int, octet: int) -> None:
        self.prefix = prefix
        self.size = size
        self.octet = octet
        self.bridge_ns = f"{prefix}b"
        self.bridge = f"{prefix}br"
        self.far_bridge = f"{prefix}bs"
        self.subnet = f"{NET}.{octet}.0/24"
        #: Namespaces this lab created (and so must delete).
        self.created: list[str] = []

    def ns(self, i: int) -> str:
        return f"{self.prefix}m{i}"

    def bridge_veth(self, i: int) -> str:
        return f"{self.prefix}v{i}"

    def member_veth(self, i: int) -> str:
        return f"{self.prefix}e{i}"

    def host(self, i: int) -> str:
        return f"{NET}.{self.octet}.{i + 1}"

    def address(self, i: int) -> str:
        return f"{self.host(i)}:{PORT}"

    def exec_args(self, i: int, *argv: str) -> list[str]:
        """``argv`` run inside member ``i``'s namespace."""
        return [IP, "netns", "exec", self.ns(i), *argv]

    def names(self) -> list[str]:
        """Every interface and namespace name (for checks of length and uniqueness)."""
        out = [self.bridge_ns, self.bridge, self.far_bridge]
        for i in range(self.size):
            out += [self.ns(i), self.bridge_veth(i), self.member_veth(i)]
        return out

    # ------------------------------------------------------------ life cycle

    @classmethod
    async def create(cls, size: int) -> NetLab:
        """Reserve a free prefix (its namespaces did not exist), then build the network.

        On failure everything made so far is deleted and the error propagates.
        """
        base = f"gr{os.getpid() % 1000}"
        for _ in range(50):
            n = next(_lab_numbers)
            lab = cls(f"{base}{n}", size, n % 250)
            assert all(len(name) <= 15 for name in lab.names()), lab.names()
            if lab._reserve():
                break
        else:
            raise IpError(f"no free lab prefix {base}<n>: leftover namespaces? (ip netns list)")
        try:
            await lab._build()
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _reserve(self) -> bool:
        """Add every namespace; ``False`` (having deleted those added) if one already exists."""
        for name in [self.bridge_ns, *(self.ns(i) for i in range(self.size))]:
            result = _ip_sync(["netns", "add", name])
            if result.returncode != 0:
                self.destroy()
                if "File exists" in result.stderr:
                    return False
                raise IpError(f"ip netns add {name} failed: {result.stderr.strip()}")
            self.created.append(name)
        return True

    async def _build(self) -> None:
        b = self.bridge_ns
        await ip(
            "-n",
            b,
            "-batch",
            "-",
            stdin=(
                f"link add {self.bridge} type bridge\n"
                f"link add {self.far_bridge} type bridge\n"
                f"link set {self.bridge} up\n"
                f"link set {self.far_bridge} up\n"
                "link set lo up\n"
            ),
        )
        for i in range(self.size):
            v, e, ns = self.bridge_veth(i), self.member_veth(i), self.ns(i)
            await ip("-n", b, "link", "add", v, "type", "veth", "peer", "name", e, "netns", ns)
            await ip("-n", b, "link", "set", v, "master", self.bridge, "up")
            await ip(
                "-n",
                ns,
                "-batch",
                "-",
                stdin=f"addr add {self.host(i)}/24 dev {e}\nlink set {e} up\nlink set lo up\n",
            )

    def destroy(self) -> None:
        """Delete veths, bridges and namespaces; ignore what is gone; never raise."""
        if self.bridge_ns in self.created:
            lines = [f"link del {self.bridge_veth(i)}" for i in range(self.size)]
            lines += [f"link del {self.bridge}", f"link del {self.far_bridge}"]
            self._quiet(["-n", self.bridge_ns, "-force", "-batch", "-"], "\n".join(lines) + "\n")
        for name in reversed(self.created):
            self._quiet(["netns", "del", name])
        self.created.clear()

    @staticmethod
    def _quiet(args: list[str], stdin: str | None = None) -> None:
        try:
            _ip_sync(args, stdin)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"netns lab teardown: ip {' '.join(args)}: {exc}", file=sys.stderr)

    # ------------------------------------------------------------ faults

    async def split(self, members: Sequence[int]) -> None:
        """Move ``members``' links to the far bridge: they reach each other but no one else."""
        lines = "".join(f"link set {self.bridge_veth(i)} master {self.far_bridge}\n" for i in members)
        await ip("-n", self.bridge_ns, "-batch", "-", stdin=lines)

    async def heal(self, members: Sequence[int]) -> None:
        """Move ``members``' links back to the main bridge."""
        lines = "".join(f"link set {self.bridge_veth(i)} master {self.bridge}\n" for i in members)
        await ip("-n", self.bridge_ns, "-batch", "-", stdin=lines)

    async def set_link(self, i: int, up: bool) -> None:
        """Set member ``i``'s bridge-side veth up or down (its own side loses carrier)."""
        await ip("-n", self.bridge_ns, "link", "set", self.bridge_veth(i), "up" if up else "down")

    def blackhole_routes(self) -> list[str]:
        """Two /25 blackhole routes covering the subnet, more specific than the connected /24."""
        return [f"{NET}.{self.octet}.0/25", f"{NET}.{self.octet}.128/25"]

    async def set_blackhole(self, i: int, on: bool) -> None:
        """In member ``i``'s namespace, add (or delete) blackhole routes to the whole subnet."""
        verb = "add" if on else "del"
        lines = "".join(f"route {verb} blackhole {route}\n" for route in self.blackhole_routes())
        await ip("-n", self.ns(i), "-batch", "-", stdin=lines)
