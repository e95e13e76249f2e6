"""A one-datagram UDP probe, run inside a namespace to check what a fault really does.

``python -m tests.netns.probe recv HOST PORT SECONDS`` binds ``HOST:PORT``, prints
``bound``, then waits up to ``SECONDS`` for one datagram and prints
``received FROM`` or ``nothing``. ``python -m tests.netns.probe send HOST PORT``
sends one datagram to ``HOST:PORT`` and prints ``sent`` or ``error ERRNO-NAME``.
"""

from __future__ import annotations

import errno
import socket
import sys


def main(argv: list[str]) -> None:
    mode, host, port = argv[0], argv[1], int(argv[2])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if mode == "recv":
            sock.bind((host, port))
            print("bound", flush=True)
            sock.settimeout(float(argv[3]))
            try:
                _, peer = sock.recvfrom(2048)
            except TimeoutError:
                print("nothing", flush=True)
            else:
                print(f"received {peer[0]}", flush=True)
        elif mode == "send":
            try:
                sock.sendto(b"gossipreg-netns-probe", (host, port))
            except OSError as exc:
                print(f"error {errno.errorcode.get(exc.errno or 0, exc.errno)}", flush=True)
            else:
                print("sent", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
