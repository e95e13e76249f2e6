"""The gossipreg agent: a long-running member with a local HTTP JSON API.

Needs the ``cli`` extra (h11); the core library never imports this package.

* :mod:`~gossipreg.agent.settings`: options, the TOML file, validation;
* :mod:`~gossipreg.agent.agent`: :class:`Agent`, the member plus its API;
* :mod:`~gossipreg.agent.api`: the ``/v1`` routes (``docs/http-api.md``);
* :mod:`~gossipreg.agent.http`: the HTTP/1.1 server (h11 on trio);
* :mod:`~gossipreg.agent.keyring`: fingerprints and runtime key rotation;
* :mod:`~gossipreg.agent.metrics`: Prometheus text format;
* :mod:`~gossipreg.agent.client`: a standard-library client of the API, and
  where the API's token file is (:func:`default_token_file`, :func:`find_token`);
* :mod:`~gossipreg.agent.logs`: text or JSON-lines logging.
"""

from __future__ import annotations

from .agent import Agent
from .api import AgentAPI
from .client import DEFAULT_AGENT, AgentClient, AgentError, default_token_file, find_token
from .http import HTTPLimits, HTTPServer, serve_http
from .settings import AgentSettings, PreparedAgent, ensure_token_file, load_config_file, prepare

__all__ = [
    "DEFAULT_AGENT",
    "Agent",
    "AgentAPI",
    "AgentClient",
    "AgentError",
    "AgentSettings",
    "HTTPLimits",
    "HTTPServer",
    "PreparedAgent",
    "default_token_file",
    "ensure_token_file",
    "find_token",
    "load_config_file",
    "prepare",
    "serve_http",
]
