"""``gossipreg agent`` as a real subprocess, for the tests of the command and of its
deployment files (the ``processes`` fixture of tests/conftest.py kills what a test started)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

#: The command line of ``gossipreg`` from this interpreter (no console script needed).
ENTRY = "from gossipreg.cli.main import main; main()"


class AgentProcess:
    """``gossipreg agent ...`` in a subprocess, its stderr collected line by line."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        """Run ``gossipreg agent ARGS`` (or ``argv``) with the environment plus ``env``."""
        full = {**os.environ, "PYTHONUNBUFFERED": "1"}
        full.pop("GOSSIPREG_HTTP_TOKEN", None)
        full.update(env or {})
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-c", ENTRY, "agent", *args],
            cwd=cwd,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, limit: float = 30.0) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (a hang guard of ``limit`` s)."""
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the agent exited ({self.proc.wait()}) without {pattern!r}: {self.lines}"
                )
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def finish(self, limit: float = 20.0) -> int:
        """Wait for the exit, collecting the rest of stderr."""
        code = self.proc.wait(limit)
        self._reader.join(5)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
