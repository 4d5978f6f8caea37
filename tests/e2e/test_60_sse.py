"""End-to-end: Server-Sent Events at GET /events (SPEC sections 2, 9.12, 9.14),
through a raw socket client that parses the stream as an EventSource does:
headers, the first `id:` block, event blocks (id/event/data), Last-Event-ID
recovery across several channels, percent-encoded positions, `$all` events,
errors, limits, observability, slow readers and shutdown."""
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, ISO_MS_RE, UUID4_RE, Herald, ServerCase, run, uniq,  # noqa: E402
                     wait_until)

ALLOWED_ORIGIN = "http://app.example"
MAX_CHANNELS = 4
ENVELOPE_KEYS = {"type", "channel", "data", "id", "offset", "timestamp"}
# a percent-encoded position name: unreserved characters and ':' as is, the rest %XX
ENCODED_NAME_RE = re.compile(r"^(?:[A-Za-z0-9\-._~:]|%[0-9A-F]{2})+$")


# -- an SSE client ---------------------------------------------------------------
class SSE:
    """One GET /events over a raw socket. status/headers come from the response
    head; for a refusal, body is the parsed JSON. next_block() returns the next
    block of the stream (the lines up to a blank line) as a dict
    {"fields": [(name, value), ...], "comments": [...]}; last_id follows the
    EventSource rule (a dispatched block with an id field sets it)."""

    def __init__(self, port, query, headers=None, timeout=5.0, method="GET", rcvbuf=None, last_id=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.timeout = timeout
        hdrs = {"Host": "%s:%d" % (HOST, port), "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_id is not None:
            hdrs["Last-Event-ID"] = last_id
        hdrs.update(headers or {})
        req = "%s /events%s HTTP/1.1\r\n" % (method, query) + "".join("%s: %s\r\n" % kv for kv in hdrs.items())
        self.sock.sendall((req + "\r\n").encode("utf-8"))
        self.buf = b""
        self.eof = False
        self.last_id = ""
        self.status, self.headers, self.body = self._read_head()

    # -- low level -------------------------------------------------------------
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no data within the timeout")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        except (socket.timeout, TimeoutError):
            raise socket.timeout("no data within the timeout")
        if not chunk:
            self.eof = True
            raise EOFError("stream closed by the server")
        self.buf += chunk

    def _read_head(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.1 (\d{3}) ", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            assert k.strip().lower() not in headers, "header %s twice" % k
            headers[k.strip().lower()] = v.strip()
        status = int(m.group(1))
        body = None
        if status != 200:
            n = int(headers.get("content-length", "-1"))
            assert n >= 0, "a refusal without Content-Length: %r" % headers
            while len(self.buf) < n:
                self._fill(deadline)
            raw, self.buf = self.buf[:n], self.buf[n:]
            body = json.loads(raw.decode("utf-8"))
        return status, headers, body

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line.decode("utf-8")   # the stream is UTF-8: a bad byte fails here
            self._fill(deadline)

    # -- blocks --------------------------------------------------------------------
    def next_block(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        fields, comments = [], []
        while True:
            line = self._line(deadline)
            if line == "":
                if not fields and not comments:
                    continue   # a stray blank line dispatches nothing
                block = {"fields": fields, "comments": comments}
                ids = [v for k, v in fields if k == "id"]
                if ids:
                    self.last_id = ids[-1]
                return block
            if line.startswith(":"):
                comments.append(line[1:].lstrip(" "))
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            assert name in ("id", "event", "data", "retry"), "unknown SSE field %r in %r" % (name, line)
            fields.append((name, value))

    def next_event(self, timeout=None):
        """The next block with fields (comment-only blocks skipped), parsed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            b = self.next_block(max(0.01, deadline - time.monotonic()))
            if b["fields"]:
                return parse_event(b)

    def events(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return [self.next_event(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def first_position(self, timeout=None, strict=False):
        """The stream's first line, which must be `id: <position>`: returns it parsed.
        strict: it must be a block of its own (a blank line follows). Otherwise a
        missing blank line is let pass here, so that the tests of everything else
        do not all fail on it; test_first_block_* pins it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        line = self._line(deadline)
        assert line.startswith("id: "), "the stream does not start with an id line: %r" % line
        self.first_raw = line[4:]
        if strict:
            try:
                nxt = self._line(time.monotonic() + 1.0)
            except (socket.timeout, TimeoutError):
                raise AssertionError("no blank line within 1 s after the first line %r (got %r): an "
                                     "EventSource commits that position only with a later event" % (line, self.buf))
            assert nxt == "", "the first id line is followed by %r, not a blank line" % nxt
            self.last_id = line[4:]
            return parse_position(line[4:])
        try:
            if not self.buf:
                self._fill(time.monotonic() + 0.2)
        except (socket.timeout, TimeoutError):
            pass
        if self.buf[:1] == b"\n":
            self.buf = self.buf[1:]
            self.last_id = line[4:]
        return parse_position(line[4:])

    def no_event(self, within=0.5):
        try:
            ev = self.next_event(within)
        except (socket.timeout, TimeoutError):
            return True
        raise AssertionError("unexpected event %r" % (ev,))

    def at_eof(self, timeout=3.0):
        """True when the server ends the stream within timeout (data before it is dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
                self.buf = b""
            except EOFError:
                return True
            except (socket.timeout, TimeoutError):
                return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_position(pos):
    """'a=1&b%3Ax=2' -> {'a': 1, 'b:x': 2}, checking the encoding of every name."""
    out = {}
    assert pos, "empty position"
    for part in pos.split("&"):
        pieces = part.split("=")
        assert len(pieces) == 2, "position part %r is not name=offset (in %r)" % (part, pos)
        raw, off = pieces
        assert ENCODED_NAME_RE.match(raw), "position name %r is not percent-encoded (in %r)" % (raw, pos)
        assert re.match(r"^(0|[1-9][0-9]*)$", off), "position offset %r (in %r)" % (off, pos)
        name = urllib.parse.unquote(raw, errors="strict")
        assert name not in out, "channel %r twice in %r" % (name, pos)
        out[name] = int(off)
    return out


def parse_event(block):
    """A block as {"id": position dict or None, "raw_id", "event", "data": JSON}."""
    names = [k for k, _ in block["fields"]]
    assert names in (["id", "event", "data"], ["event", "data"]), "event block fields %r: %r" % (names, block)
    f = dict(block["fields"])
    ev = {"raw_id": f.get("id"), "id": parse_position(f["id"]) if "id" in f else None,
          "event": f["event"], "data": json.loads(f["data"])}
    return ev


def check_envelope(tc, ev, channel, event, data, ack=None):
    env = ev["data"]
    tc.assertEqual(set(env), ENVELOPE_KEYS, env)
    tc.assertEqual(ev["event"], event)
    tc.assertEqual(env["type"], event, env)
    tc.assertEqual(env["channel"], channel, env)
    tc.assertEqual(env["data"], data, env)
    tc.assertRegex(env["id"], UUID4_RE)
    tc.assertRegex(env["timestamp"], ISO_MS_RE)
    tc.assertIsInstance(env["offset"], int)
    if ack is not None:
        tc.assertEqual(env["id"], ack["id"])
        tc.assertEqual(env["offset"], ack["offset"])


def q(*channels):
    return "?" + "&".join("channel=" + urllib.parse.quote(c, safe="") for c in channels)


class SSECase(ServerCase):
    def sse(self, *channels, **kw):
        return self.track(SSE(self.server.port, q(*channels), **kw))

    def open_stream(self, *channels, **kw):
        s = self.sse(*channels, **kw)
        self.assertEqual(s.status, 200, "GET /events%s: %d %r" % (q(*channels), s.status, s.body))
        return s


class Stream(SSECase):
    CONFIG = {"allowed_origins": [ALLOWED_ORIGIN],
              "limits": {"max_channels_per_connection": MAX_CHANNELS}}

    def test_response_head_is_an_unframed_event_stream(self):
        s = self.open_stream(uniq("head"))
        self.assertTrue(s.headers.get("content-type", "").startswith("text/event-stream"), s.headers)
        self.assertNotIn("content-length", s.headers)
        self.assertNotIn("transfer-encoding", s.headers)   # the body is the raw stream, not chunked
        self.assertIn("no-cache", s.headers.get("cache-control", ""))

    def test_first_block_is_the_position_alone_then_a_blank_line(self):
        # EventSource commits an id only when its block is dispatched (blank line):
        # without it, a stream dropped before its first event reconnects with no
        # Last-Event-ID and loses what was published meanwhile.
        ch = uniq("first")
        s = self.open_stream(ch)
        self.assertEqual(s.first_position(strict=True), {ch: 0})
        self.assertEqual(s.last_id, "%s=0" % ch)

    def test_reconnect_before_any_event_recovers_what_was_missed(self):
        # What an EventSource does: it reconnects with the last id it committed.
        ch = uniq("early")
        s = self.open_stream(ch)
        self.assertEqual(s.first_position(), {ch: 0})
        last = s.last_id
        s.close()
        self.server.wait_subscribers(ch, 0)
        ack = self.server.publish_ok(ch, "while_away", 1)
        r = self.open_stream(ch, last_id=last or None)
        self.assertEqual(r.first_position(), {ch: 0},
                         "reconnected with Last-Event-ID %r: the event published meanwhile is lost" % last)
        ev = r.next_event()
        self.assertEqual(ev["data"]["id"], ack["id"])

    def test_first_position_gives_each_channel_current_offset(self):
        old, new = uniq("pos-old"), uniq("pos-new")
        for i in range(3):
            self.server.publish_ok(old, "e", {"i": i})
        s = self.open_stream(old, new)
        self.assertEqual(s.first_position(), {old: 3, new: 0})
        s.no_event(0.3)   # nothing stored is replayed without Last-Event-ID

    def test_event_block_carries_position_name_and_native_envelope(self):
        ch = uniq("fields")
        s = self.open_stream(ch)
        self.assertEqual(s.first_position(), {ch: 0})
        data = {"title": "Fix the sink", "n": 1, "nested": {"a": [1, 2, None]}, "text": "l\u00e9 \"q\"\n"}
        ack = self.server.publish_ok(ch, "job_created", data)
        ev = s.next_event()
        self.assertEqual(ev["id"], {ch: ack["offset"]})
        check_envelope(self, ev, ch, "job_created", data, ack)
        # the same envelope as /api/history (SPEC 9.1)
        st, hist = self.server.get("/api/history?channel=%s" % urllib.parse.quote(ch))
        self.assertEqual(st, 200, hist)
        self.assertEqual(hist["events"][-1], ev["data"])
        self.assertEqual(s.last_id, ev["raw_id"])

    def test_scalar_and_array_data(self):
        ch = uniq("scalar")
        s = self.open_stream(ch)
        s.first_position()
        for d in (42, "text", None, [1, "two"], True):
            self.server.publish_ok(ch, "v", d)
        got = [e["data"]["data"] for e in s.events(5)]
        self.assertEqual(got, [42, "text", None, [1, "two"], True])

    def test_position_lists_every_channel(self):
        a, b, c = uniq("multi-a"), uniq("multi-b"), uniq("multi-c")
        self.server.publish_ok(a, "pre", 1)
        self.server.publish_ok(c, "pre", 1)
        self.server.publish_ok(c, "pre", 2)
        s = self.open_stream(a, b, c)
        self.assertEqual(s.first_position(), {a: 1, b: 0, c: 2})
        self.server.publish_ok(b, "x", 1)
        self.server.publish_ok(a, "y", 2)
        self.server.publish_ok(c, "z", 3)
        evs = s.events(3)
        self.assertEqual([e["id"] for e in evs], [{a: 1, b: 1, c: 2}, {a: 2, b: 1, c: 2}, {a: 2, b: 1, c: 3}])
        self.assertEqual([(e["data"]["channel"], e["event"]) for e in evs], [(b, "x"), (a, "y"), (c, "z")])

    def test_duplicate_channel_parameter_is_one_subscription(self):
        ch = uniq("dup")
        s = self.open_stream(ch, ch)
        self.assertEqual(s.first_position(), {ch: 0})
        self.server.publish_ok(ch, "once", 1)
        ev = s.next_event()
        self.assertEqual(ev["id"], {ch: 1})
        s.no_event(0.3)

    def test_channel_names_are_percent_encoded_in_positions(self):
        tag = uniq("enc")
        chans = ["p%q-" + tag, "x&y=z-" + tag, "caf\u00e9:1-" + tag, "n:s/t?u#v+w-" + tag]
        s = self.open_stream(*chans)
        self.assertEqual(s.first_position(), {c: 0 for c in chans})
        pos = s.first_raw
        self.assertIn("caf%C3%A9:1-" + tag + "=0", pos.split("&"))
        self.assertIn("p%25q-" + tag + "=0", pos.split("&"))
        self.assertIn("x%26y%3Dz-" + tag + "=0", pos.split("&"))
        for i, c in enumerate(chans):
            self.server.publish_ok(c, "e%d" % i, {"i": i})
        evs = s.events(len(chans))
        for i, (c, ev) in enumerate(zip(chans, evs)):
            self.assertEqual(ev["data"]["channel"], c)
            self.assertEqual(ev["id"], {k: (1 if j <= i else 0) for j, k in enumerate(chans)})
        last = s.last_id
        s.close()
        # the encoded position round-trips: Last-Event-ID resumes every one of them
        self.server.publish_ok(chans[2], "missed", {"m": 1})
        self.server.publish_ok(chans[0], "missed", {"m": 0})
        r = self.open_stream(*chans, last_id=last)
        self.assertEqual(r.first_position(), {c: 1 for c in chans})
        got = r.events(2)
        self.assertEqual(sorted((e["data"]["channel"], e["data"]["offset"]) for e in got),
                         sorted([(chans[0], 2), (chans[2], 2)]))
        self.assertEqual(got[-1]["id"], {c: (2 if c in (chans[0], chans[2]) else 1) for c in chans})
        r.no_event(0.3)

    def test_last_event_id_resumes_every_channel(self):
        a, b, idle = uniq("rec-a"), uniq("rec-b"), uniq("rec-idle")
        s = self.open_stream(a, b, idle)
        self.assertEqual(s.first_position(), {a: 0, b: 0, idle: 0})
        self.server.publish_ok(a, "before", 1)
        self.server.publish_ok(b, "before", 1)
        seen = s.events(2)
        last = s.last_id
        self.assertEqual(seen[-1]["id"], {a: 1, b: 1, idle: 0})
        s.close()
        self.server.wait_subscribers(a, 0)
        acks = []
        for i in range(3):
            acks.append(self.server.publish_ok(a, "away", {"i": i}))
        for i in range(2):
            acks.append(self.server.publish_ok(b, "away", {"i": i}))
        r = self.open_stream(a, b, idle, last_id=last)
        self.assertEqual(r.first_position(), {a: 1, b: 1, idle: 0})
        missed = r.events(5)
        ids = [e["data"]["id"] for e in missed]
        self.assertEqual(len(set(ids)), 5, "duplicate among %r" % ids)
        self.assertEqual(sorted(ids), sorted(x["id"] for x in acks))
        for ch, offs in ((a, [2, 3, 4]), (b, [2, 3])):
            self.assertEqual([e["data"]["offset"] for e in missed if e["data"]["channel"] == ch], offs,
                             "channel %s out of order" % ch)
        # each event's position: its own channel at its offset, the others at what was delivered so far
        pos = {a: 1, b: 1, idle: 0}
        for e in missed:
            pos[e["data"]["channel"]] = e["data"]["offset"]
            self.assertEqual(e["id"], pos)
        r.no_event(0.3)
        ack = self.server.publish_ok(idle, "live", 1)
        ev = r.next_event()
        self.assertEqual(ev["data"]["id"], ack["id"])
        self.assertEqual(ev["id"], {a: 4, b: 3, idle: 1})
        r.no_event(0.3)

    def test_last_event_id_without_a_channel_starts_it_at_latest(self):
        a, b = uniq("part-a"), uniq("part-b")
        self.server.publish_ok(a, "x", 1)
        self.server.publish_ok(b, "x", 1)
        self.server.publish_ok(a, "x", 2)
        r = self.open_stream(a, b, last_id="%s=1" % urllib.parse.quote(a, safe=":"))
        self.assertEqual(r.first_position(), {a: 1, b: 1})
        ev = r.next_event()
        self.assertEqual((ev["data"]["channel"], ev["data"]["offset"]), (a, 2))
        self.assertEqual(ev["id"], {a: 2, b: 1})
        r.no_event(0.3)

    def test_garbage_last_event_id_is_ignored(self):
        ch = uniq("garbage")
        self.server.publish_ok(ch, "x", 1)
        for bad in ("not-a-position", "%s=-1" % ch, "%s=abc" % ch, "%s=" % ch, "=&=&&", "%ZZ=1",
                    "%s=99999999999999999999999" % ch):
            r = self.open_stream(ch, last_id=bad)
            self.assertEqual(r.first_position(), {ch: 1}, "Last-Event-ID %r" % bad)
            r.no_event(0.2)
            r.close()

    def test_last_event_id_ahead_of_the_channel_replays_nothing(self):
        ch = uniq("ahead")
        self.server.publish_ok(ch, "x", 1)
        r = self.open_stream(ch, last_id="%s=50" % ch)
        self.assertEqual(r.first_position(), {ch: 1})   # where the channel is, not the claim
        r.no_event(0.3)
        self.server.publish_ok(ch, "live", 2)
        ev = r.next_event()
        self.assertEqual(ev["data"]["offset"], 2)

    def test_all_channel_events_have_no_id_line(self):
        ch = uniq("glob")
        s = self.open_stream(ch)
        s.first_position()
        self.server.publish_ok(ch, "before", 1)
        before = s.next_event()
        st, body = self.server.post("/broadcast", {"type": "global", "event": "x", "payload": {"k": 1}})
        self.assertEqual((st, body), (200, {"success": True}))
        ev = s.next_event()
        self.assertIsNone(ev["raw_id"], "an $all event carries no position: %r" % (ev,))
        self.assertEqual(ev["event"], "x")
        self.assertEqual(ev["data"]["channel"], "$all")
        self.assertEqual(ev["data"]["data"], {"k": 1})
        self.assertEqual(set(ev["data"]), ENVELOPE_KEYS)
        self.assertEqual(s.last_id, before["raw_id"])   # an EventSource keeps the last position
        self.server.publish_ok(ch, "after", 2)
        self.assertEqual(s.next_event()["id"], {ch: 2})

    def test_cors_header_for_an_allowed_origin(self):
        s = self.open_stream(uniq("cors"), headers={"Origin": ALLOWED_ORIGIN})
        self.assertEqual(s.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN)
        s.first_position()

    def test_origin_not_allowed_is_403(self):
        s = self.sse(uniq("cors-bad"), headers={"Origin": "http://evil.example"})
        self.assertEqual(s.status, 403, s.body)
        self.assertEqual(s.body.get("error"), "forbidden", s.body)
        self.assertNotIn("access-control-allow-origin", s.headers)

    def test_errors(self):
        cases = [
            ("", 400, "bad_request"),
            ("?other=x", 400, "bad_request"),
            ("?channel=", 400, "bad_request"),
            (q("$all"), 400, "bad_request"),
            (q("$x"), 400, "bad_request"),
            (q("a b"), 400, "bad_request"),
            (q("tab\tch"), 400, "bad_request"),
            (q("x" * 256), 400, "bad_request"),
            (q("ok-" + uniq("e"), "$all"), 400, "bad_request"),
            (q("user:bob"), 403, "forbidden"),
            (q(uniq("e2"), "user:bob"), 403, "forbidden"),
            (q(*["many-%d" % i for i in range(MAX_CHANNELS + 1)]), 400, "too_many_channels"),
        ]
        for query, status, code in cases:
            s = self.track(SSE(self.server.port, query))
            self.assertEqual(s.status, status, "GET /events%s -> %d %r" % (query, s.status, s.body))
            self.assertTrue(s.headers.get("content-type", "").startswith("application/json"), s.headers)
            self.assertIsInstance(s.body.get("message"), str, s.body)
            self.assertEqual(s.body.get("error"), code, "GET /events%s: %r" % (query, s.body))
        # a refused stream leaves no subscriber behind
        self.assertEqual(self.server.subscribers("user:bob"), 0)
        # exactly the limit is fine
        ok = self.open_stream(*["lim-%d-%s" % (i, uniq("l")) for i in range(MAX_CHANNELS)])
        self.assertEqual(len(ok.first_position()), MAX_CHANNELS)

    def test_post_is_405(self):
        for method in ("POST", "PUT", "DELETE"):
            s = self.track(SSE(self.server.port, q("jobs"), method=method,
                               headers={"Content-Length": "0"}))
            self.assertEqual(s.status, 405, "%s /events: %r" % (method, s.body))
            self.assertEqual(s.headers.get("allow"), "GET")
            self.assertIsInstance(s.body.get("error"), str)

    def test_stats_and_metrics_count_the_stream_while_open(self):
        ch = uniq("obs")
        s = self.open_stream(ch)
        s.first_position()

        def counts():
            st = self.server.stats()
            _, metrics = self.server.get("/metrics")
            m = re.search(r'^herald_connections\{protocol="sse"\} (\d+)', metrics, re.M)
            return (st["connections"]["by_protocol"]["sse"], st["connections"]["total"],
                    st["connections"]["by_channel"].get(ch, 0), int(m.group(1)) if m else None)

        self.assertEqual(counts(), (1, 1, 1, 1))
        s.close()
        wait_until(lambda: counts() == (0, 0, 0, 0), 5.0, what="the closed stream uncounted")

    def test_keep_alive_comment_on_an_idle_stream(self):
        s = self.open_stream(uniq("idle"))
        s.first_position()
        t0 = time.monotonic()
        b = s.next_block(timeout=18.0)
        self.assertEqual(b, {"fields": [], "comments": ["keep-alive"]})
        self.assertGreater(time.monotonic() - t0, 10.0, "keep-alive too early")


JWT_SECRET = "sse-test-secret"


def make_jwt(claims, secret=JWT_SECRET):
    """An HS256 JWT."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


class Auth(SSECase):
    """The default channel rules with a JWT: user:{sub} is its owner's only."""
    CONFIG = {"auth": {"jwt": {"secret": JWT_SECRET}}}

    def token(self, sub, **extra):
        claims = {"sub": sub, "exp": int(time.time()) + 600}
        claims.update(extra)
        return make_jwt(claims)

    def test_owner_streams_own_user_channel_with_query_token(self):
        s = self.track(SSE(self.server.port, q("user:alice") + "&token=" + self.token("alice")))
        self.assertEqual(s.status, 200, s.body)
        self.assertEqual(s.first_position(), {"user:alice": 0})
        ack = self.server.publish_ok("user:alice", "balance", {"v": 1})
        ev = s.next_event()
        self.assertEqual((ev["data"]["channel"], ev["data"]["id"]), ("user:alice", ack["id"]))

    def test_owner_streams_own_user_channel_with_bearer(self):
        s = self.sse("user:carol", headers={"Authorization": "Bearer " + self.token("carol")})
        self.assertEqual(s.status, 200, s.body)
        s.first_position()

    def test_user_channel_of_another_user_is_403(self):
        s = self.track(SSE(self.server.port, q("user:bob") + "&token=" + self.token("alice")))
        self.assertEqual(s.status, 403, s.body)
        self.assertEqual(s.body.get("error"), "forbidden", s.body)

    def test_anonymous_user_channel_is_403(self):
        s = self.sse("user:alice")
        self.assertEqual(s.status, 403, s.body)
        self.assertEqual(s.body.get("error"), "forbidden", s.body)

    def test_bad_or_expired_token_is_401(self):
        for tok in (make_jwt({"sub": "alice", "exp": int(time.time()) + 600}, secret="wrong"),
                    self.token("alice", exp=int(time.time()) - 3600), "not.a.jwt"):
            s = self.track(SSE(self.server.port, q("user:alice") + "&token=" + tok))
            self.assertEqual(s.status, 401, "token %r: %r" % (tok, s.body))
            self.assertEqual(s.body.get("error"), "unauthorized", s.body)


class OldHistory(SSECase):
    """History of 3 events: a Last-Event-ID further back cannot be recovered."""
    CONFIG = {"history": {"size": 3}}

    def test_position_older_than_history_skips_to_latest(self):
        old, fresh = uniq("old"), uniq("fresh")
        s = self.open_stream(old, fresh)
        s.first_position()
        self.server.publish_ok(old, "e", 1)
        self.server.publish_ok(old, "e", 2)
        s.events(2)
        last = s.last_id
        self.assertEqual(parse_position(last), {old: 2, fresh: 0})
        s.close()
        self.server.wait_subscribers(old, 0)
        for i in range(3, 11):
            self.server.publish_ok(old, "e", i)   # offsets 3..10: only 8..10 are kept
        ack = self.server.publish_ok(fresh, "f", 1)
        r = self.open_stream(old, fresh, last_id=last)
        # old cannot be recovered: it starts at its latest; fresh is recovered
        self.assertEqual(r.first_position(), {old: 10, fresh: 0})
        ev = r.next_event()
        self.assertEqual(ev["data"]["id"], ack["id"])
        self.assertEqual(ev["id"], {old: 10, fresh: 1})
        r.no_event(0.3)
        live = self.server.publish_ok(old, "e", 11)
        ev = r.next_event()
        self.assertEqual((ev["data"]["offset"], ev["data"]["id"]), (11, live["id"]))
        self.assertEqual(ev["id"], {old: 11, fresh: 1})


class MaxConnections(SSECase):
    CONFIG = {"limits": {"max_connections": 1}}

    def test_stream_over_max_connections_is_503(self):
        first = self.open_stream(uniq("mc"))
        first.first_position()
        s = self.sse(uniq("mc2"))
        self.assertEqual(s.status, 503, s.body)
        self.assertEqual(s.body.get("error"), "unavailable", s.body)
        first.close()
        wait_until(lambda: self.server.stats()["connections"]["total"] == 0, 5.0, what="slot freed")
        again = self.open_stream(uniq("mc3"))
        again.first_position()


class IpRate(SSECase):
    CONFIG = {"limits": {"connections_per_ip_per_second": 2}}

    def test_streams_over_the_address_rate_are_429(self):
        statuses = []
        for _ in range(6):
            s = self.sse(uniq("ip"))
            statuses.append((s.status, (s.body or {}).get("error")))
        self.assertEqual(statuses[0][0], 200, statuses)
        self.assertIn((429, "rate_limited"), statuses)
        self.assertLessEqual(sum(1 for st, _ in statuses if st == 200), 4, statuses)   # at most 2 a second


class SlowReader(SSECase):
    CONFIG = {"limits": {"send_queue_bytes": 65536}}

    def test_slow_reader_is_cut_off_others_get_everything(self):
        ch = uniq("slow")
        fast = self.open_stream(ch, timeout=10.0)
        fast.first_position()
        slow = self.open_stream(ch, rcvbuf=4096)
        got, errors = [], []

        def reader():
            try:
                while True:
                    ev = fast.next_event(timeout=15.0)
                    got.append(ev["data"]["offset"])
                    if ev["event"] == "last":
                        return
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()

        def slow_count():
            _, m = self.server.get("/metrics")
            return int(re.search(r"^herald_slow_consumers_total (\d+)", m, re.M).group(1))

        before = slow_count()
        blob = "x" * 30000
        n = 0
        deadline = time.monotonic() + 40
        while n < 800 and time.monotonic() < deadline:
            self.server.publish_ok(ch, "big", {"n": n, "blob": blob})
            n += 1
            if n % 20 == 0 and slow_count() > before:
                break
        self.assertGreater(slow_count(), before, "a reader that never reads was not cut off after %d x 30 KB" % n)
        for i in range(5):
            self.server.publish_ok(ch, "more", {"i": i})
        self.server.publish_ok(ch, "last", {})
        n += 6
        t.join(timeout=30)
        self.assertFalse(t.is_alive(), "the fast reader did not finish")
        self.assertEqual(errors, [])
        self.assertEqual(got, list(range(1, n + 1)))
        wait_until(lambda: self.server.stats()["connections"]["by_protocol"]["sse"] == 1, 5.0,
                   what="only the fast stream left")
        self.assertTrue(slow.at_eof(10.0), "the slow stream was not closed")


class Shutdown(unittest.TestCase):
    def test_sigterm_ends_streams_and_exits_0(self):
        h = Herald({"shutdown_timeout_s": 5}, name="sse-shutdown").start()
        streams = []
        try:
            for i in range(3):
                s = SSE(h.port, q("down-%d" % i, "down-x"))
                self.assertEqual(s.status, 200)
                s.first_position()
                streams.append(s)
            h.publish_ok("down-x", "e", 1)
            for s in streams:
                self.assertEqual(s.next_event()["data"]["offset"], 1)
            t0 = time.monotonic()
            h.proc.send_signal(signal.SIGTERM)
            for s in streams:
                self.assertTrue(s.at_eof(8.0), "a stream stayed open after SIGTERM")
            self.assertLess(time.monotonic() - t0, 8.0)
        finally:
            for s in streams:
                s.close()
            h.stop()   # asserts exit status 0 (no sanitizer report)


if __name__ == "__main__":
    run()
