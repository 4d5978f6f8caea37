"""harness: starts herald for end-to-end tests and talks to it.

Herald            one server process on a free 127.0.0.1 port, with a temporary data
                  dir and a generated JSON config; stop() sends SIGTERM and asserts
                  exit status 0 (a sanitizer report makes it non-zero).
http / publish    HTTP requests through urllib (no proxies), returning status + JSON.
RawHTTP           a raw TCP client for keep-alive, pipelining and malformed input.
RawWS             a raw RFC 6455 client: any opcode, RSV bits, masking, fragmentation.
run               a unittest runner that prints PASS/FAIL lines and the final
                  "RESULT passed=N failed=M" line the test runner greps for.

Every wait is bounded; only processes started here are ever signalled.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
import urllib.error
import urllib.request

HERALD_BIN = os.environ.get("HERALD_BIN", "/work/main/build/test/herald")
HOST = "127.0.0.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_MS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
CONTROL_TYPES = ("connected", "subscribed", "unsubscribed", "published", "history", "pong", "error")


def free_port():
    """A port that was free a moment ago (bind port 0 and read it back)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def wait_until(pred, timeout=5.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value; returns it. Fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


class Herald:
    """One herald process. config: dict merged over a small base config."""

    BASE_CONFIG = {"shutdown_timeout_s": 5}

    def __init__(self, config=None, extra_args=None, env=None, name="herald", port=None, data_dir=None):
        self.config = deep_merge(self.BASE_CONFIG, config or {})
        self.fixed_port = port          # reuse a port (a restart); None: a free one
        self.fixed_data_dir = data_dir  # reuse a data dir (a restart); None: a new one
        self.extra_args = list(extra_args or [])
        self.env_over = dict(env or {})
        self.name = name
        self.proc = None
        self.port = None
        self.dir = None
        self.log_path = None
        self._log = None

    # -- lifecycle -------------------------------------------------------------
    def start(self, ready_timeout=15.0):
        if not os.access(HERALD_BIN, os.X_OK):
            raise AssertionError("herald binary not found or not executable: %s" % HERALD_BIN)
        self.dir = tempfile.mkdtemp(prefix="herald-e2e-")
        self.data_dir = self.fixed_data_dir or os.path.join(self.dir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)
        self.log_path = os.path.join(self.dir, "herald.log")
        last_err = None
        for _attempt in range(1 if self.fixed_port else 3):   # a port taken meanwhile: try another
            self.port = self.fixed_port or free_port()
            try:
                self._spawn(ready_timeout)
                return self
            except _PortRace as e:
                last_err = e
        raise AssertionError("herald did not start: %s" % last_err)

    def _spawn(self, ready_timeout):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.update(self.env_over)
        for k in ("HERALD_LISTEN", "HERALD_API_KEY", "HERALD_DATA_DIR", "HERALD_REDIS_URL",
                  "HERALD_JWT_SECRET", "HERALD_ALLOWED_ORIGINS"):
            if k not in self.env_over:
                env.pop(k, None)
        self._log = open(self.log_path, "ab")
        args = [HERALD_BIN, "serve", "--config", self.config_path,
                "--listen", "%s:%d" % (HOST, self.port), "--data-dir", self.data_dir] + self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._log.close()
                tail = self.log_tail()
                if "in use" in tail.lower():
                    raise _PortRace(tail)
                raise AssertionError("herald exited with %d during start\n%s" % (rc, tail))
            try:
                st, _ = http("GET", self.url("/health"), timeout=1.0)
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError("herald did not answer /health 200 within %.0fs\n%s"
                             % (ready_timeout, self.log_tail()))

    def stop(self, expect_status=0, keep_data=False):
        """SIGTERM, wait up to shutdown_timeout_s + 5 s, assert the exit status."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        limit = float(self.config.get("shutdown_timeout_s", 10)) + 5.0
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()   # our own child, by its Popen handle (its PID)
            proc.wait(timeout=5)
            self._close_log()
            raise AssertionError("herald did not exit within %.0fs of SIGTERM; killed\n%s"
                                 % (limit, self.log_tail()))
        self._close_log()
        if rc != expect_status:
            raise AssertionError("herald exited with status %d (expected %d)\n%s"
                                 % (rc, expect_status, self.log_tail()))
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.fixed_data_dir is None and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self._close_log()

    def _close_log(self):
        if self._log is not None and not self._log.closed:
            self._log.close()

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no log)"
        text = data.decode("utf-8", "replace").splitlines()
        return "--- herald log tail (%s) ---\n%s" % (self.log_path, "\n".join(text[-lines:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- conveniences ----------------------------------------------------------
    def url(self, path):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def ws_url(self, path="/ws"):
        return "ws://%s:%d%s" % (HOST, self.port, path)

    def get(self, path, headers=None, timeout=5.0):
        return http("GET", self.url(path), headers=headers, timeout=timeout)

    def post(self, path, body, headers=None, timeout=5.0):
        return http("POST", self.url(path), body=body, headers=headers, timeout=timeout)

    def publish(self, channel, event, data=None, headers=None, **extra):
        body = {"channel": channel, "event": event, "data": data}
        body.update(extra)
        return self.post("/api/publish", body, headers=headers)

    def publish_ok(self, channel, event, data=None, **extra):
        st, body = self.publish(channel, event, data, **extra)
        assert st == 200, "publish %s/%s: status %d %r" % (channel, event, st, body)
        return body

    def stats(self):
        st, body = self.get("/stats")
        assert st == 200, "GET /stats: %d %r" % (st, body)
        return body

    def subscribers(self, channel):
        return self.stats().get("connections", {}).get("by_channel", {}).get(channel, 0)

    def wait_subscribers(self, channel, n, timeout=5.0):
        return wait_until(lambda: self.subscribers(channel) == n, timeout,
                          what="%d subscribers on %s" % (n, channel))

    def ws(self, path="/ws", headers=None, timeout=5.0, read_connected=True):
        """An upgraded RawWS; with read_connected the `connected` message is read."""
        c = RawWS(self.port, path=path, headers=headers, timeout=timeout)
        if c.status != 101:
            raise AssertionError("upgrade of %s answered %d: %r" % (path, c.status, c.body))
        if read_connected:
            c.connected = c.recv_json()
            assert c.connected.get("type") == "connected", c.connected
        return c


class _PortRace(Exception):
    pass


# -- HTTP ----------------------------------------------------------------------
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, headers=None, timeout=5.0, raw_body=None):
    """Returns (status, parsed JSON or text). body: JSON-encoded; raw_body: bytes as is."""
    st, data, _h = http_full(method, url, body=body, headers=headers, timeout=timeout, raw_body=raw_body)
    return st, data


def http_full(method, url, body=None, headers=None, timeout=5.0, raw_body=None):
    """Returns (status, parsed JSON or text, headers)."""
    hdrs = dict(headers or {})
    data = None
    if raw_body is not None:
        data = raw_body
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _opener.open(req, timeout=timeout) as r:
            st, raw, rh = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        st, raw, rh = e.code, e.read(), e.headers
    return st, _decode(raw, rh.get("Content-Type", "")), rh


def _decode(raw, ctype):
    text = raw.decode("utf-8", "replace")
    if "json" in ctype or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def assert_error_json(tc, status, body, want_status, code=None):
    tc.assertEqual(status, want_status, "body: %r" % (body,))
    tc.assertIsInstance(body, dict, "error body is not a JSON object: %r" % (body,))
    tc.assertIsInstance(body.get("error"), str, body)
    tc.assertIsInstance(body.get("message"), str, body)
    if code is not None:
        tc.assertEqual(body["error"], code, body)


class RawHTTP:
    """A raw HTTP/1.1 connection: send any bytes, read responses one at a time."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response timed out")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self, timeout=None, head_only=False):
        """Returns (status, headers{lower: value}, body bytes)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        if head_only or status in (101, 204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
            return status, headers, body
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body
        # no length: the body runs to the end of the connection
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def at_eof(self, timeout=2.0):
        """True when the server closed the connection within timeout (pending bytes ignored)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                return True
            except (socket.timeout, TimeoutError):
                return False


def request_bytes(method, path, body=None, headers=None, host="127.0.0.1"):
    hdrs = {"Host": host}
    hdrs.update(headers or {})
    raw = b""
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
        hdrs["Content-Length"] = str(len(raw))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    return head.encode() + raw


# -- WebSocket -----------------------------------------------------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, mask_key=None):
    """A client frame. rsv: 3-bit value (4=RSV1, 2=RSV2, 1=RSV3). length overrides the
    encoded payload length (for lying headers)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class WSClosed(Exception):
    """The TCP connection ended (EOF or reset) without a close frame being read."""


class RawWS:
    """A raw client. status/headers/body come from the handshake response; when the
    status is 101 the socket carries frames."""

    def __init__(self, port, path="/ws", headers=None, timeout=5.0, version="13", key=None,
                 omit=(), rcvbuf=None, request=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        if request is None:
            hdrs = {"Host": "%s:%d" % (HOST, port), "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": self.key, "Sec-WebSocket-Version": version}
            for k in omit:
                hdrs.pop(k, None)
            hdrs.update(headers or {})
            request = ("GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in hdrs.items())
                       + "\r\n").encode()
        self.sock.sendall(request)
        rh = RawHTTP.__new__(RawHTTP)
        rh.sock, rh.timeout, rh.buf = self.sock, timeout, b""
        try:
            self.status, self.headers, self.body = rh.read_response(head_only=False)
        except EOFError:
            self.status, self.headers, self.body = 0, {}, b""
        self.buf = rh.buf
        self.closed = False
        self.connected = None
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((self.key + WS_GUID).encode()).digest()).decode()
            got = self.headers.get("sec-websocket-accept")
            if got != want:
                raise AssertionError("Sec-WebSocket-Accept %r, expected %r" % (got, want))
            if self.headers.get("upgrade", "").lower() != "websocket":
                raise AssertionError("101 without Upgrade: websocket: %r" % self.headers)

    # -- sending ----------------------------------------------------------------
    def send_raw(self, data, bytewise=False, chunk=None):
        if bytewise:
            chunk = 1
        if chunk:
            for i in range(0, len(data), chunk):
                self.sock.sendall(data[i:i + chunk])
        else:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        bytewise = kw.pop("bytewise", False)
        self.send_raw(encode_frame(opcode, payload, **kw), bytewise=bytewise)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text, **kw)

    def send_json(self, obj, **kw):
        self.send_text(json.dumps(obj), **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    # -- receiving --------------------------------------------------------------
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no frame within the timeout")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        except (socket.timeout, TimeoutError):
            raise socket.timeout("no frame within the timeout")
        if not chunk:
            self.closed = True
            raise WSClosed("connection closed by the server")
        self.buf += chunk

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)

    def recv_frame(self, timeout=None):
        """Returns (fin, rsv, opcode, payload). Raises socket.timeout or WSClosed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
            if n < 126:
                raise AssertionError("server frame length %d not in its shortest form (16-bit)" % n)
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
            if n < 65536 or n >> 63:
                raise AssertionError("server frame length %d not in its shortest form (64-bit)" % n)
        op = b0 & 0xF
        if op >= 8 and (n > 125 or not b0 & 0x80):
            raise AssertionError("server control frame op=%d len=%d fin=%d" % (op, n, b0 >> 7))
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload

    def recv_message(self, timeout=None, answer_pings=True, skip_pings=True):
        """Next data message or close: returns (opcode, payload). Control frames other
        than close are answered/skipped as asked. Fragmented messages are joined."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parts, first_op = [], None
        while True:
            fin, rsv, op, payload = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if rsv:
                raise AssertionError("server frame with RSV bits %d" % rsv)
            if op == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, payload)
                if skip_pings:
                    continue
                return op, payload
            if op == OP_PONG:
                if skip_pings:
                    continue
                return op, payload
            if op == OP_CLOSE:
                return op, payload
            if op == OP_CONT:
                if first_op is None:
                    raise AssertionError("server sent a continuation without a start")
                parts.append(payload)
            else:
                if first_op is not None:
                    raise AssertionError("server started a message inside another")
                first_op = op
                parts = [payload]
            if fin:
                return first_op, b"".join(parts)

    def recv_json(self, timeout=None):
        op, payload = self.recv_message(timeout)
        if op == OP_CLOSE:
            code, reason = parse_close(payload)
            raise AssertionError("expected a message, got close %s %r" % (code, reason))
        if op != OP_TEXT:
            raise AssertionError("expected a text frame, got opcode %d" % op)
        return json.loads(payload.decode("utf-8"))

    def recv_until(self, pred, timeout=None, limit=10000):
        """Reads JSON messages until pred(msg); returns (msg, skipped list)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped = []
        for _ in range(limit):
            msg = self.recv_json(max(0.001, deadline - time.monotonic()))
            if pred(msg):
                return msg, skipped
            skipped.append(msg)
        raise AssertionError("no matching message in %d messages" % limit)

    def request(self, obj, timeout=None):
        """Sends obj and returns the first control reply (skipping events)."""
        self.send_json(obj)
        msg, _ = self.recv_until(lambda m: m.get("type") in CONTROL_TYPES and "offset" not in m, timeout)
        return msg

    def subscribe(self, *channels, **extra):
        msg = {"type": "subscribe", "channels": list(channels)}
        msg.update(extra)
        reply = self.request(msg)
        if reply.get("type") != "subscribed":
            raise AssertionError("subscribe %r answered %r" % (channels, reply))
        return reply

    def no_message(self, within=0.5):
        """Asserts no data message arrives within `within` seconds; returns True."""
        try:
            op, payload = self.recv_message(within)
        except (socket.timeout, TimeoutError):
            return True
        raise AssertionError("unexpected frame op=%d %r" % (op, payload[:200]))

    def expect_close(self, code=None, timeout=None, reply=True):
        """Reads until a close frame, asserts its code (None: any), answers it and
        waits for the TCP close. Returns (code, reason). Other frames are skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = []
        while True:
            try:
                op, payload = self.recv_message(max(0.001, deadline - time.monotonic()))
            except WSClosed:
                raise AssertionError("TCP closed without a close frame (expected close %s); before it: %r"
                                     % (code, seen[-3:]))
            except (socket.timeout, TimeoutError):
                raise AssertionError("no close frame within the timeout (expected close %s); got: %r"
                                     % (code, seen[-3:]))
            if op == OP_CLOSE:
                break
            seen.append(payload[:200])
        got, reason = parse_close(payload)
        if code is not None and got != code:
            raise AssertionError("close code %s (reason %r), expected %s" % (got, reason, code))
        if reply:
            try:
                self.send_frame(OP_CLOSE, payload[:2])
            except OSError:
                pass
        if not self.wait_eof(max(0.5, deadline - time.monotonic())):
            raise AssertionError("server did not close the TCP connection after the close frame")
        return got, reason

    def wait_eof(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
                self.buf = b""
            except WSClosed:
                return True
            except (socket.timeout, TimeoutError):
                return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_close(payload):
    if len(payload) == 0:
        return None, b""
    if len(payload) == 1:
        raise AssertionError("server close frame with a 1-byte payload")
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def ws_alive(server, tc=None):
    """A fresh connection gets `connected` and answers ping: the server still serves."""
    c = server.ws()
    try:
        r = c.request({"type": "ping", "id": "alive"})
        assert r.get("type") == "pong" and r.get("id") == "alive", r
    finally:
        c.close()
    return True


class Collector(threading.Thread):
    """Reads a RawWS in the background, answering pings, keeping every JSON message."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws = ws
        self.msgs = []
        self.close_code = None
        self.error = None
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self._halt.is_set():
            try:
                op, payload = self.ws.recv_message(0.2)
            except (socket.timeout, TimeoutError):
                continue
            except Exception as e:   # noqa: BLE001 - reported by the test
                self.error = e
                return
            if op == OP_CLOSE:
                self.close_code = parse_close(payload)[0]
                return
            with self.lock:
                self.msgs.append(json.loads(payload))

    def events(self, channel=None):
        with self.lock:
            return [m for m in self.msgs if "offset" in m and (channel is None or m.get("channel") == channel)]

    def stop(self):
        self._halt.set()
        self.join(timeout=3)


# -- runner --------------------------------------------------------------------
class _Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.passed = 0
        self.failed_ids = set()   # a test failing in its body and its tearDown counts once
        self._t0 = {}

    def startTest(self, test):
        super().startTest(test)
        self._t0[test.id()] = time.monotonic()
        sys.stdout.flush()

    def _dt(self, test):
        return time.monotonic() - self._t0.get(test.id(), time.monotonic())

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        print("PASS %s (%.2fs)" % (test.id(), self._dt(test)), flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed_ids.add(test.id())
        print("FAIL %s (%.2fs)\n%s" % (test.id(), self._dt(test), self._exc_info_to_string(err, test)), flush=True)

    def addError(self, test, err):
        super().addError(test, err)
        self.failed_ids.add(test.id())
        print("FAIL %s (error)\n%s" % (test.id(), self._exc_info_to_string(err, test)), flush=True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("SKIP %s: %s" % (test.id(), reason), flush=True)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_ids.add(test.id())
        print("FAIL %s (unexpected success)" % test.id(), flush=True)


def run(module_name="__main__"):
    """Runs the module's tests (or those named on the command line, e.g.
    `python3 test_x.py HttpApi.test_health`) and exits with the RESULT line."""
    loader = unittest.TestLoader()
    module = sys.modules[module_name]
    names = sys.argv[1:]
    if names:
        suite = loader.loadTestsFromNames(names, module)
    else:
        suite = loader.loadTestsFromModule(module)
    result = _Result()
    t0 = time.monotonic()
    try:
        suite.run(result)
    except Exception:   # noqa: BLE001 - a crash in the runner still prints RESULT
        traceback.print_exc()
        result.failed_ids.add("runner crashed")
    failed = len(result.failed_ids)
    print("ran in %.1fs" % (time.monotonic() - t0))
    print("RESULT passed=%d failed=%d" % (result.passed, failed), flush=True)
    # the runner greps the last line starting with RESULT; keep it last and exact
    sys.exit(1 if failed else 0)


class ServerCase(unittest.TestCase):
    """A TestCase class with one herald for all its tests: CONFIG is merged into the
    base config; tearDownClass asserts a clean exit (status 0, no sanitizer report)."""

    CONFIG = {}
    ARGS = []
    ENV = {}
    server = None
    last_test = None

    @classmethod
    def setUpClass(cls):
        cls.server = Herald(cls.CONFIG, cls.ARGS, cls.ENV, name=cls.__name__).start()

    @classmethod
    def tearDownClass(cls):
        s, cls.server = cls.server, None
        if s is not None:
            s.stop()

    def setUp(self):
        self._socks = []
        if not self.server.alive():
            # it died after the previous test had finished: count it here, restart it
            rc = self.server.proc.returncode if self.server.proc is not None else None
            tail = self.server.log_tail(80)
            self.server.kill()
            type(self).server = Herald(self.CONFIG, self.ARGS, self.ENV, name=type(self).__name__).start()
            self.fail("herald died after the previous test %s (exit status %s)\n%s"
                      % (ServerCase.last_test, rc, tail))
        ServerCase.last_test = self.id()
        self.settle()

    def settle(self, timeout=3.0):
        """Waits until the previous test's connections are gone, so counts start clean."""
        deadline = time.monotonic() + timeout
        n = None
        while time.monotonic() < deadline:
            try:
                st, body = self.server.get("/health", timeout=2.0)
                n = body.get("connections") if st == 200 and isinstance(body, dict) else None
            except OSError:
                n = None
            if n == 0:
                return
            time.sleep(0.05)
        print("note: %s starts with /health connections=%r" % (self.id(), n), flush=True)

    def tearDown(self):
        for c in self._socks:
            c.close()
        s = self.server
        if s is not None and s.proc is not None and s.proc.poll() is not None:
            # the server died during this test: fail it, and give the next tests a new one
            rc = s.proc.returncode
            tail = s.log_tail(80)
            s.kill()
            type(self).server = Herald(self.CONFIG, self.ARGS, self.ENV, name=type(self).__name__).start()
            self.fail("herald died during this test (exit status %s)\n%s" % (rc, tail))

    def track(self, c):
        self._socks.append(c)
        return c

    def ws(self, **kw):
        return self.track(self.server.ws(**kw))

    def raw(self, **kw):
        return self.track(RawWS(self.server.port, **kw))

    def rawhttp(self, **kw):
        return self.track(RawHTTP(self.server.port, **kw))


def uniq(prefix):
    """A channel name no other test uses."""
    uniq.n += 1
    return "%s-%d-%d" % (prefix, os.getpid(), uniq.n)


uniq.n = 0
