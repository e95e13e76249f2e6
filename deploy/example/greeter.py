"""An example service for deploy/compose.yaml: it serves HTTP and registers itself through an agent.

Standard library only. It registers ``greeter`` (node id: the host name,
address: host name and port) through the agent's HTTP API with a 30 s TTL,
renews it every 10 s, and deregisters on SIGTERM or SIGINT.

Environment: ``AGENT`` (the agent's API, default ``http://127.0.0.1:8946``),
``GOSSIPREG_HTTP_TOKEN`` (the agent's token: registering needs it), ``PORT``
(default 8080), ``SERVICE_HOST`` (the address others reach this service at,
default the host name).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request

AGENT = os.environ.get("AGENT", "http://127.0.0.1:8946").rstrip("/")
TOKEN = os.environ["GOSSIPREG_HTTP_TOKEN"]
PORT = int(os.environ.get("PORT", "8080"))
HOST = os.environ.get("SERVICE_HOST") or socket.gethostname()
TTL = 30
SERVICE = {"name": "greeter", "version": "1.0.0", "nodes": [{"id": HOST, "address": f"{HOST}:{PORT}"}]}


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {HOST}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def call(method: str, path: str) -> str:
    request = urllib.request.Request(
        AGENT + path,
        data=json.dumps(SERVICE).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()


def main() -> None:
    server = http.server.ThreadingHTTPServer(("", PORT), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        try:
            print("registered:", call("PUT", f"/v1/services?ttl={TTL}"), flush=True)
        except (urllib.error.URLError, OSError) as exc:
            print("cannot register yet:", exc, flush=True)
        stop.wait(TTL / 3)
    try:
        print("deregistered:", call("DELETE", "/v1/services"), flush=True)
    except (urllib.error.URLError, OSError) as exc:
        print("cannot deregister (the TTL will expire it):", exc, flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
