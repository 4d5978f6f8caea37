"""End-to-end: herald's Socket.IO endpoint (SPEC sections 4, 9.11) with Debian's
python-socketio client (python3-socketio 5.x over python3-engineio 4.x), the way a
Python worker or bot uses it: connect with auth.token (a JWT signed here with
hmac), call('subscribe', ...) for the ack, receive published events, disconnect.
Each transport on its own (websocket, polling) and the default polling ->
websocket upgrade; connect_error on a bad token and an unknown namespace; a
configured namespace; join events; /broadcast.

python-socketio needs python3-requests (polling) and python3-websocket
(websocket) beside python3-socketio; a missing one fails here by name."""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ServerCase, run, uniq, wait_until  # noqa: E402

try:
    import socketio
    import socketio.exceptions
    IMPORT_ERROR = None
except ImportError as e:   # reported by every test, not a crash of the runner
    socketio = None
    IMPORT_ERROR = e

SECRET = "herald-socketio-py-e2e-secret"
WAIT = 5.0


def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(sub, secret=SECRET, **claims):
    now = int(time.time())
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(dict({"sub": sub, "iat": now, "exp": now + 3600}, **claims)).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64u(sig))


class Recorder:
    """Every event a client receives (name, args), with a bounded wait."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def add(self, event, args):
        with self.cond:
            self.items.append((event, list(args)))
            self.cond.notify_all()

    def wait(self, event, pred=lambda *a: True, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, (ev, args) in enumerate(self.items):
                    if ev == event and pred(*args):
                        return self.items.pop(i)[1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %r event within %.1fs; received %r" % (event, timeout, self.items[-5:]))
                self.cond.wait(left)

    def count(self, event):
        with self.cond:
            return sum(1 for ev, _ in self.items if ev == event)


class SocketIOPython(ServerCase):
    CONFIG = {
        "auth": {"jwt": {"secret": SECRET}},
        "socketio": {"namespaces": ["/admin"], "connected_event": "connected",
                     "join_events": {"join-user-room": "user:{0}", "join-stream-room": "stream:{0}"},
                     "leave_events": {"leave-stream-room": "stream:{0}"}},
    }

    def setUp(self):
        super().setUp()
        if IMPORT_ERROR is not None:
            self.fail("python3-socketio and its transports are needed (apt: python3-socketio "
                      "python3-requests python3-websocket): %s" % IMPORT_ERROR)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:   # noqa: BLE001 - already gone
                pass
        super().tearDown()

    def client(self, events=(), namespace="/"):
        """A client recording the named events (any arguments) on namespace."""
        sio = socketio.Client(reconnection=False)
        rec = Recorder()
        sio.rec = rec
        for name in events:
            sio.on(name, (lambda n: lambda *args: rec.add(n, args))(name), namespace=namespace)
        self.clients.append(sio)
        return sio

    def connect(self, sio, transports=None, token=None, namespaces=None, query="", wait_timeout=WAIT):
        # a refused connect costs the client its whole wait_timeout: short ones there
        sio.connect(self.server.url("/" + query), transports=transports, namespaces=namespaces,
                    auth={"token": token} if token else None, wait_timeout=wait_timeout)
        return sio

    def socketio_count(self):
        return self.server.stats()["connections"]["by_protocol"]["socketio"]

    def wait_socketio_count(self, n, timeout, what):
        seen = []
        try:
            wait_until(lambda: seen.append(self.socketio_count()) or seen[-1] == n, timeout, what=what)
        except AssertionError:
            raise AssertionError("%s: /stats socketio stayed %r (expected %d)" % (what, seen[-5:], n))

    def assert_one_data(self, args, want):
        # the data is the first argument, whole; a trailing string would be the
        # connection-state-recovery offset socket.io-client 4.6+ keeps
        self.assertEqual(args[0], want, args)
        self.assertTrue(len(args) == 1 or (len(args) == 2 and isinstance(args[1], str)), args)

    # -- the core scenario, per transport ------------------------------------------------
    def core_scenario(self, transports):
        m = uniq("m")
        sio = self.client(events=("market:trade", "connected"))
        self.connect(sio, transports=transports, token=make_jwt("alice"))
        self.assertEqual(sio.transport(), transports[0])
        self.assertTrue(sio.sid)
        hello = sio.rec.wait("connected")
        self.assertEqual(hello, [{"message": "connected", "rooms": ["user:alice"]}])
        ack = sio.call("subscribe", {"room": "market", "id": m}, timeout=WAIT)
        self.assertEqual(ack, {"success": True, "room": "market:%s" % m})
        trade = {"marketId": m, "direction": "buy", "outcome": 1, "amount": "1000000000000000000"}
        self.server.publish_ok("market:%s" % m, "market:trade", trade)
        self.assert_one_data(sio.rec.wait("market:trade"), trade)
        self.assertEqual(sorted(sio.call("getRooms", timeout=WAIT)), sorted(["market:%s" % m, "user:alice"]))
        pong = sio.call("ping", timeout=WAIT)
        self.assertEqual(pong.get("type"), "pong")
        self.wait_socketio_count(1, 3.0, "one socketio connection in /stats")
        sio.disconnect()
        self.wait_socketio_count(0, 5.0, "socketio 0 after disconnect")

    def test_websocket_core_scenario(self):
        self.core_scenario(["websocket"])

    def test_polling_core_scenario(self):
        self.core_scenario(["polling"])

    def test_default_transports_upgrade_to_websocket(self):
        ch = uniq("up")
        sio = self.client(events=("tick",))
        opened_on = []
        orig = sio.eio._connect_polling
        sio.eio._connect_polling = lambda *a, **kw: (opened_on.append("polling"), orig(*a, **kw))[1]
        self.connect(sio, token=make_jwt("bob"))
        self.assertEqual(opened_on, ["polling"], "the default handshake is a polling one")
        wait_until(lambda: sio.transport() == "websocket", 5.0, what="the upgrade to websocket")
        self.assertEqual(sio.call("subscribe", {"channel": ch}, timeout=WAIT), {"success": True, "room": ch})
        self.server.publish_ok(ch, "tick", [1, 2, 3])
        self.assert_one_data(sio.rec.wait("tick"), [1, 2, 3])

    def test_one_parameter_handler_receives_published_event(self):
        # how a python-socketio app writes a handler: one parameter for the data;
        # an extra argument makes python-socketio raise TypeError in its thread
        ch = uniq("one")
        got = []
        done = threading.Event()
        for transports in (["websocket"], ["polling"]):
            got.clear()
            done.clear()
            sio = socketio.Client(reconnection=False)
            self.clients.append(sio)

            @sio.on("job_created")
            def on_job(data):
                got.append(data)
                done.set()

            raw = []   # the event packets as decoded, for the failure message
            orig = sio._handle_event
            sio._handle_event = lambda nsp, ack_id, data, orig=orig, raw=raw: (raw.append(data), orig(nsp, ack_id, data))

            self.connect(sio, transports=transports)
            self.assertEqual(sio.call("subscribe", ch, timeout=WAIT), {"success": True, "room": ch})
            self.server.publish_ok(ch, "job_created", {"id": 1, "title": "Fix the sink"})
            self.assertTrue(done.wait(3.0), "%s: a handler `def on_job(data)` never ran; the EVENT packet "
                                             "carried %r" % (transports[0], raw))
            self.assertEqual(got, [{"id": 1, "title": "Fix the sink"}])
            sio.disconnect()

    # -- auth --------------------------------------------------------------------------
    def test_forbidden_room_and_own_room_through_join_event(self):
        sio = self.client()
        self.connect(sio, transports=["websocket"], token=make_jwt("carol"))
        refused = sio.call("subscribe", "user:dave", timeout=WAIT)
        self.assertEqual((refused.get("success"), refused.get("error")), (False, "forbidden"), refused)
        self.assertIsInstance(refused.get("message"), str)
        self.assertEqual(sio.call("join-user-room", "carol", timeout=WAIT), {"success": True, "room": "user:carol"})
        refused = sio.call("join-user-room", "dave", timeout=WAIT)
        self.assertEqual((refused.get("success"), refused.get("error")), (False, "forbidden"), refused)
        self.assertEqual(sio.call("join-stream-room", 123, timeout=WAIT), {"success": True, "room": "stream:123"})
        self.assertEqual(sio.call("leave-stream-room", 123, timeout=WAIT), {"success": True, "room": "stream:123"})
        self.assertEqual(sio.call("getRooms", timeout=WAIT), ["user:carol"])

    def test_token_in_query_string(self):
        for transports in (["websocket"], ["polling"]):
            sio = self.client(events=("connected",))
            self.connect(sio, transports=transports, query="?token=" + make_jwt("erin"))
            self.assertEqual(sio.rec.wait("connected"), [{"message": "connected", "rooms": ["user:erin"]}])
            sio.disconnect()

    def test_bad_token_gets_connect_error_authentication_failed(self):
        for transports in (["websocket"], ["polling"]):
            for token in ("garbage", make_jwt("mallory", secret="not-the-secret"),
                          make_jwt("mallory", exp=int(time.time()) - 3600)):
                sio = self.client()
                errors = []
                sio.on("connect_error", lambda data: errors.append(data))
                with self.assertRaises(socketio.exceptions.ConnectionError):
                    self.connect(sio, transports=transports, token=token, wait_timeout=1.0)
                wait_until(lambda: errors, 3.0, what="connect_error handler")
                data = errors[0]
                message = data.get("message") if isinstance(data, dict) else data
                self.assertEqual(message, "Authentication failed", (transports, data))

    # -- namespaces --------------------------------------------------------------------
    def test_configured_namespace(self):
        ch = uniq("adm")
        sio = self.client(events=("audit",), namespace="/admin")
        self.connect(sio, transports=["websocket"], namespaces=["/admin"])
        self.assertEqual(sio.call("subscribe", ch, namespace="/admin", timeout=WAIT), {"success": True, "room": ch})
        self.server.publish_ok(ch, "audit", {"who": "ops"})
        self.assert_one_data(sio.rec.wait("audit"), {"who": "ops"})

    def test_unknown_namespace_fails_to_connect(self):
        sio = self.client()
        with self.assertRaises(socketio.exceptions.ConnectionError):
            self.connect(sio, transports=["polling"], namespaces=["/nope"], wait_timeout=1.0)

    # -- /broadcast --------------------------------------------------------------------
    def test_broadcast_compat_shapes(self):
        jobs = uniq("jobs")
        sio = self.client(events=("stream:created", "job_created"))
        self.connect(sio, transports=["polling"], token=make_jwt("SP1ABC"))
        sio.call("subscribe", jobs, timeout=WAIT)
        payload = {"streamId": "7", "sender": "SP1ABC", "amount": "1000"}
        st, body = self.server.post("/broadcast", {"type": "user", "target": "SP1ABC", "event": "stream:created",
                                                   "payload": payload})
        self.assertEqual((st, body), (200, {"success": True}))
        self.assert_one_data(sio.rec.wait("stream:created"), payload)
        st, body = self.server.post("/broadcast", {"type": "job_created", "data": {"id": 3}, "channel": jobs})
        self.assertEqual((st, body), (200, {"success": True}))
        self.assert_one_data(sio.rec.wait("job_created"), {"id": 3})


if __name__ == "__main__":
    run()
