"""Every agent test runs with a private state directory and no token in the environment.

Agents without a configured token create their token file in the default
location, ``$GOSSIPREG_STATE_DIR/http-token``: here a fresh temporary
directory per test, never the real home directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's ``GOSSIPREG_STATE_DIR`` (not created: the first agent creates it, mode 0700)."""
    state = tmp_path / "state" / "gossipreg"
    monkeypatch.setenv("GOSSIPREG_STATE_DIR", str(state))
    for var in ("GOSSIPREG_HTTP_TOKEN", "GOSSIPREG_HTTP_TOKEN_FILE", "GOSSIPREG_AGENT", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return state
