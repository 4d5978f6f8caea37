"""End-to-end: herald's HTTP API (SPEC sections 2, 5, 9.1, 9.4, 9.7, 9.13).

/health, /stats, /metrics, POST /api/publish, /api/broadcast, /broadcast (both
compatibility shapes, checked by a subscribed WebSocket client), /api/history,
idempotency keys, API keys, the loopback rule, error replies, and the HTTP/1.1
connection handling (keep-alive, pipelining, chunked bodies, malformed input,
slow partial requests)."""
import json
import os
import re
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ISO_RE, CONTROL_TYPES, RawHTTP, ServerCase, assert_error_json, http,  # noqa: E402
                     http_full, request_bytes, run, uniq, wait_until)

MAX_BODY = 4096
OPEN_RULES = [{"pattern": "*", "subscribe": "any", "publish": "none"}]


def parse_metrics(text):
    """{(name, labels): value} from Prometheus text; also returns the # TYPE lines."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            m = re.match(r"^# TYPE (\S+) (\S+)", line)
            if m:
                types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\S+)?$", line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


class HttpApi(ServerCase):
    CONFIG = {"limits": {"max_body_bytes": MAX_BODY}, "channels": OPEN_RULES}

    # -- helpers ----------------------------------------------------------------
    def metrics(self):
        st, text, h = http_full("GET", self.server.url("/metrics"))
        self.assertEqual(st, 200)
        self.assertTrue(h.get("Content-Type", "").startswith("text/plain"), h.get("Content-Type"))
        self.assertIsInstance(text, str)
        return parse_metrics(text)

    def metric(self, name, labels=""):
        samples, _ = self.metrics()
        return samples.get((name, labels))

    def subscriber(self, *channels):
        c = self.ws()
        c.subscribe(*channels)
        return c

    def recv_event(self, c, event, channel=None, timeout=3.0):
        msg, _ = c.recv_until(lambda m: m.get("type") == event and "offset" in m
                              and (channel is None or m.get("channel") == channel), timeout)
        return msg

    # -- /health, /stats, /metrics ----------------------------------------------
    def test_health(self):
        st, body, h = http_full("GET", self.server.url("/health"))
        self.assertEqual(st, 200)
        self.assertIn("application/json", h.get("Content-Type", ""))
        self.assertEqual(body.get("status"), "ok", body)
        self.assertRegex(body.get("timestamp", ""), ISO_RE)
        self.assertIsInstance(body.get("uptime_s"), (int, float))
        self.assertGreaterEqual(body["uptime_s"], 0)
        self.assertIsInstance(body.get("connections"), int)

    def test_health_counts_websocket_connections(self):
        before = self.server.get("/health")[1]["connections"]
        self.ws()
        self.ws()
        wait_until(lambda: self.server.get("/health")[1]["connections"] == before + 2,
                   what="/health connections +2")

    def test_stats_shape(self):
        s = self.server.stats()
        self.assertIsInstance(s["connections"]["total"], int)
        self.assertIsInstance(s["connections"]["by_channel"], dict)
        self.assertIsInstance(s["channels"], int)
        for k in ("published", "delivered", "dropped"):
            self.assertIsInstance(s["messages"][k], int, k)
        # channels counts channels with a subscriber; by_channel lists them (under its limit)
        self.assertEqual(s["channels"], len(s["connections"]["by_channel"]), s)

    def test_stats_by_channel_limit_and_no_all(self):
        big, small = uniq("statsbig"), uniq("statssmall")
        self.subscriber(big)
        self.subscriber(big)
        self.subscriber(small)
        s = wait_until(lambda: (lambda s: s if s["connections"]["by_channel"].get(big) == 2
                                and s["connections"]["by_channel"].get(small) == 1 else None)(self.server.stats()),
                       what="by_channel counts")
        self.assertNotIn("$all", s["connections"]["by_channel"])
        self.assertEqual(s["channels"], len(s["connections"]["by_channel"]), s)
        self.assertGreaterEqual(s["connections"]["total"], 3)
        st, lim = self.server.get("/stats?limit=1")
        self.assertEqual(st, 200)
        self.assertEqual(len(lim["connections"]["by_channel"]), 1, lim)
        # largest first: no channel can have more subscribers than the one kept
        (kept, n), = lim["connections"]["by_channel"].items()
        self.assertGreaterEqual(n, 2, lim)

    def test_stats_channels_drop_when_unsubscribed(self):
        ch = uniq("statsgone")
        c = self.subscriber(ch)
        self.server.wait_subscribers(ch, 1)
        self.assertEqual(self.server.stats()["channels"], 1)
        c.close()
        wait_until(lambda: ch not in self.server.stats()["connections"]["by_channel"],
                   what="%s leaves by_channel" % ch)
        self.assertEqual(self.server.stats()["channels"], 0)

    def test_stats_message_counters(self):
        ch = uniq("counters")
        a, b = self.subscriber(ch), self.subscriber(ch)
        m0 = self.server.stats()["messages"]
        for i in range(3):
            self.server.publish_ok(ch, "tick", {"i": i})
        for c in (a, b):
            for i in range(3):
                self.recv_event(c, "tick", ch)
        m1 = wait_until(lambda: (lambda m: m if m["delivered"] >= m0["delivered"] + 6 else None)(
            self.server.stats()["messages"]), what="delivered +6")
        self.assertEqual(m1["published"] - m0["published"], 3)
        self.assertEqual(m1["delivered"] - m0["delivered"], 6)
        self.assertEqual(m1["dropped"], m0["dropped"])

    def test_metrics_names_and_types(self):
        samples, types = self.metrics()
        names = {n for n, _ in samples}
        for n in ("herald_channels", "herald_messages_published_total", "herald_messages_delivered_total",
                  "herald_messages_dropped_total", "herald_slow_consumers_total"):
            self.assertIn(n, names)
        self.assertIn(("herald_connections", '{protocol="ws"}'), samples)
        self.assertEqual(types.get("herald_messages_published_total"), "counter")
        self.assertEqual(types.get("herald_messages_delivered_total"), "counter")
        self.assertEqual(types.get("herald_messages_dropped_total"), "counter")
        self.assertEqual(types.get("herald_connections"), "gauge")
        self.assertEqual(types.get("herald_channels"), "gauge")
        self.assertEqual(types.get("herald_publish_duration_seconds"), "histogram")
        self.assertIn(("herald_publish_duration_seconds_bucket", '{le="+Inf"}'), samples)
        self.assertIn("herald_publish_duration_seconds_count", names)
        self.assertIn("herald_publish_duration_seconds_sum", names)

    def test_metrics_move_with_traffic(self):
        ws0 = self.metric("herald_connections", '{protocol="ws"}')
        ch0 = self.metric("herald_channels")
        ch = uniq("metrics")
        a, b = self.subscriber(ch), self.subscriber(ch)
        wait_until(lambda: self.metric("herald_connections", '{protocol="ws"}') == ws0 + 2,
                   what='herald_connections{protocol="ws"} +2')
        self.assertEqual(self.metric("herald_channels"), ch0 + 1)
        p0 = self.metric("herald_messages_published_total")
        d0 = self.metric("herald_messages_delivered_total")
        c0 = self.metric("herald_publish_duration_seconds_count")
        self.server.publish_ok(ch, "m", 1)
        self.server.publish_ok(ch, "m", 2)
        for c in (a, b):
            self.recv_event(c, "m", ch)
            self.recv_event(c, "m", ch)
        wait_until(lambda: self.metric("herald_messages_delivered_total") == d0 + 4,
                   what="herald_messages_delivered_total +4")
        self.assertEqual(self.metric("herald_messages_published_total"), p0 + 2)
        self.assertEqual(self.metric("herald_publish_duration_seconds_count"), c0 + 2)

    # -- publishing -------------------------------------------------------------
    def test_publish_offsets_per_channel(self):
        a, b = uniq("offa"), uniq("offb")
        ids = set()
        for want in (1, 2, 3):
            r = self.server.publish_ok(a, "e", {"n": want})
            self.assertIs(r.get("success"), True, r)
            self.assertEqual(r.get("offset"), want, r)
            self.assertIsInstance(r.get("id"), str)
            self.assertTrue(r["id"])
            ids.add(r["id"])
        self.assertEqual(len(ids), 3, "event ids repeat: %r" % ids)
        self.assertEqual(self.server.publish_ok(b, "e", {})["offset"], 1)
        self.assertEqual(self.server.publish_ok(a, "e", {})["offset"], 4)

    def test_publish_delivers_envelope_and_any_json_data(self):
        ch = uniq("datatypes")
        c = self.subscriber(ch)
        values = [{"nested": {"a": [1, 2, {"b": None}]}, "s": "é€😀"}, [1, "two", 3.5], "text", 42, -1.25,
                  True, None, {}]
        for i, v in enumerate(values):
            r = self.server.publish_ok(ch, "job_created", v)
            msg = self.recv_event(c, "job_created", ch)
            self.assertEqual(msg["data"], v)
            self.assertEqual(msg["offset"], i + 1)
            self.assertEqual(msg["id"], r["id"])
            self.assertEqual(msg["channel"], ch)

    def test_publish_event_names_with_colons_and_case(self):
        ch = uniq("names")
        c = self.subscriber(ch)
        for ev in ("stream:withdrawal", "TIP_SENT", "a.b-c"):
            self.server.publish_ok(ch, ev, {})
            self.assertEqual(self.recv_event(c, ev, ch)["type"], ev)

    def test_publish_to_all_reaches_every_connection(self):
        c = self.ws()
        r = self.server.publish_ok("$all", "notice", {"x": 1})
        self.assertIsInstance(r.get("offset"), int)
        msg = self.recv_event(c, "notice", "$all")
        self.assertEqual(msg["data"], {"x": 1})

    def test_api_broadcast_offsets_per_channel(self):
        a, b = uniq("bca"), uniq("bcb")
        sub = self.subscriber(b)
        st, r = self.server.post("/api/broadcast", {"channels": [a, b], "event": "e", "data": {"k": 1}})
        self.assertEqual(st, 200, r)
        self.assertEqual(r, {"success": True, "offsets": {a: 1, b: 1}})
        self.server.publish_ok(a, "e", {})
        st, r = self.server.post("/api/broadcast", {"channels": [a, b], "event": "e", "data": {"k": 2}})
        self.assertEqual(st, 200, r)
        self.assertEqual(r["offsets"], {a: 3, b: 2})
        self.assertEqual(self.recv_event(sub, "e", b)["data"], {"k": 1})
        self.assertEqual(self.recv_event(sub, "e", b)["data"], {"k": 2})

    def test_api_broadcast_bad_fields(self):
        for body in ({"channels": "x", "event": "e", "data": 1}, {"event": "e", "data": 1},
                     {"channels": ["ok", 5], "event": "e", "data": 1}, {"channels": ["ok"], "data": 1},
                     {"channels": ["ok", "bad name"], "event": "e", "data": 1},
                     {"channels": ["ok"], "event": "subscribed", "data": 1}):
            st, r = self.server.post("/api/broadcast", body)
            assert_error_json(self, st, r, 400)

    # -- /broadcast compatibility -------------------------------------------------
    def test_compat_broadcast_type_target_event(self):
        target = uniq("SP1")
        c = self.subscriber("user:" + target)
        st, r = self.server.post("/broadcast", {"type": "user", "target": target, "event": "stream:created",
                                                "payload": {"stream": 7}})
        self.assertEqual((st, r), (200, {"success": True}))
        msg = self.recv_event(c, "stream:created", "user:" + target)
        self.assertEqual(msg["data"], {"stream": 7})

    def test_compat_broadcast_type_without_target(self):
        ch = uniq("marketplace")
        c = self.subscriber(ch)
        st, r = self.server.post("/broadcast", {"type": ch, "event": "listing:new", "payload": {"id": "m1"}})
        self.assertEqual((st, r), (200, {"success": True}))
        self.assertEqual(self.recv_event(c, "listing:new", ch)["data"], {"id": "m1"})

    def test_compat_broadcast_global_goes_to_all(self):
        c = self.ws()
        st, r = self.server.post("/broadcast", {"type": "global", "event": "announcement",
                                                "payload": {"text": "hello"}})
        self.assertEqual((st, r), (200, {"success": True}))
        self.assertEqual(self.recv_event(c, "announcement", "$all")["data"], {"text": "hello"})

    def test_compat_broadcast_type_is_event_with_channel(self):
        ch = uniq("jobs")
        c = self.subscriber(ch)
        st, r = self.server.post("/broadcast", {"type": "job_created", "data": {"id": 1}, "channel": ch})
        self.assertEqual((st, r), (200, {"success": True}))
        msg = self.recv_event(c, "job_created", ch)
        self.assertEqual(msg["data"], {"id": 1})

    def test_compat_broadcast_type_is_event_without_channel(self):
        c = self.ws()
        st, r = self.server.post("/broadcast", {"type": "maintenance", "data": {"at": "now"}})
        self.assertEqual((st, r), (200, {"success": True}))
        self.assertEqual(self.recv_event(c, "maintenance", "$all")["data"], {"at": "now"})

    def test_compat_broadcast_bad_shapes(self):
        for body in ({"event": "x", "payload": {}}, {"data": {}}, {"type": 5, "data": {}}, [1],
                     {"type": "subscribed", "data": {}, "channel": "jobs"}):
            st, r = self.server.post("/broadcast", body)
            assert_error_json(self, st, r, 400)

    # -- idempotency and history ----------------------------------------------------
    def test_idempotency_key_repeats_are_not_delivered(self):
        ch, other = uniq("idem"), uniq("idem2")
        c = self.subscriber(ch)
        r1 = self.server.publish_ok(ch, "pay", {"n": 1}, idempotency_key="key-1")
        r2 = self.server.publish_ok(ch, "pay", {"n": 1}, idempotency_key="key-1")
        self.assertEqual((r2["id"], r2["offset"]), (r1["id"], r1["offset"]))
        self.assertIs(r2.get("duplicate"), True, r2)
        self.assertNotEqual(r1.get("duplicate"), True, r1)
        # the key is per channel
        r3 = self.server.publish_ok(other, "pay", {"n": 1}, idempotency_key="key-1")
        self.assertNotEqual(r3.get("duplicate"), True, r3)
        r4 = self.server.publish_ok(ch, "pay", {"n": 2}, idempotency_key="key-2")
        self.assertEqual(r4["offset"], r1["offset"] + 1)
        self.assertEqual(self.recv_event(c, "pay", ch)["offset"], r1["offset"])
        self.assertEqual(self.recv_event(c, "pay", ch)["offset"], r4["offset"])

    def test_api_history(self):
        ch = uniq("hist")
        ids = [self.server.publish_ok(ch, "h", {"i": i})["id"] for i in range(5)]
        st, r = self.server.get("/api/history?channel=%s&since=1&limit=2" % ch)
        self.assertEqual(st, 200, r)
        self.assertEqual([e["offset"] for e in r["events"]], [2, 3])
        self.assertEqual(r["offset"], 5)
        self.assertIsInstance(r["epoch"], str)
        e = r["events"][0]
        self.assertEqual((e["type"], e["channel"], e["data"], e["id"]), ("h", ch, {"i": 1}, ids[1]))
        self.assertRegex(e["timestamp"], ISO_RE)
        st, r = self.server.get("/api/history?channel=%s" % ch)
        self.assertEqual([e["offset"] for e in r["events"]], [1, 2, 3, 4, 5])
        st, r = self.server.get("/api/history?channel=%s" % uniq("never"))
        self.assertEqual(st, 200, r)
        self.assertEqual((r["events"], r["offset"]), ([], 0))
        self.assertIsInstance(r["epoch"], str)
        st, r = self.server.get("/api/history")
        assert_error_json(self, st, r, 400)

    # -- the loopback rule (no api_keys) --------------------------------------------
    def test_no_api_keys_refuses_forwarded_requests(self):
        ch = uniq("fwd")
        st, r = self.server.publish(ch, "e", {}, headers={"X-Forwarded-For": "203.0.113.9"})
        assert_error_json(self, st, r, 403)
        st, r = self.server.publish(ch, "e", {}, headers={"Forwarded": "for=203.0.113.9"})
        assert_error_json(self, st, r, 403)
        st, r = self.server.post("/broadcast", {"type": "x", "data": {}, "channel": ch},
                                 headers={"X-Forwarded-For": "127.0.0.1"})
        assert_error_json(self, st, r, 403)
        # nothing was published by the refused requests
        self.assertEqual(self.server.publish_ok(ch, "e", {})["offset"], 1)

    # -- errors ---------------------------------------------------------------------
    def test_bad_json_is_400(self):
        for raw in (b'{"channel":', b"not json", b"", b"[1,2]", b'"str"', b'{"channel":"a","event":"e","data":}'):
            st, r = http("POST", self.server.url("/api/publish"), raw_body=raw,
                         headers={"Content-Type": "application/json"})
            assert_error_json(self, st, r, 400)

    def test_missing_or_wrong_fields_are_400(self):
        for body in ({"event": "e", "data": {}}, {"channel": "jobs", "data": {}}, {"channel": 5, "event": "e"},
                     {"channel": "jobs", "event": 7, "data": 1}, {"channel": None, "event": "e"},
                     {"channel": "jobs", "event": "e", "idempotency_key": 5}):
            st, r = self.server.post("/api/publish", body)
            assert_error_json(self, st, r, 400)

    def test_event_named_like_control_message_is_400(self):
        for ev in CONTROL_TYPES:
            st, r = self.server.publish(uniq("ctl"), ev, {})
            assert_error_json(self, st, r, 400, "bad_request")

    def test_invalid_channel_names_are_400(self):
        for ch in ("", "x" * 256, "é" * 128, "$foo", "$", "a b", "a\tb", "a\x01b", "line\nbreak", "\x00"):
            st, r = self.server.publish(ch, "e", {})
            assert_error_json(self, st, r, 400)

    def test_valid_channel_name_edges(self):
        for ch in ("x" * 255, "é" * 127 + "a", "café:ü", "user:0xabc", "a:b:c", "x"):
            st, r = self.server.publish(ch, "e", {})
            self.assertEqual(st, 200, (ch[:20], r))

    def test_unknown_path_is_404(self):
        for method, path in (("GET", "/nope"), ("POST", "/api/nope"), ("GET", "/api/publish/x")):
            st, r = http(method, self.server.url(path), body={} if method == "POST" else None)
            assert_error_json(self, st, r, 404)

    def test_wrong_method_is_405(self):
        for method, path in (("GET", "/api/publish"), ("PUT", "/api/publish"), ("DELETE", "/api/broadcast"),
                             ("GET", "/broadcast"), ("POST", "/health"), ("POST", "/stats"),
                             ("DELETE", "/metrics")):
            st, r = http(method, self.server.url(path), body={} if method in ("POST", "PUT") else None)
            assert_error_json(self, st, r, 405)

    def test_body_over_limit_is_413(self):
        ch = uniq("big")
        pad = "x" * (MAX_BODY + 100)
        st, r = self.server.publish(ch, "e", {"pad": pad})
        assert_error_json(self, st, r, 413)
        # exactly at the limit is accepted
        body = {"channel": ch, "event": "e", "data": ""}
        body["data"] = "y" * (MAX_BODY - len(json.dumps(body).encode()))
        raw = json.dumps(body).encode()
        self.assertEqual(len(raw), MAX_BODY)
        st, r = http("POST", self.server.url("/api/publish"), raw_body=raw,
                     headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200, r)
        self.assertEqual(r["offset"], 1)

    def test_chunked_body_over_limit_is_413(self):
        c = self.rawhttp()
        c.send(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 1024
        for _ in range(6):
            try:
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
        try:
            c.send(b"0\r\n\r\n")
        except OSError:
            pass
        st, _h, body = c.read_response()
        self.assertEqual(st, 413, body)
        self.assertEqual(self.server.get("/health")[0], 200)

    # -- HTTP/1.1 connection handling ------------------------------------------------
    def test_keep_alive_several_requests_one_socket(self):
        ch = uniq("keep")
        c = self.rawhttp()
        for i in range(1, 6):
            c.send(request_bytes("POST", "/api/publish", {"channel": ch, "event": "e", "data": i}))
            st, h, body = c.read_response()
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["offset"], i)
            c.send(request_bytes("GET", "/health"))
            st, h, body = c.read_response()
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body)["status"], "ok")
        self.assertFalse(c.at_eof(0.2), "server closed a keep-alive connection")

    def test_connection_close_and_http10(self):
        c = self.rawhttp()
        c.send(request_bytes("GET", "/health", headers={"Connection": "close"}))
        st, _h, _b = c.read_response()
        self.assertEqual(st, 200)
        self.assertTrue(c.at_eof(2.0), "Connection: close not honoured")
        c2 = self.rawhttp()
        c2.send(b"GET /health HTTP/1.0\r\n\r\n")
        st, _h, body = c2.read_response()
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["status"], "ok")
        self.assertTrue(c2.at_eof(2.0), "HTTP/1.0 without keep-alive not closed")

    def test_pipelined_requests_answered_in_order(self):
        ch = uniq("pipe")
        reqs = b""
        for i in range(1, 4):
            reqs += request_bytes("POST", "/api/publish", {"channel": ch, "event": "e", "data": i})
            reqs += request_bytes("GET", "/health")
        reqs += request_bytes("GET", "/nope")
        reqs += request_bytes("GET", "/api/history?channel=" + ch)
        c = self.rawhttp()
        c.send(reqs)
        for i in range(1, 4):
            st, _h, body = c.read_response()
            self.assertEqual((st, json.loads(body)["offset"]), (200, i))
            st, _h, body = c.read_response()
            self.assertEqual((st, json.loads(body)["status"]), (200, "ok"))
        st, _h, body = c.read_response()
        self.assertEqual(st, 404)
        st, _h, body = c.read_response()
        self.assertEqual(st, 200)
        self.assertEqual([e["data"] for e in json.loads(body)["events"]], [1, 2, 3])

    def test_chunked_request_body(self):
        ch = uniq("chunked")
        body = json.dumps({"channel": ch, "event": "e", "data": {"text": "chunked body"}}).encode()
        parts = [body[:7], body[7:20], body[20:]]
        c = self.rawhttp()
        c.send(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        for p in parts:
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.05)
        c.send(b"0\r\n\r\n")
        st, _h, rb = c.read_response()
        self.assertEqual(st, 200, rb)
        self.assertEqual(json.loads(rb)["offset"], 1)
        st, r = self.server.get("/api/history?channel=" + ch)
        self.assertEqual(r["events"][0]["data"], {"text": "chunked body"})

    def test_malformed_requests_get_400_and_server_keeps_serving(self):
        for raw in (b"GARBAGE\r\n\r\n", b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",
                    b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                    b"GET  HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40):
            c = RawHTTP(self.server.port)
            try:
                c.send(raw)
                try:
                    st, _h, _b = c.read_response()
                except EOFError:
                    st = None   # closing without an answer is acceptable for binary junk only
                if raw.startswith(b"\x16"):
                    self.assertIn(st, (None, 400), raw)
                else:
                    self.assertEqual(st, 400, raw)
                self.assertTrue(c.at_eof(2.0), "connection left open after a malformed request %r" % raw)
            finally:
                c.close()
            self.assertEqual(self.server.get("/health")[0], 200)

    def test_oversized_headers_refused(self):
        c = self.rawhttp()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        try:
            st, _h, _b = c.read_response()
        except EOFError:
            self.fail("connection closed without a status for oversized headers")
        self.assertIn(st, (400, 413, 431))
        self.assertEqual(self.server.get("/health")[0], 200)

    def test_slow_partial_requests_do_not_block_others(self):
        slow = []
        try:
            for i in range(20):
                s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
                slow.append(s)
                if i % 2:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                else:
                    s.sendall(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"chan")
            for _ in range(20):
                t0 = time.monotonic()
                st, _ = self.server.get("/health", timeout=2.0)
                self.assertEqual(st, 200)
                self.assertLess(time.monotonic() - t0, 1.0)
            c = self.ws()
            self.assertEqual(c.request({"type": "ping"})["type"], "pong")
            for s in slow:   # trickle one more byte each: still nothing blocks
                s.sendall(b"a")
            self.assertEqual(self.server.get("/health", timeout=2.0)[0], 200)
        finally:
            for s in slow:
                s.close()


    def test_content_length_with_transfer_encoding_is_400(self):
        body = b'{"channel":"smuggle","event":"e","data":1}'
        for head in (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body),
                     b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body) + 5)):
            c = RawHTTP(self.server.port)
            try:
                c.send(b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)
                st, _h, _b = c.read_response()
                self.assertEqual(st, 400, head)
            finally:
                c.close()
        self.assertEqual(self.server.get("/api/history?channel=smuggle")[1]["offset"], 0)

    def test_pipelined_then_malformed(self):
        ch = uniq("pipebad")
        c = self.rawhttp()
        c.send(request_bytes("POST", "/api/publish", {"channel": ch, "event": "e", "data": 1}) + b"BROKEN\r\n\r\n")
        st, _h, body = c.read_response()
        self.assertEqual((st, json.loads(body)["offset"]), (200, 1))
        st, _h, _b = c.read_response()
        self.assertEqual(st, 400)
        self.assertTrue(c.at_eof(2.0))

    def test_body_trickled_byte_by_byte(self):
        ch = uniq("trickle")
        raw = request_bytes("POST", "/api/publish", {"channel": ch, "event": "e", "data": {"slow": True}})
        c = self.rawhttp()
        for i in range(len(raw)):
            c.send(raw[i:i + 1])
        st, _h, body = c.read_response()
        self.assertEqual((st, json.loads(body)["offset"]), (200, 1))

    def test_many_concurrent_keep_alive_connections(self):
        conns = [self.rawhttp() for _ in range(200)]
        for c in conns:
            c.send(request_bytes("GET", "/health"))
        for c in conns:
            self.assertEqual(c.read_response()[0], 200)
        for c in conns[::7]:
            c.send(request_bytes("GET", "/stats"))
            self.assertEqual(c.read_response()[0], 200)

    def test_too_many_headers_and_long_target(self):
        c = self.rawhttp()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n")
        self.assertIn(c.read_response()[0], (400, 431))
        c = self.rawhttp()
        c.send(b"GET /api/history?channel=" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(c.read_response()[0], (400, 414, 431))
        self.assertEqual(self.server.get("/health")[0], 200)

    def test_query_strings_are_percent_decoded(self):
        ch = uniq("café:ü")
        self.server.publish_ok(ch, "e", 1)
        st, r = self.server.get("/api/history?since=0&channel=" + urllib.parse.quote(ch, safe=""))
        self.assertEqual(st, 200, r)
        self.assertEqual(r["offset"], 1)
        st, r = self.server.get("/api/history?channel=a%20b")
        assert_error_json(self, st, r, 400)
        st, r = http("POST", self.server.url("/api/publish?source=test"), body={"channel": ch, "event": "e", "data": 2})
        self.assertEqual((st, r.get("offset")), (200, 2))

    def test_hostile_json_bodies(self):
        ch = uniq("hostile")
        for raw in (b'{"channel":"%s","event":"e","data":1}xyz' % ch.encode(),
                    b'{"channel":"%s","event":"e","data":"\xff\xfe"}' % ch.encode(),
                    b'{"channel":"%s","event":"e","data":"\\ud800"}' % ch.encode()):
            st, r = http("POST", self.server.url("/api/publish"), raw_body=raw,
                         headers={"Content-Type": "application/json"})
            assert_error_json(self, st, r, 400)
        deep = b'{"channel":"%s","event":"e","data":' % ch.encode() + b"[" * 1900 + b"]" * 1900 + b"}"
        st, r = http("POST", self.server.url("/api/publish"), raw_body=deep,
                     headers={"Content-Type": "application/json"})
        self.assertIn(st, (200, 400), r)
        self.assertEqual(self.server.get("/health")[0], 200)


class ApiKeys(ServerCase):
    CONFIG = {"api_keys": ["key-one", "key-two"], "channels": OPEN_RULES}

    def test_missing_key_is_401(self):
        for path, body in (("/api/publish", {"channel": "jobs", "event": "e", "data": {}}),
                           ("/api/broadcast", {"channels": ["jobs"], "event": "e", "data": {}}),
                           ("/broadcast", {"type": "e", "data": {}, "channel": "jobs"})):
            st, r = self.server.post(path, body)
            assert_error_json(self, st, r, 401)

    def test_bearer_key_works(self):
        st, r = self.server.publish("jobs", "e", {}, headers={"Authorization": "Bearer key-one"})
        self.assertEqual(st, 200, r)
        self.assertIs(r["success"], True)

    def test_x_api_key_works(self):
        st, r = self.server.publish("jobs", "e", {}, headers={"X-API-Key": "key-two"})
        self.assertEqual(st, 200, r)
        st, r = self.server.post("/broadcast", {"type": "e", "data": {}, "channel": "jobs"},
                                 headers={"X-API-Key": "key-one"})
        self.assertEqual((st, r), (200, {"success": True}))

    def test_wrong_key_is_401(self):
        for h in ({"Authorization": "Bearer key-three"}, {"X-API-Key": "key-on"}, {"X-API-Key": "key-one2"},
                  {"Authorization": "Basic a2V5LW9uZTo="}, {"Authorization": "Bearer "},
                  {"Authorization": "key-one"}):
            st, r = self.server.publish("jobs", "e", {}, headers=h)
            assert_error_json(self, st, r, 401)

    def test_key_opens_api_behind_a_proxy(self):
        st, r = self.server.publish("jobs", "e", {}, headers={"X-API-Key": "key-one",
                                                              "X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(st, 200, r)

    def test_very_deep_json_is_400_not_a_crash(self):
        deep = b'{"channel":"jobs","event":"e","data":' + b"[" * 200000 + b"]" * 200000 + b"}"
        st, r = http("POST", self.server.url("/api/publish"), raw_body=deep,
                     headers={"Content-Type": "application/json", "X-API-Key": "key-one"}, timeout=10)
        assert_error_json(self, st, r, 400)
        self.assertEqual(self.server.get("/health")[0], 200)

    def test_public_endpoints_need_no_key(self):
        for path in ("/health", "/stats", "/metrics"):
            self.assertEqual(self.server.get(path)[0], 200, path)


if __name__ == "__main__":
    run()
