"""deploy/: the Dockerfile, the Compose file, the systemd unit and the Kubernetes manifests.

Checked statically everywhere (YAML parsed only if PyYAML is installed, else
with text assertions), with their own tools where this machine has them
(``docker build`` with a daemon, ``docker compose config`` with the Compose
plugin, ``systemd-analyze verify``), and by running what they run: the
image's exact command line with its environment (on 127.0.0.1), its health
check, and the example service against a real agent.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gossipreg.agent.client import AgentClient, AgentError
from gossipreg.agent.settings import ENVIRONMENT, load_environment
from gossipreg.core.errors import NotFoundError
from tests.agent.helpers import KEY1_B64
from tests.agent.processes import AgentProcess

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
HAVE_YAML = importlib.util.find_spec("yaml") is not None


def load_yaml(path: Path) -> list[Any]:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    return list(yaml.safe_load_all(path.read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def docker_daemon() -> str | None:
    """Why ``docker build`` cannot run here, or ``None`` if it can."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "the docker command is here but no daemon answers (docker info failed)"
    return None


def docker_compose() -> str | None:
    """Why ``docker compose config`` cannot run here, or ``None`` if it can."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30,
                             check=False)
    if version.returncode != 0:
        return "the docker command has no compose plugin (docker compose version failed)"
    return None


# ---------------------------------------------------------------- the Dockerfile


def instructions(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's ``(INSTRUCTION, arguments)``, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def env_of(args: str) -> dict[str, str]:
    """The variables of one ``ENV k=v k2=v2`` instruction (values without spaces or quotes)."""
    return dict(pair.split("=", 1) for pair in args.split())


DOCKERFILE = instructions(DEPLOY / "Dockerfile")
FINAL = DOCKERFILE[max(i for i, (word, _) in enumerate(DOCKERFILE) if word == "FROM") :]
IMAGE_ENV = {k: v for word, args in FINAL if word == "ENV" for k, v in env_of(args).items()}


def exec_form(word: str) -> list[str]:
    """The JSON array of the final stage's ``word`` instruction (``ENTRYPOINT``, ``CMD``), or []."""
    found = [args for w, args in FINAL if w == word]
    if not found:
        return []
    value = json.loads(found[-1])
    assert isinstance(value, list)
    return [str(v) for v in value]


def healthcheck() -> list[str]:
    (args,) = [args for w, args in FINAL if w == "HEALTHCHECK"]
    form = args[args.index("CMD ") + 4 :]
    value = json.loads(form)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_the_image_is_slim_unprivileged_and_configured_by_the_environment() -> None:
    froms = [args for word, args in DOCKERFILE if word == "FROM"]
    assert len(froms) == 2, froms  # build, then run
    assert all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    users = [args for word, args in FINAL if word == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    exposed = {p for word, args in FINAL if word == "EXPOSE" for p in args.split()}
    assert {"7946/tcp", "7946/udp"} <= exposed
    assert f"{IMAGE_ENV['GOSSIPREG_HTTP'].rsplit(':', 1)[1]}/tcp" in exposed
    assert exec_form("ENTRYPOINT") + exec_form("CMD") == ["gossipreg", "agent"]
    # Only variables configure it: the agent's (checked by its own reader) and the interpreter's.
    assert {k for k in IMAGE_ENV if not k.startswith("GOSSIPREG_")} == {"PATH", "PYTHONUNBUFFERED"}
    agent_vars = {k: v for k, v in IMAGE_ENV.items() if k in ENVIRONMENT.values()}
    assert set(load_environment(agent_vars)) == {"bind", "http", "http_token_file"}
    check = healthcheck()
    assert check[0] == "python"
    assert "urllib.request" in check[-1]
    assert "/v1/health" in check[-1]
    installs = " ".join(args for word, args in DOCKERFILE if word == "RUN")
    assert '"/src[cli]"' in installs
    # What the build copies exists, and the ignore file lets it through.
    copied = [Path(p) for word, args in DOCKERFILE if word == "COPY" and "--from" not in args
              for p in args.split()[:-1]]
    assert copied
    for p in copied:
        assert (ROOT / p).exists(), p
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for p in copied:
        assert f"!{p}" in ignore or f"!{p}/" in ignore, p


def image_environment(tmp_path: Path, http_port: int, **extra: str) -> dict[str, str]:
    """The image's ENV with this checkout's venv as /opt/gossipreg, local addresses and state, and
    what a user passes with ``docker run -e``."""
    env = dict(IMAGE_ENV)
    path = IMAGE_ENV["PATH"].replace("/opt/gossipreg/bin", str(BIN))
    env["PATH"] = path.replace("$PATH", os.environ["PATH"])
    env["GOSSIPREG_BIND"] = "127.0.0.1:0"
    env["GOSSIPREG_HTTP"] = f"127.0.0.1:{http_port}"
    env["GOSSIPREG_STATE_DIR"] = str(tmp_path / "state")
    env["GOSSIPREG_HTTP_TOKEN_FILE"] = str(tmp_path / "state" / "http-token")
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GOSSIPREG_")}, **env, **extra}


def run_healthcheck(env: dict[str, str]) -> int:
    return subprocess.run(healthcheck(), env=env, capture_output=True, timeout=30, check=False).returncode


def test_the_images_command_runs_a_healthy_agent_that_leaves_on_sigterm(
    tmp_path: Path, processes: list[AgentProcess]
) -> None:
    port = free_port()
    env = image_environment(tmp_path, port, GOSSIPREG_KEYRING=KEY1_B64, GOSSIPREG_NAME="container")
    assert run_healthcheck(env) != 0  # nothing listens yet
    agent = AgentProcess(cwd=tmp_path, env=env, argv=exec_form("ENTRYPOINT") + exec_form("CMD"))
    processes.append(agent)
    url = agent.wait_for(r"agent container ready: gossip on \S+, HTTP API on (http://\S+)").group(1)
    assert url == f"http://127.0.0.1:{port}"
    assert run_healthcheck(env) == 0
    # The token file given by the image's variables was made, and it opens the API.
    token = (tmp_path / "state" / "http-token").read_text().strip()
    assert AgentClient(url, token).members()["member"] == "container"
    assert AgentClient(url, token).keyring()["keys"][0]["primary"] is True
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.finish() == 0
    assert "agent left the cluster" in "\n".join(agent.lines)
    assert run_healthcheck(env) != 0


@pytest.mark.timeout(900)
def test_docker_builds_the_image(tmp_path: Path) -> None:
    reason = docker_daemon()
    if reason is not None:
        pytest.skip(reason)
    tag = f"gossipreg-test:{os.getpid()}"
    build = subprocess.run(["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
                           capture_output=True, text=True, timeout=850, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", tag],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert user
        assert user.split(":")[0] not in ("root", "0")
        run = subprocess.run(["docker", "run", "--rm", "--entrypoint", "gossipreg", tag, "agent", "--help"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert "GOSSIPREG_RETRY_JOIN" in run.stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


# ---------------------------------------------------------------- Compose


COMPOSE = (DEPLOY / "compose.yaml").read_text()


def test_the_compose_file_runs_three_agents_joining_by_name_and_an_example_service() -> None:
    if HAVE_YAML:
        (doc,) = load_yaml(DEPLOY / "compose.yaml")
        services = doc["services"]
        agents = sorted(name for name in services if name.startswith("agent-"))
        assert agents == ["agent-1", "agent-2", "agent-3"]
        for name in agents:
            svc = services[name]
            env = svc["environment"]
            assert set(env["GOSSIPREG_SEEDS"].split(",")) == set(agents)
            assert env["GOSSIPREG_RETRY_JOIN"] == "1"
            assert env["GOSSIPREG_NAME"] == name
            assert env["GOSSIPREG_KEYRING_FILE"] == "/run/secrets/gossipreg_keyring"
            assert svc["secrets"] == ["gossipreg_keyring"]
            assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
            load_environment({k: str(v) for k, v in env.items()})
        greeter = services["greeter"]
        assert greeter["environment"]["AGENT"] == "http://agent-1:8946"
        assert greeter["env_file"] == "cluster.env"
        assert greeter["depends_on"]["agent-1"]["condition"] == "service_healthy"
        assert doc["secrets"]["gossipreg_keyring"]["file"] == "./keyring"
    else:  # no PyYAML: the same facts, read as text
        for name in ("agent-1", "agent-2", "agent-3"):
            assert f"\n  {name}:\n    <<: *agent\n" in COMPOSE
            assert f"GOSSIPREG_NAME: {name}\n" in COMPOSE
        assert "GOSSIPREG_SEEDS: agent-1,agent-2,agent-3\n" in COMPOSE
        assert 'GOSSIPREG_RETRY_JOIN: "1"\n' in COMPOSE
        assert "GOSSIPREG_KEYRING_FILE: /run/secrets/gossipreg_keyring\n" in COMPOSE
        assert "secrets:\n  gossipreg_keyring:\n    file: ./keyring\n" in COMPOSE
        assert "AGENT: http://agent-1:8946\n" in COMPOSE
        assert "condition: service_healthy" in COMPOSE
        assert "dockerfile: deploy/Dockerfile\n" in COMPOSE
        assert "\t" not in COMPOSE
        load_environment({"GOSSIPREG_SEEDS": "agent-1,agent-2,agent-3", "GOSSIPREG_RETRY_JOIN": "1",
                          "GOSSIPREG_NAME": "agent-1"})
    assert "./example/greeter.py:/app/greeter.py:ro" in COMPOSE
    assert (DEPLOY / "example" / "greeter.py").is_file()


def test_docker_compose_accepts_the_compose_file(tmp_path: Path) -> None:
    reason = docker_compose()
    if reason is not None:
        pytest.skip(reason)
    # A copy beside a made-up key and env file (the real ones are each user's own).
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    (copy / "keyring").write_text(KEY1_B64 + "\n")
    (copy / "cluster.env").write_text("GOSSIPREG_HTTP_TOKEN=t0ken\n")
    out = subprocess.run(
        ["docker", "compose", "-f", str(copy / "compose.yaml"), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert {"agent-1", "agent-2", "agent-3", "greeter"} <= services.keys()
    assert services["agent-2"]["environment"]["GOSSIPREG_RETRY_JOIN"] == "1"
    assert services["greeter"]["environment"]["GOSSIPREG_HTTP_TOKEN"] == "t0ken"


def test_the_example_service_registers_itself_through_an_agent_and_leaves_on_sigterm(
    tmp_path: Path, processes: list[AgentProcess]
) -> None:
    token = "example-t0ken"
    agent = AgentProcess(
        cwd=tmp_path,
        env={"GOSSIPREG_INSECURE": "1", "GOSSIPREG_BIND": "127.0.0.1:0", "GOSSIPREG_HTTP": "127.0.0.1:0",
             "GOSSIPREG_HTTP_TOKEN": token, "GOSSIPREG_STATE_DIR": str(tmp_path / "state")},
    )
    processes.append(agent)
    url = agent.wait_for(r"HTTP API on (http://\S+)").group(1)
    client = AgentClient(url, token)
    port = free_port()
    greeter = subprocess.Popen(
        [sys.executable, str(DEPLOY / "example" / "greeter.py")],
        env={**os.environ, "AGENT": url, "GOSSIPREG_HTTP_TOKEN": token, "PORT": str(port),
             "SERVICE_HOST": "127.0.0.1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def nodes() -> list[str]:
            try:
                return [n["address"] for v in client.service("greeter") for n in v["nodes"]]
            except (AgentError, NotFoundError):
                return []

        deadline = time.monotonic() + 30  # a hang guard, not a measurement
        while nodes() != [f"127.0.0.1:{port}"]:
            assert greeter.poll() is None, greeter.communicate()[0]
            assert time.monotonic() < deadline, "the example service never registered"
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            assert answer.read() == b"hello from 127.0.0.1\n"
        greeter.send_signal(signal.SIGTERM)
        output = greeter.communicate(timeout=30)[0]
        assert greeter.returncode == 0, output
        assert "deregistered:" in output
        assert nodes() == []
    finally:
        if greeter.poll() is None:
            greeter.kill()
            greeter.communicate()


# ---------------------------------------------------------------- systemd


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "gossipreg.service").read_text())
    return parser


def test_the_unit_is_a_hardened_notify_service_of_its_own_user() -> None:
    u = unit()
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    s = u["Service"]
    assert s["Type"] == "notify"
    assert s["User"] == "gossipreg"
    assert s["StateDirectory"] == "gossipreg"
    assert "GOSSIPREG_STATE_DIR=/var/lib/gossipreg" in s["Environment"].split()
    assert s["EnvironmentFile"] == "/etc/gossipreg/env"
    command = s["ExecStart"].split()
    assert Path(command[0]).name == "gossipreg"
    assert command[1:] == ["agent"]
    assert s["Restart"] == "on-failure"
    assert float(s["TimeoutStopSec"]) > 1  # the leave takes up to a second
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[option] == "yes", option
    assert s["ProtectSystem"] == "strict"
    # AF_UNIX: the notify socket.
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_the_units_environment_file_is_read_by_the_agent(tmp_path: Path) -> None:
    pairs: dict[str, str] = {}
    for line in (DEPLOY / "gossipreg.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            pairs[key] = value
    assert set(pairs) <= set(ENVIRONMENT.values())
    read = load_environment(pairs)
    assert read["retry_join"] is True
    assert str(read["keyring_file"]).startswith("/var/lib/gossipreg/")  # writable there (StateDirectory)


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine")
    # The unit as installed, its ExecStart pointing at this checkout's gossipreg (verify checks it exists).
    text = (DEPLOY / "gossipreg.service").read_text()
    exec_start = unit()["Service"]["ExecStart"].split()[0]
    copy = tmp_path / "gossipreg.service"
    copy.write_text(text.replace(exec_start, str(BIN / "gossipreg")))
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "gossipreg.service" not in out.stderr, out.stderr


# ---------------------------------------------------------------- Kubernetes


K8S = (DEPLOY / "k8s" / "gossipreg.yaml").read_text()


def test_the_kubernetes_recipe_joins_through_a_headless_service_and_probes_health_and_readiness() -> None:
    uid = [args for w, args in FINAL if w == "USER"][-1].split(":")[0]
    if HAVE_YAML:
        service, stateful = load_yaml(DEPLOY / "k8s" / "gossipreg.yaml")
        assert service["kind"] == "Service"
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert stateful["kind"] == "StatefulSet"
        assert stateful["spec"]["serviceName"] == service["metadata"]["name"]
        assert stateful["spec"]["podManagementPolicy"] == "Parallel"
        pod = stateful["spec"]["template"]["spec"]
        assert str(pod["securityContext"]["runAsUser"]) == uid
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["GOSSIPREG_SEEDS"].startswith(service["metadata"]["name"] + ".")
        assert env["GOSSIPREG_RETRY_JOIN"] == "1"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
        values = {k: v.replace("$(POD_NAMESPACE)", "default") for k, v in env.items()
                  if v is not None and k.startswith("GOSSIPREG_")}
        load_environment(values)
    else:  # no PyYAML: the same facts, read as text
        assert "kind: Service\n" in K8S
        assert "kind: StatefulSet\n" in K8S
        assert "clusterIP: None\n" in K8S
        assert "publishNotReadyAddresses: true\n" in K8S
        assert "serviceName: gossipreg\n" in K8S
        assert "podManagementPolicy: Parallel\n" in K8S
        assert f"runAsUser: {uid}\n" in K8S
        assert re.search(r"- name: GOSSIPREG_SEEDS\n\s+value: gossipreg\.\$\(POD_NAMESPACE\)\.svc", K8S)
        assert re.search(r'- name: GOSSIPREG_RETRY_JOIN\n\s+value: "1"\n', K8S)
        assert re.search(r"livenessProbe:\n\s+httpGet:\n\s+path: /v1/health\n", K8S)
        assert re.search(r"readinessProbe:\n\s+httpGet:\n\s+path: /v1/ready\n", K8S)
        assert "\t" not in K8S
        load_environment({"GOSSIPREG_SEEDS": "gossipreg.default.svc.cluster.local",
                          "GOSSIPREG_RETRY_JOIN": "1",
                          "GOSSIPREG_KEYRING_FILE": "/etc/gossipreg/keyring/keyring"})
    assert "secretName: gossipreg-keyring" in K8S
