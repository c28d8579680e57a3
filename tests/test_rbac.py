"""Worker-manager RBAC and middleware (iii §1.3, §2.3–§2.8, §3.2): a real engine process with a plain
listener and an RBAC listener, an authority worker on the plain one, callers on the RBAC one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from iii import InitOptions, register_worker
from iii import InvocationError as IIIInvocationError
from iii_helpers.observability.reconnection import ReconnectionConfig

from teamster.engine.config import ConfigError
from teamster.engine.engine import Engine
from teamster.engine.modules.worker_manager import WorkerManager
from teamster.engine.rbac import FunctionFilter
from teamster.sdk import InvocationError, Void, Worker
from tests.conftest import engine_config, eventually
from tests.engine_proc import EngineProcess
from tests.raw import RawPeer

pytestmark = pytest.mark.slow

CONFIG = """
workers:
  - name: iii-worker-manager
    config: {{port: 0}}
  - name: iii-worker-manager
    config:
      port: {port}
      middleware_function_id: rbac::middleware
      handshake_timeout_ms: 1000
      rbac:
        auth_function_id: rbac::auth
        on_function_registration_function_id: rbac::on-function
        on_trigger_registration_function_id: rbac::on-trigger
        on_trigger_type_registration_function_id: rbac::on-trigger-type
        expose_functions:
          - match("public::*")
          - match("engine::functions::list")
          - match("engine::functions::info")
          - match("engine::register_trigger")
          - metadata: {{exposed: true}}
"""

GRANTS: dict[str, Any] = {
    "admin": {
        "allowed_functions": ["private::granted"],
        "allow_trigger_type_registration": True,
        "context": {"user": "ada"},
    },
    "restricted": {
        "forbidden_functions": ["public::echo"],
        "allowed_trigger_types": ["tt::ok"],
        "context": {"user": "bob"},
    },
    "prefix": {"function_registration_prefix": "tenant", "allowed_functions": ["tenant::calc"], "context": {}},
    "scoped": {"namespaces": {"orders": ["svc::*"]}, "context": {"user": "sam"}},
    "none": None,
    "bad-shape": {"allowed_functions": "everything"},
}


@dataclass
class Listeners:
    plain: str
    rbac: str
    rbac_port: int


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    with socket.socket() as probe:  # a free port for the second listener; the first takes --ws-port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "engine.yaml"
    config.write_text(CONFIG.format(port=port))
    proc = EngineProcess(tmp_path / "data", storage="memory", extra=["--config", str(config)]).start()
    yield Listeners(proc.ws_url, f"ws://127.0.0.1:{port}", port)
    proc.stop()


@dataclass
class Authority:
    """The trusted side on the plain listener: the auth function, the middleware, the hooks, the targets."""

    worker: Worker
    auth: list[Any] = field(default_factory=list)
    middleware: list[Any] = field(default_factory=list)
    hooks: dict[str, list[Any]] = field(default_factory=lambda: {"function": [], "trigger": [], "trigger_type": []})
    calls: dict[str, list[Any]] = field(default_factory=dict)

    async def ids(self) -> list[str]:
        listed = await self.worker.trigger("engine::functions::list", {"include_internal": True})
        return [row["function_id"] for row in listed["functions"]]

    async def bindings(self) -> dict[str, dict[str, Any]]:
        listed = await self.worker.trigger("engine::registered-triggers::list", {})
        return {row["id"]: row for row in listed["registered_triggers"]}

    async def trigger_types(self) -> list[str]:
        listed = await self.worker.trigger("engine::triggers::list", {})
        return [row["id"] for row in listed["triggers"]]


@pytest.fixture
async def authority(listeners: Listeners) -> AsyncIterator[Authority]:
    worker = Worker("authority", tracing=False)
    me = Authority(worker)

    @worker.function("rbac::auth")
    async def auth(data: Any) -> Any:
        me.auth.append(data)
        token = data["headers"].get("x-token") or data["query_params"].get("token", [None])[0]
        if token not in GRANTS:
            raise PermissionError("invalid token")
        return GRANTS[token]

    @worker.function("rbac::middleware")
    async def middleware(data: Any) -> Any:
        me.middleware.append(data)
        if data["payload"].get("deny"):
            raise PermissionError("denied by middleware")
        rewritten = {**data["payload"], "user": data["context"]["user"]}
        return await worker.trigger(data["function_id"], rewritten, namespace=data["namespace"])

    @worker.function("rbac::on-function")
    async def on_function(data: Any) -> Any:
        me.hooks["function"].append(data)
        if data["function_id"].startswith("denied::"):
            raise PermissionError("no")
        if data["function_id"].startswith("rename::"):
            return {"function_id": data["function_id"].replace("rename::", "renamed::")}
        return {}

    @worker.function("rbac::on-trigger-type")
    async def on_trigger_type(data: Any) -> Any:
        me.hooks["trigger_type"].append(data)
        if data["trigger_type_id"].startswith("denied-tt::"):
            raise PermissionError("no")
        return {}

    @worker.function("rbac::on-trigger")
    async def on_trigger(data: Any) -> Any:
        me.hooks["trigger"].append(data)
        if data["function_id"].startswith("denied-trig::"):
            raise PermissionError("no")
        return {}

    for function_id, metadata in (
        ("public::echo", None),
        ("public::other", None),
        ("private::secret", None),
        ("private::granted", None),
        ("meta::tagged", {"exposed": True}),
        ("engine::custom", {"exposed": True}),
    ):
        worker.register_function(function_id, _recording(me, function_id), metadata=metadata)
    async with worker.connect(listeners.plain, wait=5):
        await eventually(lambda: _has(me, "engine::custom"))
        yield me


def _recording(me: Authority, function_id: str) -> Any:
    calls = me.calls.setdefault(function_id, [])

    async def handler(data: Any) -> Any:
        calls.append(data)
        return {"echo": data}

    return handler


async def _has(me: Authority, function_id: str) -> bool:
    return function_id in await me.ids()


def as_(listeners: Listeners, token: str) -> str:
    """The RBAC listener's URL for a caller holding `token` (sent as a query parameter)."""
    return f"{listeners.rbac}/?token={token}"


def forbidden(
    function_id: str, namespace: str = "default", fix: str = "add to rbac.expose_functions"
) -> dict[str, str]:
    return {"code": "FORBIDDEN", "message": f"function '{function_id}' not allowed in namespace '{namespace}' ({fix})"}


# ---- the handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "message"),
    [
        ("/", {"X-Token": "stolen"}, "invalid token"),
        ("/", {}, "invalid token"),
        ("/?token=none", {}, "auth function returned no result"),
        ("/?token=bad-shape", {}, "auth function result: allowed_functions: Input should be a valid list"),
        ("/otel", {}, "invalid token"),
    ],
)
async def test_a_refused_worker_gets_one_error_frame_then_a_close(
    listeners: Listeners, authority: Authority, path: str, headers: dict[str, str], message: str
) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(listeners.rbac + path, headers=headers) as ws:
        first = await ws.receive(timeout=5)
        second = await ws.receive(timeout=5)
    assert first.type is aiohttp.WSMsgType.TEXT
    assert orjson.loads(first.data) == {"type": "error", "error": {"code": "AUTH_ERROR", "message": message}}
    assert (second.type, second.data) == (aiohttp.WSMsgType.CLOSE, 1008)
    # Nothing was registered for it: the authority is still the only worker.
    listed = await authority.worker.trigger("engine::workers::list", {})
    assert [w["name"] for w in listed["workers"]] == ["authority"]


async def test_the_auth_function_sees_headers_query_and_ip(listeners: Listeners, authority: Authority) -> None:
    url = f"{listeners.rbac}/?token=admin&tag=a&tag=b&empty="
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers={"X-Team": "Blue"}) as ws:
        hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "workerregistered"
    [request] = authority.auth
    assert set(request) == {"headers", "query_params", "ip_address"}
    assert request["query_params"] == {"token": ["admin"], "tag": ["a", "b"], "empty": [""]}
    assert request["ip_address"] == "127.0.0.1"
    assert request["headers"]["x-team"] == "Blue"  # names lower-cased, values as sent
    assert request["headers"]["host"] == f"127.0.0.1:{listeners.rbac_port}"
    assert all(name == name.lower() for name in request["headers"])


async def test_the_plain_listener_is_untouched(listeners: Listeners, authority: Authority) -> None:
    async with RawPeer(listeners.plain) as peer:
        await peer.name("plain")
        await peer.send({"type": "registerfunction", "id": "denied::plain"})
        reply = await peer.call("private::secret", {"n": 1})
        assert reply["result"] == {"echo": {"n": 1, "_caller_worker_id": peer.worker_id}}
        await eventually(lambda: _has(authority, "denied::plain"))
    assert authority.auth == []
    assert authority.middleware == []
    assert authority.hooks == {"function": [], "trigger": [], "trigger_type": []}


async def test_a_socket_that_never_finishes_its_upgrade_is_closed(listeners: Listeners) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listeners.rbac_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the header block never ends
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # handshake_timeout_ms: 1000
    writer.close()


# ---- calls ------------------------------------------------------------------------------------


async def test_calls_are_forbidden_unless_exposed_granted_or_infrastructure(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "admin")) as peer:
        await peer.name("caller")
        reply = await peer.call("private::secret", {"n": 1}, invocation_id="c1")
        assert reply == {
            "type": "invocationresult",
            "invocation_id": "c1",
            "function_id": "private::secret",
            "error": forbidden("private::secret"),
        }
        # A rule with no namespace exposes in `default` only.
        reply = await peer.call("public::echo", {}, invocation_id="c2", namespace="orders")
        assert reply["error"] == forbidden("public::echo", "orders")
        # Built-ins need exposing too, except the infrastructure ids.
        assert (await peer.call("engine::workers::list", {}))["error"] == forbidden("engine::workers::list")
        assert "result" in await peer.call("engine::channels::create", {})
        # Granted by the auth function, exposed by a pattern, exposed by metadata.
        for function_id in ("private::granted", "public::other", "meta::tagged"):
            reply = await peer.call(function_id, {"n": 2})
            assert reply["result"] == {"echo": {"n": 2, "user": "ada", "_caller_worker_id": authority.worker.worker_id}}
    assert authority.calls["private::secret"] == []

    restricted = Worker("restricted", tracing=False)
    async with restricted.connect(listeners.rbac, wait=5, headers={"x-token": "restricted"}):
        with pytest.raises(InvocationError) as caught:
            await restricted.trigger("public::echo", {})
        assert (caught.value.code, caught.value.message) == (
            "FORBIDDEN",
            "function 'public::echo' not allowed in namespace 'default' (remove from rbac.forbidden_functions)",
        )
        assert await restricted.trigger("public::other", {"n": 3}) == {
            "echo": {"n": 3, "user": "bob", "_caller_worker_id": authority.worker.worker_id}
        }
    assert authority.calls["public::echo"] == []


async def test_a_forbidden_void_call_never_reaches_the_middleware(listeners: Listeners, authority: Authority) -> None:
    caller = Worker("void-caller", tracing=False)
    async with caller.connect(listeners.rbac, wait=5, headers={"x-token": "admin"}):
        assert await caller.trigger("private::secret", {}, action=Void()) is None
        assert await caller.trigger("public::other", {"n": 1}) == {
            "echo": {"n": 1, "user": "ada", "_caller_worker_id": authority.worker.worker_id}
        }
    assert [m["function_id"] for m in authority.middleware] == ["public::other"]
    assert authority.calls["private::secret"] == []


async def test_the_middleware_sees_every_call_and_can_rewrite_or_deny_it(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "admin")) as peer:
        await peer.name("caller")
        reply = await peer.call("public::echo", {"n": 1}, invocation_id="m1")
        assert reply == {
            "type": "invocationresult",
            "invocation_id": "m1",
            "function_id": "public::echo",
            "result": {"echo": {"n": 1, "user": "ada", "_caller_worker_id": authority.worker.worker_id}},
        }
        reply = await peer.call("public::echo", {"deny": True}, invocation_id="m2")
        assert reply["error"]["code"] == "invocation_failed"
        assert reply["error"]["message"] == "denied by middleware"
        await peer.send(
            {"type": "invokefunction", "function_id": "public::echo", "data": {"n": 3}, "action": {"type": "void"}}
        )
        await eventually(lambda: len(authority.calls["public::echo"]) == 2)
        # The void call got no reply: the next result on the socket is the next call's.
        assert (await peer.call("public::other", {}, invocation_id="m4"))["invocation_id"] == "m4"
    assert authority.middleware[:3] == [
        {
            "function_id": "public::echo",
            "payload": {"n": 1},
            "action": None,
            "context": {"user": "ada"},
            "namespace": "default",
        },
        {
            "function_id": "public::echo",
            "payload": {"deny": True},
            "action": None,
            "context": {"user": "ada"},
            "namespace": "default",
        },
        {
            "function_id": "public::echo",
            "payload": {"n": 3},
            "action": {"type": "void"},
            "context": {"user": "ada"},
            "namespace": "default",
        },
    ]
    assert [c["n"] for c in authority.calls["public::echo"]] == [1, 3]  # the denied call never reached it


async def test_engine_builtins_skip_the_middleware_but_a_worker_owned_engine_id_does_not(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "admin")) as peer:
        await peer.name("caller")
        listed = await peer.call("engine::functions::list", {"prefix": "public::"})
        assert [row["function_id"] for row in listed["result"]["functions"]] == ["public::echo", "public::other"]
        reply = await peer.call("engine::workers::register", {"name": "caller"})
        assert reply["result"] == {"success": True}
        reply = await peer.call("engine::custom", {"n": 1})
        assert reply["result"] == {"echo": {"n": 1, "user": "ada", "_caller_worker_id": authority.worker.worker_id}}
    assert [m["function_id"] for m in authority.middleware] == ["engine::custom"]


async def test_a_scoped_session_declares_and_calls_only_in_its_namespaces(
    listeners: Listeners, authority: Authority
) -> None:
    # The middleware is looked up in the namespace the call addresses, so `orders` has its own.
    orders = Worker("orders-svc", namespace="orders", tracing=False)

    @orders.function("rbac::middleware")
    async def middleware(data: Any) -> Any:
        authority.middleware.append(data)
        return await orders.trigger(data["function_id"], {**data["payload"], "user": data["context"]["user"]})

    orders.register_function("svc::get", lambda data: {"got": data})
    async with orders.connect(listeners.plain, wait=5), RawPeer(as_(listeners, "scoped")) as peer:
        reply = await peer.call("engine::workers::register", {"name": "scoped", "namespace": "billing"})
        assert reply["error"] == {
            "code": "FORBIDDEN",
            "message": "namespace 'billing' not allowed for this session (permitted: orders)",
        }
        reply = await peer.call("engine::workers::register", {"name": "scoped", "namespace": "orders"})
        assert reply["result"] == {"success": True}
        await eventually(lambda: _has(authority, "svc::get"))
        reply = await peer.call("svc::get", {"n": 1}, namespace="orders")
        assert reply["result"] == {"got": {"n": 1, "user": "sam", "_caller_worker_id": orders.worker_id}}
        assert (await peer.call("svc::get", {}))["error"] == forbidden("svc::get")
    assert authority.middleware == [
        {
            "function_id": "svc::get",
            "payload": {"n": 1},
            "action": None,
            "context": {"user": "sam"},
            "namespace": "orders",
        }
    ]


# ---- introspection and durable bindings -------------------------------------------------------


async def test_a_session_lists_and_describes_only_the_functions_it_may_call(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "restricted")) as peer:
        await peer.name("viewer")
        listed = await peer.call("engine::functions::list", {})
        # public::echo is forbidden by name, private::* is neither granted nor exposed, rbac::* is not exposed.
        assert [row["function_id"] for row in listed["result"]["functions"]] == ["meta::tagged", "public::other"]
        listed = await peer.call("engine::functions::list", {"include_internal": True, "prefix": "engine::"})
        assert [row["function_id"] for row in listed["result"]["functions"]] == [
            "engine::channels::create",  # the infrastructure ids are always callable, so always listed
            "engine::custom",  # exposed by its metadata
            "engine::functions::info",
            "engine::functions::list",
            "engine::log::debug",
            "engine::log::error",
            "engine::log::info",
            "engine::log::trace",
            "engine::log::warn",
            "engine::register_trigger",
            "engine::workers::register",
        ]

        reply = await peer.call("engine::functions::info", {"function_id": "public::other"})
        assert reply["result"]["function_id"] == "public::other"
        for hidden in ("public::echo", "private::secret"):
            reply = await peer.call("engine::functions::info", {"function_id": hidden}, invocation_id="i1")
            assert reply == {
                "type": "invocationresult",
                "invocation_id": "i1",
                "function_id": "engine::functions::info",
                "error": {"code": "FORBIDDEN", "message": f"Function '{hidden}' is not visible to this session."},
            }
        reply = await peer.call("engine::functions::info", {"function_id": "nope::missing"})
        assert reply["error"] == {
            "code": "function_not_found",
            "message": "Function nope::missing not found in namespace default",
        }
        # A batch leaves hidden ids out, as it leaves out unknown ones.
        batch = ["public::echo", "public::other", "nope::missing", "meta::tagged", "private::secret"]
        reply = await peer.call("engine::functions::info", {"function_ids": batch})
        assert [row["function_id"] for row in reply["result"]["functions"]] == ["public::other", "meta::tagged"]

    async with RawPeer(as_(listeners, "admin")) as peer:  # a grant shows what it grants
        await peer.name("admin-viewer")
        listed = await peer.call("engine::functions::list", {"prefix": "private::"})
        assert [row["function_id"] for row in listed["result"]["functions"]] == ["private::granted"]
        reply = await peer.call("engine::functions::info", {"function_id": "private::granted"})
        assert reply["result"]["function_id"] == "private::granted"


async def test_a_namespace_grant_shows_the_function_in_that_namespace_only(
    listeners: Listeners, authority: Authority
) -> None:
    orders = Worker("orders-svc", namespace="orders", tracing=False)
    orders.register_function("svc::get", lambda data: data)
    elsewhere = Worker("default-svc", tracing=False)  # the same id in `default`, which the grant does not cover
    elsewhere.register_function("svc::get", lambda data: data)
    async with (
        orders.connect(listeners.plain, wait=5),
        elsewhere.connect(listeners.plain, wait=5),
        RawPeer(as_(listeners, "scoped")) as peer,
    ):
        await eventually(lambda: _count(authority, "svc::get", 2))
        listed = await peer.call("engine::functions::list", {})
        assert [(r["function_id"], r["namespace"]) for r in listed["result"]["functions"]] == [
            ("meta::tagged", "default"),  # the listener's expose_functions hold for every session
            ("public::echo", "default"),
            ("public::other", "default"),
            ("svc::get", "orders"),
        ]
        reply = await peer.call("engine::functions::info", {"function_id": "svc::get", "namespace": "orders"})
        assert (reply["result"]["function_id"], reply["result"]["namespace"]) == ("svc::get", "orders")
        reply = await peer.call("engine::functions::info", {"function_id": "svc::get"})
        assert reply["error"] == {"code": "FORBIDDEN", "message": "Function 'svc::get' is not visible to this session."}


async def _count(me: Authority, function_id: str, expected: int) -> bool:
    return (await me.ids()).count(function_id) == expected


async def test_a_plain_listener_worker_still_sees_every_function(listeners: Listeners, authority: Authority) -> None:
    async with RawPeer(listeners.plain) as peer:
        await peer.name("plain-viewer")
        listed = await peer.call("engine::functions::list", {"prefix": "private::"})
        assert [row["function_id"] for row in listed["result"]["functions"]] == ["private::granted", "private::secret"]
        reply = await peer.call("engine::functions::info", {"function_ids": ["private::secret", "rbac::auth"]})
        assert [row["function_id"] for row in reply["result"]["functions"]] == ["private::secret", "rbac::auth"]
    assert {"public::echo", "rbac::auth", "engine::workers::list"} <= set(await authority.ids())


async def test_a_session_binds_durably_only_allowed_types_to_targets_it_may_call(
    listeners: Listeners, authority: Authority
) -> None:
    def durable(trigger_type: str, function_id: str) -> dict[str, Any]:
        return {"trigger_type": trigger_type, "function_id": function_id, "config": {"k": 1}}

    async with RawPeer(as_(listeners, "restricted")) as peer:
        await peer.name("durable-binder")
        reply = await peer.call("engine::register_trigger", durable("tt::other", "public::other"))
        assert reply["error"] == {
            "code": "FORBIDDEN",
            "message": "Trigger type 'tt::other' is not allowed for this session.",
        }
        reply = await peer.call("engine::register_trigger", durable("tt::ok", "private::secret"))
        assert reply["error"] == forbidden("private::secret")
        assert await authority.bindings() == {}
        reply = await peer.call("engine::register_trigger", durable("tt::ok", "public::other"))
        allowed = reply["result"]["id"]
    async with RawPeer(as_(listeners, "prefix")) as peer:
        await peer.name("tenant-binder")
        reply = await peer.call("engine::register_trigger", durable("tt::any", "calc"))
        prefixed = reply["result"]["id"]
    bindings = await authority.bindings()
    assert set(bindings) == {allowed, prefixed}  # durable: they outlive the sessions that made them
    assert (bindings[allowed]["trigger_type"], bindings[allowed]["function_id"]) == ("tt::ok", "public::other")
    assert (bindings[prefixed]["trigger_type"], bindings[prefixed]["function_id"]) == ("tt::any", "tenant::calc")


# ---- registrations ----------------------------------------------------------------------------


async def test_the_function_hook_renames_or_refuses_silently(listeners: Listeners, authority: Authority) -> None:
    async with RawPeer(as_(listeners, "admin")) as peer:
        await peer.name("provider")
        await peer.send({"type": "registerfunction", "id": "rename::calc", "description": "Add one"})
        await peer.send({"type": "registerfunction", "id": "denied::calc"})
        await peer.send({"type": "registerfunction", "id": "public::later"})
        await eventually(lambda: _has(authority, "public::later"))  # applied in order: the others are decided
        assert "renamed::calc" in await authority.ids()
        assert {"rename::calc", "denied::calc"}.isdisjoint(await authority.ids())

        call = asyncio.ensure_future(authority.worker.trigger("renamed::calc", {"x": 1}))
        frame = await peer.recv()  # the next frame: no registrationrejected came before it
        assert (frame["type"], frame["function_id"]) == ("invokefunction", "rename::calc")
        assert frame["data"] == {"x": 1, "_caller_worker_id": authority.worker.worker_id}
        await peer.send({"type": "invocationresult", "invocation_id": frame["invocation_id"], "result": 2})
        assert await call == 2

        await peer.send({"type": "unregisterfunction", "id": "rename::calc"})
        await eventually(lambda: _gone(authority, "renamed::calc"))
    assert authority.hooks["function"] == [
        {
            "function_id": "rename::calc",
            "description": "Add one",
            "metadata": None,
            "namespace": "default",
            "context": {"user": "ada"},
        },
        {
            "function_id": "denied::calc",
            "description": None,
            "metadata": None,
            "namespace": "default",
            "context": {"user": "ada"},
        },
        {
            "function_id": "public::later",
            "description": None,
            "metadata": None,
            "namespace": "default",
            "context": {"user": "ada"},
        },
    ]


async def _gone(me: Authority, function_id: str) -> bool:
    return function_id not in await me.ids()


async def test_a_registration_prefix_files_functions_and_trigger_targets_under_it(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "prefix")) as peer:
        await peer.name("tenant-worker")
        await peer.send({"type": "registerfunction", "id": "calc"})
        await peer.send(
            {"type": "registertrigger", "id": "t1", "trigger_type": "tt::later", "function_id": "calc", "config": {}}
        )
        await eventually(lambda: _has(authority, "tenant::calc"))
        call = asyncio.ensure_future(authority.worker.trigger("tenant::calc", {}))
        frame = await peer.recv_type("invokefunction")
        assert frame["function_id"] == "calc"
        await peer.send({"type": "invocationresult", "invocation_id": frame["invocation_id"], "result": "ok"})
        assert await call == "ok"
        await eventually(lambda: _bound(authority, "t1"))
        assert (await authority.bindings())["t1"]["function_id"] == "tenant::calc"


async def _bound(me: Authority, binding_id: str) -> bool:
    return binding_id in await me.bindings()


async def test_trigger_type_registration_needs_the_grant_and_the_hook(
    listeners: Listeners, authority: Authority
) -> None:
    async with RawPeer(as_(listeners, "restricted")) as restricted, RawPeer(as_(listeners, "admin")) as admin:
        await restricted.name("restricted")
        await admin.name("admin")
        await restricted.send({"type": "registertriggertype", "id": "tt::restricted", "description": "no grant"})
        await admin.send({"type": "registertriggertype", "id": "denied-tt::x", "description": "hook says no"})
        await admin.send({"type": "registertriggertype", "id": "tt::admin", "description": "fine"})
        await eventually(lambda: _has_type(authority, "tt::admin"))
        # The restricted peer's frame came first; a later frame from it shows it has been handled.
        await restricted.send({"type": "registerfunction", "id": "public::marker"})
        await eventually(lambda: _has(authority, "public::marker"))
        assert {"tt::restricted", "denied-tt::x"}.isdisjoint(await authority.trigger_types())
    assert authority.hooks["trigger_type"] == [
        {"trigger_type_id": "denied-tt::x", "description": "hook says no", "context": {"user": "ada"}},
        {"trigger_type_id": "tt::admin", "description": "fine", "context": {"user": "ada"}},
    ]


async def _has_type(me: Authority, type_id: str) -> bool:
    return type_id in await me.trigger_types()


async def test_trigger_registration_checks_type_hook_and_target(listeners: Listeners, authority: Authority) -> None:
    async with RawPeer(as_(listeners, "restricted")) as peer:
        await peer.name("binder")

        def binding(binding_id: str, trigger_type: str, function_id: str) -> dict[str, Any]:
            return {
                "type": "registertrigger",
                "id": binding_id,
                "trigger_type": trigger_type,
                "function_id": function_id,
                "config": {"k": 1},
            }

        await peer.send(binding("t-type", "tt::other", "public::other"))  # type not granted: dropped
        await peer.send(binding("t-hook", "tt::ok", "denied-trig::fn"))  # hook refuses: dropped
        await peer.send(binding("t-target", "tt::ok", "private::secret"))  # target not exposed: FORBIDDEN
        refusal = await peer.recv_type("triggerregistrationresult")
        assert refusal == {
            "type": "triggerregistrationresult",
            "id": "t-target",
            "trigger_type": "tt::ok",
            "function_id": "private::secret",
            "error": forbidden("private::secret"),
        }
        await peer.send(binding("t-ok", "tt::ok", "public::other"))
        await eventually(lambda: _bound(authority, "t-ok"))
        assert {"t-type", "t-hook", "t-target"}.isdisjoint(await authority.bindings())
    context = {"user": "bob"}
    assert authority.hooks["trigger"] == [
        {
            "trigger_id": t,
            "trigger_type": "tt::ok",
            "function_id": f,
            "config": {"k": 1},
            "metadata": None,
            "namespace": "default",
            "context": context,
        }
        for t, f in (("t-hook", "denied-trig::fn"), ("t-target", "private::secret"), ("t-ok", "public::other"))
    ]


# ---- the official SDK -------------------------------------------------------------------------


async def test_the_official_iii_sdk_on_the_rbac_listener(listeners: Listeners, authority: Authority) -> None:
    options = InitOptions(
        worker_name="iii-rbac",
        headers={"x-token": "admin"},
        enable_metrics_reporting=False,
        otel={"enabled": False},
        invocation_timeout_ms=5000,
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500),
    )
    client = await asyncio.to_thread(register_worker, listeners.rbac, options)
    try:
        result = await client.trigger_async({"function_id": "public::echo", "payload": {"n": 1}})
        assert result == {"echo": {"n": 1, "user": "ada", "_caller_worker_id": authority.worker.worker_id}}
        with pytest.raises(IIIInvocationError) as caught:
            await client.trigger_async({"function_id": "private::secret", "payload": {}})
        assert caught.value.code == "FORBIDDEN"
        assert "rbac.expose_functions" in str(caught.value)

        client.register_function("rename::double", lambda data: {"doubled": data["x"] * 2})
        await eventually(lambda: _has(authority, "renamed::double"))
        assert await authority.worker.trigger("renamed::double", {"x": 21}) == {"doubled": 42}
    finally:
        await asyncio.to_thread(client.shutdown)
    assert authority.auth[0]["headers"]["x-token"] == "admin"
    assert authority.hooks["function"][0]["function_id"] == "rename::double"


# ---- configuration ----------------------------------------------------------------------------


async def test_each_worker_manager_entry_is_its_own_listener() -> None:
    config = engine_config()
    config.workers.append(config.workers[0].model_copy(deep=True))
    config.workers[-1].config["middleware_function_id"] = "mw::check"
    async with Engine(config) as running:
        plain, guarded = (m for m in running.modules if isinstance(m, WorkerManager))
        assert plain.port != guarded.port
        assert running.ports["ws"] == plain.port  # the first listener is the engine's worker URL
        async with RawPeer(f"ws://127.0.0.1:{guarded.port}") as peer:  # middleware only: no auth
            reply = await peer.call("public::none", {})
        assert reply["error"] == {
            "code": "function_not_found",
            "message": "Function mw::check not found in namespace default",
        }


@pytest.mark.parametrize(
    ("rbac", "problem"),
    [
        (
            {"expose_functions": ["svc::*"]},
            'rbac.expose_functions.0: Value error, expected match("pattern") or a mapping',
        ),
        (
            {"expose_functions": [{"match": "a", "metadata": {"k": 1}}]},
            "exactly one of 'match' or a non-empty 'metadata'",
        ),
        ({"expose_functions": [{"match": "a", "namesapce": "x"}]}, "rbac.expose_functions.0.namesapce: Extra inputs"),
        ({"auth_function": "x"}, "rbac.auth_function: Extra inputs are not permitted"),
    ],
)
async def test_a_bad_rbac_block_is_a_config_error(rbac: dict[str, Any], problem: str) -> None:
    engine = Engine(engine_config(iii_worker_manager={"rbac": rbac}))
    with pytest.raises(ConfigError) as caught:
        await engine.start()
    assert str(caught.value).startswith("worker iii-worker-manager: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "function_id", "namespace", "metadata", "expected"),
    [
        ('match("api::*::read")', "api::users::read", "default", None, True),
        ('match("api::*::read")', "api::users::write", "default", None, False),
        ("match('api::*')", "api::x", "orders", None, False),  # no namespace: `default` only
        ({"match": "svc::*", "namespace": "orders"}, "svc::get", "orders", None, True),
        ({"match": "svc::*", "namespace": "orders"}, "svc::get", "default", None, False),
        ({"metadata": {"public": True}}, "x", "default", {"public": True, "other": 1}, True),
        ({"metadata": {"public": True}}, "x", "default", {"public": 1}, False),  # JSON's true is not 1
        ({"metadata": {"public": True}}, "x", "default", None, False),
        ({"metadata": {"team": 'match("pay*")'}}, "x", "default", {"team": "payments"}, True),
        ({"metadata": {"team": 'match("pay*")'}}, "x", "default", {"team": 7}, False),
    ],
)
def test_expose_rules(rule: Any, function_id: str, namespace: str, metadata: Any, expected: bool) -> None:
    assert FunctionFilter.model_validate(rule).matches(function_id, namespace, metadata) is expected
