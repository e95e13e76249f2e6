"""The agent's /v1 API over real HTTP on 127.0.0.1, against a running member."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from gossipreg.agent.keyring import fingerprint
from gossipreg.default import load_keyring_file

from .helpers import (
    KEY1,
    KEY1_B64,
    KEY2,
    KEY2_B64,
    LineStream,
    request,
    service,
    start_agent,
    visible,
    wait_until,
    write_keyring,
)

GREETER = {
    "name": "greeter",
    "version": "1.0.0",
    "metadata": {"team": "core"},
    "endpoints": None,
    "nodes": [{"id": "greeter-1", "address": "10.0.0.1:8080", "metadata": {"zone": "a"}}],
}


async def test_register_list_get_deregister() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            port = agent.http_port
            assert port is not None

            reply = await request(
                port, "PUT", "/v1/services", json_body=GREETER, token=agent.prepared.http_token
            )
            assert reply.status == 200, reply.body
            assert reply.json()["registered"] == {
                "name": "greeter",
                "version": "1.0.0",
                "nodes": ["greeter-1"],
            }

            listed = (await request(port, "GET", "/v1/services")).json()["services"]
            assert [(s["name"], s["version"], s["nodes"]) for s in listed] == [("greeter", "1.0.0", [])]

            got = (await request(port, "GET", "/v1/services/greeter")).json()["services"]
            assert got[0]["metadata"] == {"team": "core"}
            assert got[0]["nodes"] == [
                {"id": "greeter-1", "address": "10.0.0.1:8080", "metadata": {"zone": "a"}}
            ]

            reply = await request(
                port, "DELETE", "/v1/services", json_body=GREETER, token=agent.prepared.http_token
            )
            assert reply.status == 200
            missing = await request(port, "GET", "/v1/services/greeter")
            assert missing.status == 404
            assert missing.json() == {"error": "service 'greeter' not found"}
            agent.stop()


async def test_a_ttl_registration_expires_unless_renewed() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            port = agent.http_port
            assert port is not None
            reply = await request(
                port, "PUT", "/v1/services?ttl=0.3", json_body=GREETER, token=agent.prepared.http_token
            )
            assert reply.json()["ttl"] == 0.3
            svc = service("greeter", "greeter-1")
            assert visible(agent.registry, svc)
            await wait_until(lambda: not visible(agent.registry, svc), "the registration to expire")
            agent.stop()


async def test_members_and_health() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            first = await start_agent(nursery, name="a0")
            host, gport = first.registry.address
            second = await start_agent(nursery, name="a1", join=(f"{host}:{gport}",))
            assert second.http_port is not None
            await wait_until(lambda: len(second.registry.members()) == 2, "two members")
            answer = (await request(second.http_port, "GET", "/v1/members")).json()
            assert answer["member"] == "a1"
            assert {m["name"]: m["state"] for m in answer["members"]} == {"a0": "alive", "a1": "alive"}
            a0 = next(m for m in answer["members"] if m["name"] == "a0")
            assert a0["address"] == f"{host}:{gport}"
            health = (await request(second.http_port, "GET", "/v1/health")).json()
            assert health["status"] == "ok"
            assert health["member"] == "a1"
            assert health["members"]["alive"] == 2
            assert (health["state"], health["ready"]) == ("joined", True)
            ready = await request(second.http_port, "GET", "/v1/ready")
            assert ready.status == 200
            assert ready.json() | {"silent_for": 0} == {
                "ready": True, "state": "joined", "member": "a1", "members": 1, "seeds": 1,
                "silent_for": 0, "awareness": 0,
            }
            second.stop()
            first.stop()


async def test_ready_is_503_while_alone_with_seeds_and_health_stays_200() -> None:
    with trio.fail_after(30), socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # a seed address nothing answers on
        seed = f"127.0.0.1:{held.getsockname()[1]}"
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, name="lone", join=(seed,), retry_join=True, join_timeout=0.5,
                                      http="0.0.0.0:0", http_token="s3cret-token")
            port = agent.http_port
            assert port is not None
            # Both probes are open off loopback, without a token (kubelet sends none).
            ready = await request(port, "GET", "/v1/ready", host="10.1.2.3")
            assert ready.status == 503
            body = ready.json()
            assert (body["ready"], body["state"], body["seeds"]) == (False, "alone", 1)
            assert body["reason"] == "alone: no seed has answered yet"
            health = await request(port, "GET", "/v1/health", host="10.1.2.3")
            assert (health.status, health.json()["state"], health.json()["ready"]) == (200, "alone", False)
            agent.stop()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        (
            "PUT",
            "/v1/services",
            {"body": b"{not json", "headers": [("Content-Type", "application/json")]},
            400,
            "not valid JSON",
        ),
        (
            "PUT",
            "/v1/services",
            {"body": b"{}", "headers": [("Content-Type", "text/plain")]},
            415,
            "Content-Type",
        ),
        ("PUT", "/v1/services", {"body": b"{}"}, 415, "application/json"),
        ("PUT", "/v1/services", {"json_body": {"name": "x", "nodes": []}}, 400, "service.nodes"),
        (
            "PUT",
            "/v1/services",
            {"json_body": {"name": "x", "nodes": [{"id": "n", "port": 70000}]}},
            400,
            "service.nodes[0].port",
        ),
        ("PUT", "/v1/services", {"json_body": [1, 2]}, 400, "invalid service"),
        ("PUT", "/v1/services?ttl=abc", {"json_body": GREETER}, 400, "ttl"),
        ("PUT", "/v1/services?ttl=-1", {"json_body": GREETER}, 400, "ttl"),
        (
            "PUT",
            "/v1/services",
            {"body": b"", "headers": [("Content-Type", "application/json")]},
            400,
            "empty",
        ),
        ("DELETE", "/v1/services", {"json_body": {"version": "1"}}, 400, "service.name"),
        ("GET", "/v1/services/nope", {}, 404, "not found"),
        ("GET", "/v1/nothing", {}, 404, "no such endpoint"),
        ("GET", "/", {}, 404, "no such endpoint"),
        ("POST", "/v1/services", {"json_body": GREETER}, 405, "not allowed"),
        ("GET", "/v1/watch?snapshot=maybe", {}, 400, "snapshot"),
        ("POST", "/v1/keyring/install", {"json_body": {"key": KEY2_B64}}, 409, "insecure"),
        ("POST", "/v1/keyring/rotate", {"json_body": {"key": KEY2_B64}}, 404, "no such endpoint"),
    ],
)
async def test_bad_requests_get_4xx_json_naming_the_problem(
    method: str, path: str, kwargs: dict[str, object], status: int, needle: str
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            assert agent.http_port is not None
            reply = await request(
                agent.http_port,
                method,
                path,
                token=agent.prepared.http_token,
                **kwargs,  # type: ignore[arg-type]
            )
            assert reply.status == status, reply.body
            assert reply.headers["content-type"] == "application/json"
            assert needle in reply.json()["error"]
            if status == 405:
                assert reply.headers["allow"] == "DELETE, GET, PUT"
            agent.stop()


async def test_on_loopback_reads_are_open_and_everything_else_needs_the_token() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, http_token="s3cret-token")
            port = agent.http_port
            assert port is not None
            for path in ("/v1/services", "/v1/members", "/v1/metrics", "/v1/health"):
                assert (await request(port, "GET", path)).status == 200, path
            missing = await request(port, "PUT", "/v1/services", json_body=GREETER)
            assert missing.status == 401
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert "missing token" in missing.json()["error"]
            assert agent.registry.list_services() == []
            assert (await request(port, "GET", "/v1/keyring")).status == 401
            # Any method but GET needs the token, even where it would be a 405.
            assert (await request(port, "POST", "/v1/services", json_body=GREETER)).status == 401
            wrong = await request(port, "PUT", "/v1/services", json_body=GREETER, token="wrong")
            assert wrong.status == 401
            assert wrong.json() == {"error": "invalid token"}
            # A token sent with a read is checked too.
            assert (await request(port, "GET", "/v1/services", token="wrong")).status == 401
            basic = await request(port, "GET", "/v1/members", headers=[("Authorization", "Basic abc")])
            assert basic.status == 401
            assert "malformed" in basic.json()["error"]
            done = await request(port, "PUT", "/v1/services", json_body=GREETER, token="s3cret-token")
            assert done.status == 200
            # With a valid token the Host check is off: the token is the protection.
            assert (
                await request(port, "GET", "/v1/keyring", host="gossip.example", token="s3cret-token")
            ).status == 200
            watch = await LineStream.open(port, "/v1/watch?snapshot=1")
            assert watch.status == 200
            assert (await watch.line())["service"]["name"] == "greeter"
            await watch.aclose()
            agent.stop()


async def test_off_loopback_every_route_but_health_needs_the_token() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, http="0.0.0.0:0", http_token="s3cret-token")
            port = agent.http_port
            assert port is not None
            for path in ("/v1/services", "/v1/members", "/v1/metrics", "/v1/keyring", "/v1/nothing"):
                reply = await request(port, "GET", path, host=f"10.1.2.3:{port}")
                assert reply.status == 401, path
                assert "missing token" in reply.json()["error"]
            watch = await LineStream.open(port, "/v1/watch")
            assert watch.status == 401
            await watch.aclose()
            # No Host check without a loopback address: a load balancer may ask for health.
            assert (await request(port, "GET", "/v1/health", host="10.1.2.3")).status == 200
            assert (
                await request(port, "GET", "/v1/services", host="10.1.2.3", token="s3cret-token")
            ).status == 200
            agent.stop()


async def test_without_a_token_only_loopback_host_names_are_answered() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            port = agent.http_port
            assert port is not None
            rebound = await request(port, "GET", "/v1/services", host=f"attacker.example:{port}")
            assert rebound.status == 403
            assert "loopback" in rebound.json()["error"]
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
                assert (await request(port, "GET", "/v1/services", host=host)).status == 200, host
            agent.stop()


async def test_watch_streams_json_lines_with_a_snapshot_first() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            port = agent.http_port
            assert port is not None
            reg = agent.registry
            await reg.register(service("greeter", "g1"))
            await reg.register(service("other", "o1"))
            watch = await LineStream.open(port, "/v1/watch?service=greeter&snapshot=1")
            assert watch.status == 200
            assert watch.headers["transfer-encoding"] == "chunked"
            assert watch.headers["content-type"] == "application/x-ndjson"
            first = await watch.line()
            assert first["action"] == "create"
            assert first["service"]["name"] == "greeter"
            assert [n["id"] for n in first["service"]["nodes"]] == ["g1"]

            await reg.register(service("other", "o2"))  # filtered out
            await reg.register(service("greeter", "g2"))
            second = await watch.line()
            assert (second["action"], [n["id"] for n in second["service"]["nodes"]]) == ("create", ["g2"])
            await reg.deregister(service("greeter", "g1"))
            third = await watch.line()
            assert (third["action"], [n["id"] for n in third["service"]["nodes"]]) == ("delete", ["g1"])

            # The client goes away: the server notices and drops its watcher.
            await watch.aclose()
            await wait_until(lambda: not reg._watchers, "the watcher to be dropped")
            agent.stop()


async def test_watch_of_everything_without_a_snapshot_sees_only_new_changes() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            port = agent.http_port
            assert port is not None
            await agent.registry.register(service("before", "b1"))
            watch = await LineStream.open(port, "/v1/watch")
            reply = await request(
                port, "PUT", "/v1/services", json_body=GREETER, token=agent.prepared.http_token
            )
            assert reply.status == 200
            line = await watch.line()
            assert (line["action"], line["service"]["name"]) == ("create", "greeter")
            await watch.aclose()
            agent.stop()


async def test_the_watch_ends_when_the_agent_stops() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery)
            assert agent.http_port is not None
            watch = await LineStream.open(agent.http_port, "/v1/watch")
            agent.stop()
            try:
                assert await watch.line() is None  # a clean end of the chunked answer
            finally:
                await watch.aclose()




async def test_keyring_rotation_through_the_api_persists_to_the_keyring_file(tmp_path: Path) -> None:
    ring_file = write_keyring(tmp_path / "keyring", KEY1)
    fp1, fp2 = fingerprint(KEY1), fingerprint(KEY2)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, keyring_file=ring_file)
            port = agent.http_port
            assert port is not None
            listing = (await request(port, "GET", "/v1/keyring", token=agent.prepared.http_token)).json()
            assert listing["keys"] == [{"fingerprint": fp1, "primary": True}]
            assert KEY1_B64 not in str(listing)

            early = await request(
                port, "POST", "/v1/keyring/use", json_body={"key": KEY2_B64}, token=agent.prepared.http_token
            )
            assert early.status == 409
            assert "not installed" in early.json()["error"]

            done = (
                await request(
                    port,
                    "POST",
                    "/v1/keyring/install",
                    json_body={"key": KEY2_B64},
                    token=agent.prepared.http_token,
                )
            ).json()
            assert (done["op"], done["fingerprint"], done["changed"]) == ("install", fp2, True)
            assert done["primary"] == fp1
            assert load_keyring_file(ring_file).keys == (KEY1, KEY2)
            again = (
                await request(
                    port,
                    "POST",
                    "/v1/keyring/install",
                    json_body={"key": KEY2_B64},
                    token=agent.prepared.http_token,
                )
            ).json()
            assert again["changed"] is False

            (
                await request(
                    port,
                    "POST",
                    "/v1/keyring/use",
                    json_body={"key": KEY2_B64},
                    token=agent.prepared.http_token,
                )
            ).json()
            assert agent.registry._core.keyring is not None
            assert agent.registry._core.keyring.primary == KEY2
            assert load_keyring_file(ring_file).keys == (KEY2, KEY1)

            primary = await request(
                port,
                "POST",
                "/v1/keyring/remove",
                json_body={"key": KEY2_B64},
                token=agent.prepared.http_token,
            )
            assert primary.status == 409
            assert "primary" in primary.json()["error"]
            removed = (
                await request(
                    port,
                    "POST",
                    "/v1/keyring/remove",
                    json_body={"key": KEY1_B64},
                    token=agent.prepared.http_token,
                )
            ).json()
            assert removed["keys"] == [{"fingerprint": fp2, "primary": True}]
            assert load_keyring_file(ring_file).keys == (KEY2,)
            assert oct(ring_file.stat().st_mode & 0o777) == oct((tmp_path / "keyring").stat().st_mode & 0o777)
            agent.stop()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"key": "not base64!"}, "not valid base64"),
        ({"key": "c2hvcnQ="}, "5 bytes"),
        ({"key": 42}, "base64 string"),
        ({"secret": KEY2_B64}, '{"key"'),
        ([KEY2_B64], '{"key"'),
    ],
)
async def test_bad_keys_are_refused_with_400(tmp_path: Path, body: object, needle: str) -> None:
    ring_file = write_keyring(tmp_path / "keyring", KEY1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, keyring_file=ring_file)
            assert agent.http_port is not None
            reply = await request(
                agent.http_port,
                "POST",
                "/v1/keyring/install",
                json_body=body,
                token=agent.prepared.http_token,
            )
            assert reply.status == 400
            assert needle in reply.json()["error"]
            assert agent.registry._core.keyring is not None
            assert agent.registry._core.keyring.keys == (KEY1,)
            agent.stop()


async def test_an_unwritable_keyring_file_changes_nothing(tmp_path: Path) -> None:
    ring_file = write_keyring(tmp_path / "keyring", KEY1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent = await start_agent(nursery, keyring_file=ring_file)
            assert agent.http_port is not None
            # A non-empty directory where the file was: nothing can be renamed over it (even as root).
            ring_file.unlink()
            ring_file.mkdir()
            (ring_file / "occupied").write_text("")
            reply = await request(
                agent.http_port,
                "POST",
                "/v1/keyring/install",
                json_body={"key": KEY2_B64},
                token=agent.prepared.http_token,
            )
            assert reply.status == 500
            assert "nothing changed" in reply.json()["error"]
            assert agent.registry._core.keyring is not None
            assert agent.registry._core.keyring.keys == (KEY1,)
            agent.stop()
