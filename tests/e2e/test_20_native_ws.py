"""End-to-end: herald's native WebSocket protocol on /ws (SPEC sections 3, 9.1-9.4,
9.6-9.8), with Debian's `websockets` client, and raw sockets where a client must
misbehave (ignore pings, never read)."""
import asyncio
import http.client as httpclient
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import unittest

import websockets
import websockets.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ISO_MS_RE, UUID4_RE, CONTROL_TYPES, OP_CLOSE, OP_PING, Collector, Herald,  # noqa: E402
                     RawWS, ServerCase, WSClosed, http as http_req, parse_close, run, uniq, wait_until,
                     ws_alive)

MAX_CHANNELS = 5
RULES = [
    {"pattern": "chat:*", "subscribe": "any", "publish": "any"},
    {"pattern": "user:{sub}", "subscribe": "owner"},
    {"pattern": "user:*", "subscribe": "deny"},
    {"pattern": "*", "subscribe": "any", "publish": "none"},
]


def arun(coro, timeout=30.0):
    """Runs one async test body, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wsconnect(server, read_hello=True, **kw):
    kw.setdefault("ping_interval", None)
    ws = await websockets.connect(server.ws_url(), open_timeout=5, close_timeout=2, **kw)
    hello = None
    if read_hello:
        hello = await recv(ws)
        assert hello.get("type") == "connected", hello
    return ws, hello


async def recv(ws, timeout=3.0):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str), "binary frame from server: %r" % (raw[:100],)
    return json.loads(raw)


async def send(ws, obj):
    await ws.send(json.dumps(obj) if not isinstance(obj, str) else obj)


def is_control(m):
    return m.get("type") in CONTROL_TYPES and "offset" not in m


async def request(ws, obj, timeout=3.0):
    """Sends obj; returns the first control message (events in between are skipped)."""
    await send(ws, obj)
    deadline = time.monotonic() + timeout
    while True:
        m = await recv(ws, max(0.01, deadline - time.monotonic()))
        if is_control(m):
            return m


async def recv_event(ws, event=None, channel=None, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        m = await recv(ws, max(0.01, deadline - time.monotonic()))
        if "offset" in m and (event is None or m["type"] == event) and (channel is None or m["channel"] == channel):
            return m


async def no_event(ws, channel=None, within=0.5):
    """Fails if an event (of channel, if given) arrives within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            m = await recv(ws, left)
        except asyncio.TimeoutError:
            return
        if "offset" in m and (channel is None or m.get("channel") == channel):
            raise AssertionError("unexpected event %r" % m)


async def subscribe(ws, *channels, **extra):
    msg = {"type": "subscribe", "channels": list(channels)}
    msg.update(extra)
    r = await request(ws, msg)
    assert r["type"] == "subscribed", r
    return r


async def apublish(server, channel, event, data=None, **extra):
    return await asyncio.to_thread(server.publish_ok, channel, event, data, **extra)


class NativeWS(ServerCase):
    CONFIG = {"channels": RULES, "limits": {"max_channels_per_connection": MAX_CHANNELS}}

    def assertError(self, m, code, id_=None, channel=None, codes=None):
        self.assertEqual(m.get("type"), "error", m)
        self.assertNotIn("offset", m)
        if codes:
            self.assertIn(m["data"]["code"], codes, m)
        else:
            self.assertEqual(m["data"]["code"], code, m)
        self.assertIsInstance(m["data"].get("message"), str, m)
        if id_ is not None:
            self.assertEqual(m.get("id"), id_, m)
        if channel is not None:
            self.assertEqual(m["data"].get("channel"), channel, m)

    # -- connected ------------------------------------------------------------------
    def test_connected_message(self):
        async def body():
            ws, hello = await wsconnect(self.server)
            ws2, hello2 = await wsconnect(self.server)
            for h in (hello, hello2):
                d = h["data"]
                self.assertRegex(d["connection_id"], UUID4_RE)
                self.assertIn("user", d)
                self.assertIsNone(d["user"])
                self.assertEqual(d["channels"], [])
                self.assertIsInstance(d["epoch"], str)
                self.assertTrue(d["epoch"])
                self.assertRegex(h["timestamp"], ISO_MS_RE)
                self.assertNotIn("offset", h)
            self.assertNotEqual(hello["data"]["connection_id"], hello2["data"]["connection_id"])
            await ws.close()
            await ws2.close()
        arun(body())

    # -- subscribe ------------------------------------------------------------------
    def test_subscribe_list_form(self):
        async def body():
            a, b = uniq("lista"), uniq("listb")
            ws, hello = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 1, "channels": [a, b]})
            self.assertEqual(r["type"], "subscribed", r)
            self.assertEqual(r["id"], 1)
            self.assertEqual(sorted(r["data"]["channels"]), sorted([a, b]))
            self.assertEqual(r["data"]["offsets"], {a: 0, b: 0})
            self.assertEqual(set(r["data"]["epochs"]), {a, b})
            for ep in r["data"]["epochs"].values():
                self.assertEqual(ep, hello["data"]["epoch"])   # single node: the node's epoch
            self.assertNotIn("recovered", r["data"])
            self.assertNotIn("offset", r)
            await ws.close()
        arun(body())

    def test_subscribe_single_form_reports_latest_offset(self):
        async def body():
            ch = uniq("single")
            for i in range(3):
                await apublish(self.server, ch, "e", i)
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": "s-1", "channel": ch})
            self.assertEqual(r["type"], "subscribed", r)
            self.assertEqual(r["id"], "s-1")
            self.assertEqual(r["data"]["channels"], [ch])
            self.assertEqual(r["data"]["offsets"], {ch: 3})
            # stored events are not replayed without `since`
            await no_event(ws, ch, 0.3)
            await apublish(self.server, ch, "e", 3)
            self.assertEqual((await recv_event(ws, "e", ch))["offset"], 4)
            await ws.close()
        arun(body())

    def test_event_envelope(self):
        async def body():
            ch = uniq("env")
            ws, _ = await wsconnect(self.server)
            await subscribe(ws, ch)
            r = await apublish(self.server, ch, "job_created", {"id": 1, "title": "Fix the sink"})
            m = await recv_event(ws)
            self.assertEqual(m["type"], "job_created")
            self.assertEqual(m["channel"], ch)
            self.assertEqual(m["data"], {"id": 1, "title": "Fix the sink"})
            self.assertEqual(m["id"], r["id"])
            self.assertEqual(m["offset"], 1)
            self.assertRegex(m["timestamp"], ISO_MS_RE)
            await ws.close()
        arun(body())

    def test_unsubscribe_stops_events(self):
        async def body():
            ch = uniq("unsub")
            ws, _ = await wsconnect(self.server)
            watcher, _ = await wsconnect(self.server)
            await subscribe(ws, ch)
            await subscribe(watcher, ch)
            r = await request(ws, {"type": "unsubscribe", "id": 5, "channels": [ch]})
            self.assertEqual(r, {"type": "unsubscribed", "id": 5, "data": {"channels": [ch]}})
            await apublish(self.server, ch, "after", 1)
            await recv_event(watcher, "after", ch)
            await no_event(ws, ch, 0.5)
            await ws.close()
            await watcher.close()
        arun(body())

    def test_ping_pong_echoes_id(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            for id_ in (7, "abc", {"k": [1]}, 0):
                r = await request(ws, {"type": "ping", "id": id_})
                self.assertEqual(r["type"], "pong", r)
                self.assertEqual(r["id"], id_)
                self.assertRegex(r["timestamp"], ISO_MS_RE)
            r = await request(ws, {"type": "ping"})
            self.assertEqual(r["type"], "pong")
            self.assertIsNone(r.get("id"))
            await ws.close()
        arun(body())

    # -- publish from a client ------------------------------------------------------------
    def test_publish_refused_where_policy_is_none(self):
        async def body():
            ch = uniq("jobs")
            ws, _ = await wsconnect(self.server)
            watcher, _ = await wsconnect(self.server)
            await subscribe(watcher, ch)
            r = await request(ws, {"type": "publish", "id": 3, "channel": ch, "event": "msg", "data": {}})
            self.assertError(r, "forbidden", 3, ch)
            await no_event(watcher, ch, 0.4)
            self.assertEqual(self.server.get("/api/history?channel=" + ch)[1]["offset"], 0)
            await ws.close()
            await watcher.close()
        arun(body())

    def test_publish_allowed_by_rule(self):
        async def body():
            ch = "chat:" + uniq("room")
            ws, _ = await wsconnect(self.server)
            other, _ = await wsconnect(self.server)
            await subscribe(other, ch)
            r = await request(ws, {"type": "publish", "id": "p1", "channel": ch, "event": "msg",
                                   "data": {"text": "hi"}})
            self.assertEqual(r["type"], "published", r)
            self.assertEqual(r["id"], "p1")
            self.assertEqual(r["data"]["channel"], ch)
            self.assertEqual(r["data"]["offset"], 1)
            self.assertIsInstance(r["data"]["id"], str)
            m = await recv_event(other, "msg", ch)
            self.assertEqual((m["data"], m["offset"], m["id"]), ({"text": "hi"}, 1, r["data"]["id"]))
            r = await request(ws, {"type": "publish", "channel": ch, "event": "pong", "data": {}})
            self.assertError(r, "bad_request")
            r = await request(ws, {"type": "publish", "channel": "$all", "event": "x", "data": {}})
            self.assertError(r, "bad_request")
            r = await request(ws, {"type": "publish", "channel": ch, "data": {}})
            self.assertError(r, "bad_request")
            await ws.close()
            await other.close()
        arun(body())

    # -- refusals ------------------------------------------------------------------------
    def test_subscribe_user_channel_without_token_is_refused(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 9, "channels": ["user:alice"]})
            self.assertError(r, None, 9, "user:alice", codes=("forbidden", "unauthorized"))
            await ws.close()
        arun(body())

    def test_subscribe_all_is_bad_request(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 1, "channels": ["$all"]})
            self.assertError(r, "bad_request", 1)
            r = await request(ws, {"type": "subscribe", "channel": "$all"})
            self.assertError(r, "bad_request")
            r = await request(ws, {"type": "unsubscribe", "channels": ["$all"]})
            self.assertError(r, "bad_request")
            await ws.close()
        arun(body())

    def test_invalid_channel_names_are_bad_request(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            for chans in ([""], ["a b"], ["x" * 256], ["$x"], ["a\x01"], ["tab\t"], [5], [None], "jobs", {}, []):
                r = await request(ws, {"type": "subscribe", "id": "n", "channels": chans})
                self.assertError(r, "bad_request", "n")
            r = await request(ws, {"type": "subscribe"})
            self.assertError(r, "bad_request")
            r = await request(ws, {"type": "ping", "id": "still"})
            self.assertEqual((r["type"], r["id"]), ("pong", "still"))
            await ws.close()
        arun(body())

    def test_bad_json_keeps_connection_open(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            for raw in ("{not json", "", "[1]", "42", "null", '"ping"', '{"type":"ping"'):
                r = await request(ws, raw)
                self.assertError(r, "bad_request")
            r = await request(ws, {"type": "ping", "id": 1})
            self.assertEqual(r["type"], "pong")
            await ws.close()
        arun(body())

    def test_unknown_or_missing_type_is_bad_request(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            for msg in ({"type": "frobnicate", "id": 4}, {"id": 4}, {"type": 5, "id": 4}, {"type": "event", "id": 4},
                        {"type": "connected", "id": 4}):
                r = await request(ws, msg)
                self.assertError(r, "bad_request", 4)
            await ws.close()
        arun(body())

    def test_too_many_channels_is_all_or_nothing(self):
        async def body():
            names = [uniq("many") for _ in range(7)]
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 1, "channels": names[:MAX_CHANNELS + 1]})
            self.assertError(r, "too_many_channels", 1)
            await subscribe(ws, *names[:3])
            r = await request(ws, {"type": "subscribe", "id": 2, "channels": names[3:6]})
            self.assertError(r, "too_many_channels", 2)
            for ch in names[3:6]:   # none of the refused request's channels was joined
                self.assertEqual(self.server.subscribers(ch), 0, ch)
            await apublish(self.server, names[3], "x", 1)
            await no_event(ws, names[3], 0.3)
            r = await subscribe(ws, *names[3:5])   # exactly the limit; $all does not count
            self.assertEqual(sorted(r["data"]["channels"]), sorted(names[3:5]))
            r = await request(ws, {"type": "subscribe", "channels": [names[5]]})
            self.assertError(r, "too_many_channels")
            await request(ws, {"type": "unsubscribe", "channels": [names[0]]})
            await subscribe(ws, names[5])
            await ws.close()
        arun(body())

    def test_forbidden_channel_refuses_whole_subscribe(self):
        async def body():
            ok = uniq("okch")
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 1, "channels": [ok, "user:bob"]})
            self.assertError(r, None, 1, "user:bob", codes=("forbidden", "unauthorized"))
            self.assertEqual(self.server.subscribers(ok), 0)
            await apublish(self.server, ok, "x", 1)
            await no_event(ws, ok, 0.3)
            await ws.close()
        arun(body())

    # -- delivery --------------------------------------------------------------------
    def test_all_receives_global_broadcast(self):
        async def body():
            ws, _ = await wsconnect(self.server)
            st, r = await asyncio.to_thread(self.server.post, "/broadcast",
                                            {"type": "global", "event": "announce", "payload": {"v": 1}})
            self.assertEqual((st, r), (200, {"success": True}))
            m = await recv_event(ws, "announce", "$all")
            self.assertEqual(m["data"], {"v": 1})
            self.assertIsInstance(m["offset"], int)
            await ws.close()
        arun(body())

    def test_two_clients_on_one_channel_both_receive(self):
        async def body():
            ch = uniq("both")
            a, _ = await wsconnect(self.server)
            b, _ = await wsconnect(self.server)
            await subscribe(a, ch)
            await subscribe(b, ch)
            r = await apublish(self.server, ch, "e", {"n": 1})
            ma, mb = await recv_event(a, "e", ch), await recv_event(b, "e", ch)
            self.assertEqual(ma, mb)
            self.assertEqual(ma["id"], r["id"])
            await a.close()
            await b.close()
        arun(body())

    def test_ordering_500_events(self):
        ch = uniq("order")
        n = 500

        def publisher():
            conn = httpclient.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
            offs = []
            for i in range(n):
                conn.request("POST", "/api/publish", json.dumps({"channel": ch, "event": "seq", "data": i}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = json.loads(resp.read())
                assert resp.status == 200, body
                offs.append(body["offset"])
            conn.close()
            return offs

        async def body():
            ws, _ = await wsconnect(self.server, max_queue=None)
            await subscribe(ws, ch)
            offs = await asyncio.to_thread(publisher)
            self.assertEqual(offs, list(range(1, n + 1)))
            got = []
            for _ in range(n):
                m = await recv_event(ws, "seq", ch, timeout=5)
                got.append((m["offset"], m["data"]))
            self.assertEqual(got, [(i + 1, i) for i in range(n)])
            await ws.close()
        arun(body(), timeout=90)

    def test_ordering_concurrent_publishers(self):
        ch = uniq("conc")
        per, threads = 60, 4
        results = []

        def publisher(t):
            conn = httpclient.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
            for i in range(per):
                conn.request("POST", "/api/publish", json.dumps({"channel": ch, "event": "c", "data": [t, i]}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                results.append(json.loads(resp.read())["offset"])
            conn.close()

        async def body():
            ws, _ = await wsconnect(self.server, max_queue=None)
            await subscribe(ws, ch)
            ts = [threading.Thread(target=publisher, args=(t,)) for t in range(threads)]
            for t in ts:
                t.start()
            await asyncio.to_thread(lambda: [t.join(30) for t in ts])
            total = per * threads
            self.assertEqual(sorted(results), list(range(1, total + 1)))
            got = [await recv_event(ws, "c", ch, timeout=5) for _ in range(total)]
            self.assertEqual([m["offset"] for m in got], list(range(1, total + 1)))
            for t in range(threads):   # each publisher's events keep their order
                mine = [m["data"][1] for m in got if m["data"][0] == t]
                self.assertEqual(mine, list(range(per)))
            await ws.close()
        arun(body(), timeout=90)

    # -- recovery and history ----------------------------------------------------------
    def test_recovery_with_since(self):
        async def body():
            ch = uniq("recover")
            for i in range(1, 6):
                await apublish(self.server, ch, "r", i)
            ws, hello = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "id": 1, "channels": [ch], "since": {ch: 2}})
            self.assertEqual(r["type"], "subscribed", r)
            self.assertEqual(r["data"]["recovered"], {ch: True})
            self.assertEqual(r["data"]["offsets"][ch], 5)
            got = [(await recv_event(ws, "r", ch))["offset"] for _ in range(3)]
            self.assertEqual(got, [3, 4, 5])
            await apublish(self.server, ch, "r", 6)
            self.assertEqual((await recv_event(ws, "r", ch))["offset"], 6)
            # per-channel epoch form
            ws2, _ = await wsconnect(self.server)
            r = await request(ws2, {"type": "subscribe", "channels": [ch],
                                    "since": {ch: {"offset": 4, "epoch": hello["data"]["epoch"]}}})
            self.assertEqual(r["data"]["recovered"], {ch: True})
            self.assertEqual([(await recv_event(ws2, "r", ch))["offset"] for _ in range(2)], [5, 6])
            await ws.close()
            await ws2.close()
        arun(body())

    def test_recovery_with_other_epoch_is_not_recovered(self):
        async def body():
            ch = uniq("epoch")
            for i in range(3):
                await apublish(self.server, ch, "r", i)
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "subscribe", "channels": [ch], "since": {ch: 1},
                                   "epoch": "not-the-epoch"})
            self.assertEqual(r["data"]["recovered"], {ch: False})
            await no_event(ws, ch, 0.4)
            await apublish(self.server, ch, "r", 9)
            self.assertEqual((await recv_event(ws, "r", ch))["offset"], 4)
            await ws.close()
        arun(body())

    def test_native_history(self):
        async def body():
            ch = uniq("nhist")
            for i in range(5):
                await apublish(self.server, ch, "h", i)
            ws, _ = await wsconnect(self.server)
            r = await request(ws, {"type": "history", "id": 9, "channel": ch, "since": 1, "limit": 2})
            self.assertEqual((r["type"], r["id"]), ("history", 9), r)
            self.assertEqual(r["data"]["channel"], ch)
            self.assertEqual([e["offset"] for e in r["data"]["events"]], [2, 3])
            self.assertEqual(r["data"]["events"][0]["type"], "h")
            self.assertEqual(r["data"]["offset"], 5)
            self.assertIsInstance(r["data"]["epoch"], str)
            r = await request(ws, {"type": "history", "id": 10, "channel": "user:bob"})
            self.assertEqual(r["type"], "error", r)
            await ws.close()
        arun(body())

    # -- API disconnect, rate limit --------------------------------------------------------
    def test_api_disconnect_by_connection_id(self):
        async def body():
            ws, hello = await wsconnect(self.server)
            cid = hello["data"]["connection_id"]
            st, r = await asyncio.to_thread(self.server.post, "/api/disconnect", {"connection_id": cid})
            self.assertEqual((st, r), (200, {"success": True, "disconnected": 1}))
            with self.assertRaises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 3)
            self.assertEqual(ws.close_code, 4003)
            st, r = await asyncio.to_thread(self.server.post, "/api/disconnect",
                                            {"connection_id": "00000000-0000-4000-8000-000000000000"})
            self.assertEqual((st, r), (200, {"success": True, "disconnected": 0}))
        arun(body())

    def test_rate_limit_refuses_bursts(self):
        async def body():
            ws, _ = await wsconnect(self.server, max_queue=None)
            for i in range(120):
                await send(ws, {"type": "ping", "id": i})
            kinds = []
            for _ in range(120):
                try:
                    m = await recv(ws, 1.5)
                except asyncio.TimeoutError:
                    break
                kinds.append(m["type"] if m["type"] == "pong" else m["data"]["code"])
            self.assertIn("rate_limited", kinds)
            self.assertGreaterEqual(kinds.count("pong"), 40, kinds)
            self.assertLessEqual(kinds.count("pong"), 110, kinds)
            await ws.close()
        arun(body())


    def test_duplicate_subscribe_delivers_once(self):
        async def body():
            ch = uniq("dup")
            ws, _ = await wsconnect(self.server)
            await subscribe(ws, ch)
            r = await subscribe(ws, ch, ch)
            self.assertIn(ch, r["data"]["channels"])
            self.assertEqual(self.server.subscribers(ch), 1)
            await apublish(self.server, ch, "once", 1)
            await recv_event(ws, "once", ch)
            await no_event(ws, ch, 0.4)
            await ws.close()
        arun(body())

    def test_fanout_to_100_clients(self):
        ch = uniq("fan")
        clients = []
        for _ in range(100):
            c = self.ws()
            c.send_json({"type": "subscribe", "channels": [ch]})
            clients.append(c)
        for c in clients:
            c.recv_until(lambda m: m.get("type") == "subscribed")
        self.assertEqual(self.server.subscribers(ch), 100)
        for i in range(10):
            self.server.publish_ok(ch, "f", i)
        for c in clients:
            got = [c.recv_until(lambda m: m.get("type") == "f")[0]["data"] for _ in range(10)]
            self.assertEqual(got, list(range(10)))

    def test_abrupt_disconnects_during_fanout(self):
        ch = uniq("abrupt")
        clients = [self.ws() for _ in range(30)]
        for c in clients:
            c.subscribe(ch)
        errors = []

        def publisher():
            try:
                conn = httpclient.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
                for i in range(300):
                    conn.request("POST", "/api/publish", json.dumps({"channel": ch, "event": "a", "data": "x" * 2000}),
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        errors.append(resp.status)
                conn.close()
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append(e)
        t = threading.Thread(target=publisher)
        t.start()
        for i, c in enumerate(clients):
            time.sleep(0.005)
            if i % 2:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST
            c.close()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        wait_until(lambda: self.server.subscribers(ch) == 0, 5.0, what="every subscriber gone")
        c = self.ws()
        self.assertEqual(c.request({"type": "ping", "id": 1})["type"], "pong")

    def test_persistent_flooding_closes_1008(self):
        c = self.ws()
        t0 = time.monotonic()
        code, limited = None, 0
        i = 0
        while time.monotonic() - t0 < 9 and code is None:
            for _ in range(10):   # about 100 messages a second, twice the limit
                i += 1
                try:
                    c.send_json({"type": "ping", "id": i})
                except OSError:
                    break
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                try:
                    op, payload = c.recv_message(max(0.001, end - time.monotonic()))
                except (socket.timeout, TimeoutError):
                    break
                except WSClosed:
                    code = "tcp closed without a close frame"
                    break
                if op == OP_CLOSE:
                    code = parse_close(payload)[0]
                    break
                m = json.loads(payload)
                if m.get("type") == "error" and m["data"]["code"] == "rate_limited":
                    limited += 1
        elapsed = time.monotonic() - t0
        self.assertGreater(limited, 0)
        self.assertEqual(code, 1008, "after %.1fs" % elapsed)
        self.assertGreaterEqual(elapsed, 4.0)
        self.assertLess(elapsed, 8.5)
        ws_alive(self.server)


class RecoveryLimits(ServerCase):
    CONFIG = {"history": {"size": 10}, "channels": [{"pattern": "*", "subscribe": "any"}]}

    def test_since_beyond_history_is_not_recovered(self):
        ch = uniq("short")
        for i in range(1, 26):
            self.server.publish_ok(ch, "h", i)
        c = self.ws()
        r = c.subscribe(ch, since={ch: 5})
        self.assertEqual(r["data"]["recovered"], {ch: False})
        self.assertEqual(r["data"]["offsets"], {ch: 25})
        c.no_message(0.4)
        c2 = self.ws()
        r = c2.subscribe(ch, since={ch: 20})
        self.assertEqual(r["data"]["recovered"], {ch: True})
        self.assertEqual([c2.recv_json()["offset"] for _ in range(5)], [21, 22, 23, 24, 25])
        c3 = self.ws()
        r = c3.subscribe(ch, since={ch: 25})
        self.assertEqual(r["data"]["recovered"], {ch: True})
        c3.no_message(0.3)
        c4 = self.ws()   # the oldest kept event is 16: since 15 still has no gap
        r = c4.subscribe(ch, since={ch: 15})
        self.assertEqual(r["data"]["recovered"], {ch: True})
        self.assertEqual([c4.recv_json()["offset"] for _ in range(10)], list(range(16, 26)))
        st, h = self.server.get("/api/history?channel=%s&since=0" % ch)
        self.assertEqual([e["offset"] for e in h["events"]], list(range(16, 26)))
        # all live events follow, no gap, no duplicate
        self.server.publish_ok(ch, "h", 26)
        for cc in (c, c2, c3, c4):
            self.assertEqual(cc.recv_json()["offset"], 26)

    def test_since_for_unknown_channel(self):
        ch = uniq("empty")
        c = self.ws()
        r = c.subscribe(ch, since={ch: 0})
        self.assertEqual(r["data"]["recovered"], {ch: True})
        self.assertEqual(r["data"]["offsets"], {ch: 0})
        self.server.publish_ok(ch, "h", 1)
        self.assertEqual(c.recv_json()["offset"], 1)


class ConnectionRate(ServerCase):
    CONFIG = {"limits": {"connections_per_ip_per_second": 3}, "trusted_proxies": ["127.0.0.1/32"]}

    def test_over_rate_is_429_before_upgrade(self):
        statuses = []
        for _ in range(8):
            c = self.raw()
            statuses.append(c.status)
        self.assertIn(429, statuses)
        self.assertLessEqual(statuses.count(101), 6, statuses)
        self.assertGreaterEqual(statuses.count(101), 3, statuses)
        self.assertEqual(set(statuses), {101, 429})
        self.assertEqual(self.server.get("/health")[0], 200)
        time.sleep(2.2)
        self.assertEqual(self.raw().status, 101)

    def test_forwarded_for_from_trusted_proxy_counts_per_client(self):
        time.sleep(2.2)   # a fresh window for 127.0.0.1
        statuses = [self.raw(headers={"X-Forwarded-For": "198.51.100.%d" % i}).status for i in range(8)]
        self.assertEqual(statuses, [101] * 8)
        same = [self.raw(headers={"X-Forwarded-For": "198.51.100.200"}).status for _ in range(8)]
        self.assertIn(429, same)

class Handshake(ServerCase):
    CONFIG = {"allowed_origins": ["http://good.example", "https://app.example:8443"]}

    def test_origin_not_allowed_is_403(self):
        for origin in ("http://evil.example", "http://good.example.evil", "null", "http://good.example:81"):
            c = self.raw(headers={"Origin": origin})
            self.assertEqual(c.status, 403, origin)
            self.assertNotIn("sec-websocket-accept", c.headers)

    def test_origin_allowed(self):
        for origin in ("http://good.example", "https://app.example:8443"):
            c = self.raw(headers={"Origin": origin})
            self.assertEqual(c.status, 101, origin)
            self.assertEqual(c.recv_json()["type"], "connected")

    def test_origin_with_websockets_client(self):
        async def body():
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                await websockets.connect(self.server.ws_url(), origin="http://evil.example", open_timeout=5)
            self.assertEqual(cm.exception.status_code, 403)
            ws, _ = await wsconnect(self.server, origin="http://good.example")
            await ws.close()
        arun(body())

    def test_wrong_version_is_426(self):
        c = self.raw(version="8")
        self.assertEqual(c.status, 426)
        self.assertEqual(c.headers.get("sec-websocket-version"), "13")
        c = self.raw(omit=("Sec-WebSocket-Version",))
        self.assertIn(c.status, (400, 426))
        if c.status == 426:
            self.assertEqual(c.headers.get("sec-websocket-version"), "13")

    def test_plain_get_ws_is_400(self):
        st, r = http_req("GET", self.server.url("/ws"))
        self.assertEqual(st, 400, r)
        c = self.raw(omit=("Sec-WebSocket-Key",))
        self.assertEqual(c.status, 400)
        c = self.raw(omit=("Connection",))
        self.assertEqual(c.status, 400)
        c = self.raw(request=b"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.assertIn(c.status, (400, 405))
        self.assertEqual(self.server.get("/health")[0], 200)

    def test_key_not_16_bytes_is_400(self):
        # RFC 6455 4.2.1: the key must decode to 16 bytes
        c = self.raw(key="dG9vLXNob3J0")
        self.assertEqual(c.status, 400)

    def test_handshake_accepts_token_lists_and_case(self):
        c = self.raw(headers={"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"})
        self.assertEqual(c.status, 101)
        self.assertEqual(c.recv_json()["type"], "connected")

    def test_extensions_are_not_negotiated(self):
        c = self.raw(headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
        self.assertEqual(c.status, 101)
        self.assertNotIn("sec-websocket-extensions", c.headers)


class MaxConnections(ServerCase):
    CONFIG = {"limits": {"max_connections": 3}}

    def test_limit_answers_503_before_upgrade(self):
        held = [self.ws() for _ in range(3)]
        c = self.raw()
        self.assertEqual(c.status, 503)
        self.assertEqual(self.server.get("/health")[0], 200)
        held[0].send_close(1000)
        held[0].expect_close(1000)

        def try_connect():
            r = RawWS(self.server.port)
            if r.status == 101:
                return self.track(r)
            r.close()
            return None
        wait_until(try_connect, 3.0, 0.1, "a slot after one client left")


class Heartbeat(ServerCase):
    CONFIG = {"heartbeat": {"interval_s": 1, "timeout_s": 1}}

    def test_silent_client_closed_4000_and_answering_client_stays(self):
        ch = uniq("hb")
        answering = self.ws()
        answering.subscribe(ch)
        col = Collector(answering)   # answers every ping from its own thread
        col.start()
        silent = self.ws()
        t0 = time.monotonic()
        pings = 0
        code = None
        while time.monotonic() - t0 < 6:
            try:
                op, payload = silent.recv_message(max(0.01, 6 - (time.monotonic() - t0)), answer_pings=False,
                                                  skip_pings=False)
            except WSClosed:
                self.fail("TCP closed without a close frame after %.1fs" % (time.monotonic() - t0))
            except (socket.timeout, TimeoutError):
                break
            if op == OP_PING:
                pings += 1
            elif op == OP_CLOSE:
                code = parse_close(payload)[0]
                break
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(pings, 1, "no ping before the close")
        self.assertEqual(code, 4000, "close code after %.1fs" % elapsed)
        self.assertLess(elapsed, 3.5, "heartbeat close took %.1fs" % elapsed)
        self.assertTrue(silent.wait_eof(2.0))
        time.sleep(2.5)   # several more heartbeat rounds for the answering client
        try:
            self.assertIsNone(col.error)
            self.assertIsNone(col.close_code, "answering client was closed")
            self.server.publish_ok(ch, "e", 1)
            wait_until(lambda: col.events(ch), 3.0, what="event on the answering client")
        finally:
            col.stop()

    def test_websockets_client_stays_connected(self):
        async def body():
            ch = uniq("hbws")
            ws, _ = await wsconnect(self.server)   # answers pings itself, sends none
            await subscribe(ws, ch)
            await asyncio.sleep(4.0)
            await apublish(self.server, ch, "still", 1)
            self.assertEqual((await recv_event(ws, "still", ch))["data"], 1)
            await ws.close()
        arun(body())


class SlowConsumer(ServerCase):
    QUEUE = 65536
    CONFIG = {"limits": {"send_queue_bytes": QUEUE}}
    # a small quarantine, so that RSS follows live memory rather than freed blocks
    ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS") or "detect_leaks=1:abort_on_error=0")
           + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64"}

    def metric(self, name):
        st, text = self.server.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
        return None

    def test_slow_consumer_disconnected_others_unaffected(self):
        ch = uniq("slow")
        slow = self.raw(rcvbuf=4096)
        self.assertEqual(slow.status, 101)
        slow.recv_json()
        slow.subscribe(ch)
        fast = self.ws()
        fast.subscribe(ch)
        col = Collector(fast)
        col.start()
        slow0 = self.metric("herald_slow_consumers_total")
        rss0 = self.server.rss_kb()
        pad = "x" * 4000
        conn = httpclient.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        published, gone_at = 0, None
        try:
            for i in range(5000):
                conn.request("POST", "/api/publish", json.dumps({"channel": ch, "event": "big",
                                                                 "data": {"i": i, "pad": pad}}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                self.assertEqual(resp.status, 200)
                published += 1
                if gone_at is None and i % 50 == 49 and self.server.subscribers(ch) == 1:
                    gone_at = published
                if gone_at is not None and published >= gone_at + 50:
                    break
        finally:
            conn.close()
        rss1 = self.server.rss_kb()
        print("slow consumer: disconnected after %s events of 4 KB; RSS %d -> %d KB"
              % (gone_at, rss0, rss1), flush=True)
        self.assertIsNotNone(gone_at, "slow consumer still subscribed after %d x 4 KB events" % published)
        # the normal client got everything, in order
        wait_until(lambda: len(col.events(ch)) >= published or col.error, 15.0,
                   what="fast client receives %d events" % published)
        col.stop()
        self.assertIsNone(col.error)
        self.assertEqual([m["offset"] for m in col.events(ch)], list(range(1, published + 1)))
        # the slow socket: whatever was queued, then (if it fits) close 4008, then EOF
        deadline = time.monotonic() + 8
        code = None
        while time.monotonic() < deadline:
            try:
                op, payload = slow.recv_message(max(0.01, deadline - time.monotonic()))
            except WSClosed:
                break
            except (socket.timeout, TimeoutError):
                self.fail("slow consumer's socket neither closed nor drained")
            if op == OP_CLOSE:
                code = parse_close(payload)[0]
                break
        self.assertIn(code, (None, 4008))
        self.assertGreaterEqual(self.metric("herald_slow_consumers_total"), (slow0 or 0) + 1)
        self.assertLess(rss1 - rss0, 48 * 1024, "RSS grew by %d KB" % (rss1 - rss0))


class Shutdown(unittest.TestCase):
    def test_sigterm_closes_clients_1001_and_exits_0(self):
        server = Herald({"shutdown_timeout_s": 5}).start()
        try:
            async def body():
                a, _ = await wsconnect(server)
                b, _ = await wsconnect(server)
                await subscribe(a, "jobs")
                t0 = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                for ws in (a, b):
                    with self.assertRaises(websockets.exceptions.ConnectionClosed):
                        while True:
                            await asyncio.wait_for(ws.recv(), 5)
                    self.assertEqual(ws.close_code, 1001)
                return time.monotonic() - t0
            dt = arun(body())
            self.assertLess(dt, 5.0)
        finally:
            server.stop()   # asserts exit status 0 within the shutdown timeout


class ShutdownStuck(unittest.TestCase):
    def test_sigint_closes_1001_and_exits_0(self):
        server = Herald({"shutdown_timeout_s": 5}).start()
        try:
            c = server.ws()
            server.proc.send_signal(signal.SIGINT)
            c.expect_close(1001, timeout=5)
        finally:
            server.stop()

    def test_shutdown_with_a_consumer_that_never_reads(self):
        server = Herald({"shutdown_timeout_s": 3, "limits": {"send_queue_bytes": 64 << 20}}).start()
        try:
            ch = uniq("stuck")
            stuck = RawWS(server.port, rcvbuf=4096)
            stuck.recv_json()
            stuck.subscribe(ch)
            conn = httpclient.HTTPConnection("127.0.0.1", server.port, timeout=5)
            for i in range(1000):
                conn.request("POST", "/api/publish", json.dumps({"channel": ch, "event": "s", "data": "z" * 4000}),
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
            conn.close()
            self.assertEqual(server.subscribers(ch), 1)
            t0 = time.monotonic()
            proc = server.proc
            server.stop()   # status 0 within shutdown_timeout_s + 5
            self.assertLess(time.monotonic() - t0, 3 + 1.5, "exit took %.1fs" % (time.monotonic() - t0))
            self.assertEqual(proc.returncode, 0)
            stuck.close()
        finally:
            server.kill()


if __name__ == "__main__":
    run()
