"""End-to-end: herald's security features (SPEC sections 2, 3, 5, 6, 9.5-9.9, 9.14).

JWT verification on /ws and /events (HS256/384/512, RS256, ES256; exp, nbf and
leeway, iss, aud; bad signatures, alg none, HMAC keyed with an RSA public key),
auth.anonymous false, every channel policy (owner, authenticated, claim,
access_token, deny/none) and the publish policy, auto_join and several
connections of one user, /api/disconnect by user, access tokens (CLI and API:
create, list without secrets, stored as SHA-256, revocation closing connections
with 4003), path routes in the data and envelope formats, API keys on the token
and disconnect endpoints, secrets kept out of the log, and TLS (https, wss and
SSE on one listener; plain HTTP on it fails cleanly).

Keys and certificates are generated at start with the `openssl` CLI in a
temporary directory; tokens are signed here (HMAC in Python, RSA and ECDSA with
`openssl dgst`), so malformed and hostile tokens can be built too."""
import asyncio
import atexit
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import warnings

import websockets
import websockets.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (HERALD_BIN, HOST, ISO_RE, OP_CLOSE, OP_TEXT, UUID4_RE, Herald, RawHTTP, ServerCase,  # noqa: E402
                     WSClosed, assert_error_json, encode_frame, http, parse_close, request_bytes, run, uniq,
                     wait_until)

HS_SECRET = "hs-secret-for-herald-e2e-4f1c9a7b2d"
ISSUER = "https://auth.example.test"
AUDIENCE = "herald-e2e"
TOKEN_RE = re.compile(r"^htk_[A-Za-z0-9_-]{43}$")


# -- keys and certificates ---------------------------------------------------------
def openssl(*args, data=None):
    p = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode("utf-8", "replace")))
    return p.stdout


class Keys:
    """Every key and certificate the tests use, made once in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-e2e-keys-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.rsa, self.rsa_pub = self._pair("rsa", "RSA", "rsa_keygen_bits:2048")
        self.rsa_other, _ = self._pair("rsa-other", "RSA", "rsa_keygen_bits:2048")
        self.ec, self.ec_pub = self._pair("ec", "EC", "ec_paramgen_curve:P-256")
        self.ec_other, _ = self._pair("ec-other", "EC", "ec_paramgen_curve:P-256")
        self.tls_cert = self.path("tls-cert.pem")
        self.tls_key = self.path("tls-key.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", self.tls_key, "-out", self.tls_cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _pair(self, name, algorithm, opt):
        priv, pub = self.path(name + ".pem"), self.path(name + "-pub.pem")
        openssl("genpkey", "-algorithm", algorithm, "-pkeyopt", opt, "-out", priv)
        openssl("pkey", "-in", priv, "-pubout", "-out", pub)
        return priv, pub

    def client_ssl(self):
        """A client context that trusts the self-signed certificate (and checks the name)."""
        ctx = ssl.create_default_context(cafile=self.tls_cert)
        ctx.check_hostname = True
        return ctx


KEYS = Keys()


# -- JWTs ----------------------------------------------------------------------------
def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def der_to_raw(der):
    """An ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as JWS wants it: r || s, 32 bytes each."""
    assert der[0] == 0x30, der
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02, der
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def sign(alg, key, data):
    """alg's signature of data. key: the secret (str/bytes) for HS*, a PEM file for RS256/ES256."""
    if alg in ("HS256", "HS384", "HS512"):
        if isinstance(key, str):
            key = key.encode()
        return hmac.new(key, data, {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                                    "HS512": hashlib.sha512}[alg]).digest()
    if alg == "RS256":
        return openssl("dgst", "-sha256", "-sign", key, data=data)
    if alg == "ES256":
        return der_to_raw(openssl("dgst", "-sha256", "-sign", key, data=data))
    if alg == "ES256-DER":
        return openssl("dgst", "-sha256", "-sign", key, data=data)
    if alg == "none":
        return b""
    raise ValueError(alg)


def make_jwt(claims, alg="HS256", key=HS_SECRET, header=None, sign_as=None):
    """A compact JWS. header: fields merged over {"alg","typ"} (a None value drops the
    field); sign_as: sign with another algorithm than the header names."""
    h = {"alg": alg, "typ": "JWT"}
    for k, v in (header or {}).items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    signing_input = "%s.%s" % (b64u(json.dumps(h).encode()), b64u(json.dumps(claims).encode()))
    return signing_input + "." + b64u(sign(sign_as or alg, key, signing_input.encode()))


def claims_for(sub, **extra):
    """Claims valid for the servers below that check iss and aud (others ignore them)."""
    c = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def q_token(path, token):
    return "%s%stoken=%s" % (path, "&" if "?" in path else "?", urllib.parse.quote(token, safe=""))


# -- shared test helpers -----------------------------------------------------------------
class SecCase(ServerCase):
    """Connection helpers for token checks on the native protocol and on routes."""

    def connect(self, token=None, via="query", path="/ws"):
        """An upgraded connection whose `connected` was read (fails on an error instead)."""
        headers = None
        if token is not None and via == "query":
            path = q_token(path, token)
        elif token is not None:
            headers = {"Authorization": "Bearer " + token}
        c = self.raw(path=path, headers=headers)
        self.assertEqual(c.status, 101, "upgrade of %s: %d %r" % (path, c.status, c.body))
        m = c.recv_json(timeout=3)
        self.assertEqual(m.get("type"), "connected", "token %r via %s: %r" % (token, via, m))
        c.connected = m
        return c

    def assert_unauthorized(self, token=None, via="query", path="/ws", what=None):
        """The upgrade completes, an `error` with code unauthorized arrives, then close 4001."""
        headers = None
        if token is not None and via == "query":
            path = q_token(path, token)
        elif token is not None:
            headers = {"Authorization": "Bearer " + token}
        c = self.raw(path=path, headers=headers)
        label = what or repr(token)
        self.assertEqual(c.status, 101, "%s: the upgrade must complete (browsers cannot read a 401): %d %r"
                         % (label, c.status, c.body))
        op, payload = c.recv_message(timeout=3)
        self.assertEqual(op, OP_TEXT, "%s: expected an error message before the close, got op %d %r"
                         % (label, op, payload[:200]))
        m = json.loads(payload)
        self.assertEqual(m.get("type"), "error", "%s: %r" % (label, m))
        self.assertEqual(m["data"].get("code"), "unauthorized", "%s: %r" % (label, m))
        self.assertIsInstance(m["data"].get("message"), str, m)
        self.assertNotIn("offset", m)
        c.expect_close(4001, timeout=3)
        return m

    def assert_closed_4001_alone(self, path, token=None, via="query", what=None):
        """A data route: the first frame is the close (4001), no text frame before it."""
        headers = None
        if token is not None and via == "query":
            path = q_token(path, token)
        elif token is not None:
            headers = {"Authorization": "Bearer " + token}
        c = self.raw(path=path, headers=headers)
        label = what or path
        self.assertEqual(c.status, 101, "%s: %d %r" % (label, c.status, c.body))
        try:
            op, payload = c.recv_message(timeout=3)
        except WSClosed:
            self.fail("%s: TCP closed without a close frame" % label)
        self.assertEqual(op, OP_CLOSE, "%s: a data route sends only a close code on errors, got op %d %r"
                         % (label, op, payload[:200]))
        self.assertEqual(parse_close(payload)[0], 4001, "%s: close %r" % (label, parse_close(payload)))
        return c

    def request(self, c, obj):
        return c.request(obj, timeout=3)

    def frames_after_close(self, c, code, publish):
        """Reads up to the server's close frame (not answering it, as a client that
        ignores it would), calls publish(), and returns the data frames that still
        arrive: RFC 6455 5.5.1 allows none once the close frame was sent."""
        while True:
            op, payload = c.recv_message(timeout=3)
            if op == OP_CLOSE:
                self.assertEqual(parse_close(payload)[0], code, payload)
                break
        publish()
        late = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                op, payload = c.recv_message(timeout=max(0.01, deadline - time.monotonic()))
            except (socket.timeout, TimeoutError, WSClosed):
                break
            late.append(payload[:120])
        return late

    def assert_refused(self, reply, codes, channel=None):
        self.assertEqual(reply.get("type"), "error", reply)
        self.assertIn(reply["data"].get("code"), codes, reply)
        if channel is not None:
            self.assertEqual(reply["data"].get("channel"), channel, reply)

    def next_event(self, c, channel, timeout=3):
        m, _ = c.recv_until(lambda x: "offset" in x and x.get("channel") == channel, timeout=timeout)
        return m

    def create_token(self, channels, label=None, headers=None):
        body = {"channels": channels}
        if label is not None:
            body["label"] = label
        st, r = self.server.post("/api/tokens", body, headers=headers)
        self.assertEqual(st, 201, r)
        return r

    def cli(self, *args, timeout=20):
        p = subprocess.run([HERALD_BIN] + list(args), capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env=cli_env())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def cli_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HERALD_") and k != "HERALD_BIN":
            env.pop(k)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    return env


# -- raw SSE (plain or TLS) ----------------------------------------------------------------
class Stream:
    """One GET /events over a raw socket (wrapped in TLS when ctx is given)."""

    def __init__(self, port, query, headers=None, ctx=None, timeout=5.0):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock = ctx.wrap_socket(sock, server_hostname=HOST) if ctx else sock
        hdrs = {"Host": "%s:%d" % (HOST, port), "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        self.sock.sendall(("GET /events%s HTTP/1.1\r\n" % query
                           + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n").encode())
        self.buf = b""
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.body = None
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill(deadline)
            self.body = json.loads(self.buf[:n].decode())

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no data within the timeout")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("stream closed")
        self.buf += chunk

    def next_data(self, timeout=3.0):
        """The JSON of the next `data:` line."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                self._fill(deadline)
                continue
            line, self.buf = self.buf[:i].rstrip(b"\r"), self.buf[i + 1:]
            if line.startswith(b"data:"):
                return json.loads(line[5:].strip())

    def ends_within(self, timeout):
        """True when the server ends the stream within timeout (pending data dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
                self.buf = b""
            except (EOFError, ConnectionResetError):
                return True
            except (socket.timeout, TimeoutError):
                return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def sse_query(*channels, token=None):
    q = "?" + "&".join("channel=" + urllib.parse.quote(c, safe="") for c in channels)
    if token is not None:
        q += "&token=" + urllib.parse.quote(token, safe="")
    return q


# =====================================================================================
RULES = [
    {"pattern": "user:{sub}", "subscribe": "owner"},
    {"pattern": "user:*", "subscribe": "deny"},
    {"pattern": "members:*", "subscribe": "authenticated"},
    {"pattern": "team:*", "subscribe": "claim"},
    {"pattern": "ticket:*", "subscribe": "access_token"},
    {"pattern": "vault:*", "subscribe": "deny"},
    {"pattern": "locked:*", "subscribe": "none"},
    {"pattern": "chat:*", "subscribe": "any", "publish": "authenticated"},
    {"pattern": "*", "subscribe": "any"},
]
REFUSED = ("unauthorized", "forbidden")


class Jwt(SecCase):
    """HS256/384/512 with iss, aud and a 5 s leeway, and every channel policy."""
    CONFIG = {"auth": {"jwt": {"secret": HS_SECRET, "algorithms": ["HS256", "HS384", "HS512"],
                               "issuer": ISSUER, "audience": AUDIENCE, "leeway_s": 5}},
              "channels": RULES}

    def tok(self, sub="alice", alg="HS256", **extra):
        return make_jwt(claims_for(sub, **extra), alg=alg)

    # -- token sources and algorithms ------------------------------------------------
    def test_hs256_hs384_hs512_tokens_make_sub_the_user(self):
        for alg in ("HS256", "HS384", "HS512"):
            sub = "u-" + alg.lower()
            c = self.connect(self.tok(sub, alg=alg))
            d = c.connected["data"]
            self.assertEqual(d["user"], sub, alg)
            self.assertEqual(d["channels"], ["user:" + sub], alg)
            self.assertRegex(d["connection_id"], UUID4_RE)

    def test_token_in_authorization_bearer(self):
        c = self.connect(self.tok("bearer-user"), via="header")
        self.assertEqual(c.connected["data"]["user"], "bearer-user")
        # the scheme name is case-insensitive (RFC 6750 / RFC 7235)
        c2 = self.raw(headers={"Authorization": "bearer " + self.tok("lower-bearer")})
        self.assertEqual(c2.status, 101)
        self.assertEqual(c2.recv_json(timeout=3)["data"]["user"], "lower-bearer")

    def test_no_token_is_anonymous_while_allowed(self):
        c = self.connect()
        self.assertIsNone(c.connected["data"]["user"])
        self.assertEqual(c.connected["data"]["channels"], [])

    def test_token_without_typ_header_is_accepted(self):
        c = self.connect(make_jwt(claims_for("no-typ"), header={"typ": None}))
        self.assertEqual(c.connected["data"]["user"], "no-typ")

    def test_invalid_token_in_bearer_is_4001(self):
        self.assert_unauthorized(self.tok(exp=int(time.time()) - 3600), via="header")
        self.assert_unauthorized("garbage", via="header")

    # -- time claims ---------------------------------------------------------------------
    def test_expired_token_is_4001(self):
        self.assert_unauthorized(self.tok(exp=int(time.time()) - 3600), what="expired an hour ago")

    def test_exp_leeway_boundary(self):
        now = int(time.time())
        # refused when now > exp + leeway (5 s): 3 s past exp is inside, 8 s past is out
        c = self.connect(self.tok("late-3s", exp=now - 3))
        self.assertEqual(c.connected["data"]["user"], "late-3s")
        self.assert_unauthorized(self.tok("late-8s", exp=now - 8), what="exp 8 s ago, leeway 5 s")

    def test_nbf_leeway_boundary(self):
        now = int(time.time())
        # refused when now + leeway < nbf: 2 s ahead is inside, 9 s ahead is out
        c = self.connect(self.tok("early-2s", nbf=now + 2))
        self.assertEqual(c.connected["data"]["user"], "early-2s")
        self.assert_unauthorized(self.tok("early-9s", nbf=now + 9), what="nbf 9 s ahead, leeway 5 s")
        self.assert_unauthorized(self.tok("early-1h", nbf=now + 3600), what="nbf an hour ahead")

    # -- issuer and audience -------------------------------------------------------------
    def test_wrong_or_missing_issuer_is_4001(self):
        self.assert_unauthorized(self.tok(iss="https://evil.example.test"), what="wrong iss")
        self.assert_unauthorized(self.tok(iss=ISSUER + "/"), what="iss with a trailing slash")
        self.assert_unauthorized(self.tok(iss=None), what="no iss")

    def test_audience_string_or_list(self):
        self.assertEqual(self.connect(self.tok("aud-list", aud=["other", AUDIENCE]))
                         .connected["data"]["user"], "aud-list")
        self.assert_unauthorized(self.tok(aud="other"), what="wrong aud")
        self.assert_unauthorized(self.tok(aud=["other", "more"]), what="aud list without ours")
        self.assert_unauthorized(self.tok(aud=None), what="no aud")

    # -- signatures and algorithms -------------------------------------------------------
    def test_bad_signatures_are_4001(self):
        good = self.tok("mallory")
        head, payload, sig = good.split(".")
        forged_payload = b64u(json.dumps(claims_for("admin")).encode())
        raw_sig = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        cases = {
            "payload swapped under the old signature": "%s.%s.%s" % (head, forged_payload, sig),
            "signed with another secret": make_jwt(claims_for("mallory"), key="not-the-secret"),
            "signature cut short": "%s.%s.%s" % (head, payload, sig[:-4]),
            "signature missing": "%s.%s." % (head, payload),
            "HS512 signature under an HS256 header": make_jwt(claims_for("mallory"), sign_as="HS512"),
            "signature bit flipped": "%s.%s.%s" % (head, payload, b64u(bytes([raw_sig[0] ^ 1]) + raw_sig[1:])),
        }
        for what, tok in cases.items():
            self.assert_unauthorized(tok, what=what)

    def test_alg_none_is_4001(self):
        for alg in ("none", "None", "NONE"):
            tok = make_jwt(claims_for("admin"), alg=alg, sign_as="none")
            self.assertTrue(tok.endswith("."))
            self.assert_unauthorized(tok, what="alg %s, empty signature" % alg)
        # alg none carrying a valid HMAC signature is refused too
        tok = make_jwt(claims_for("admin"), alg="none", sign_as="HS256")
        self.assert_unauthorized(tok, what="alg none with an HS256 signature")

    def test_algorithm_not_configured_is_4001(self):
        self.assert_unauthorized(make_jwt(claims_for("rs"), alg="RS256", key=KEYS.rsa), what="RS256 not configured")
        self.assert_unauthorized(make_jwt(claims_for("es"), alg="ES256", key=KEYS.ec), what="ES256 not configured")

    def test_malformed_tokens_are_4001(self):
        hdr = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())

        def signed(payload_bytes):
            si = "%s.%s" % (hdr, b64u(payload_bytes))
            return si + "." + b64u(sign("HS256", HS_SECRET, si.encode()))
        cases = {
            "one part": "abc",
            "two parts": "abc.def",
            "four parts": self.tok() + ".x",
            "payload not JSON": signed(b"not json"),
            "payload a JSON array": signed(b"[1,2]"),
            "no sub": make_jwt(claims_for(None)),
            "empty sub": make_jwt(claims_for("")),
            "numeric sub": make_jwt(claims_for(42)),
            "exp a string": make_jwt(claims_for("x", exp="tomorrow")),
            "channels claim not an array": make_jwt(claims_for("x", channels="team:red")),
            "padding in the signature": self.tok() + "=",
            "a crit header": make_jwt(claims_for("x"), header={"crit": ["exp"]}),
            "duplicate sub": signed(b'{"sub":"x","sub":"admin","iss":"%s","aud":"%s","exp":%d}'
                                    % (ISSUER.encode(), AUDIENCE.encode(), int(time.time()) + 600)),
        }
        for what, tok in cases.items():
            self.assert_unauthorized(tok, what=what)

    def test_oversized_token_is_not_silently_anonymous(self):
        # jwt.h refuses tokens over 8192 bytes as malformed; the connection must not
        # quietly become anonymous (the client would believe it is signed in)
        tok = self.tok("big", channels=["team:%04d" % i for i in range(600)])
        self.assertGreater(len(tok), 8192)
        problems = []
        c = self.raw(headers={"Authorization": "Bearer " + tok})
        self.assertIn(c.status, (101, 431), c.body)
        if c.status == 101:
            m = c.recv_json(timeout=3)
            if m.get("type") == "connected" and m["data"]["user"] != "big":
                problems.append("/ws: a %d-byte Bearer token was dropped and the connection became "
                                "anonymous instead of error + 4001: %r" % (len(tok), m))
            elif m.get("type") != "connected":
                self.assertEqual((m.get("type"), m["data"].get("code")), ("error", "unauthorized"), m)
                c.expect_close(4001, timeout=3)
        s = self.track(Stream(self.server.port, sse_query("news"), headers={"Authorization": "Bearer " + tok}))
        if s.status not in (401, 431):
            problems.append("/events: a %d-byte Bearer token gave %d (an anonymous stream), not 401"
                            % (len(tok), s.status))
        self.assertEqual(problems, [])

    # -- owner -----------------------------------------------------------------------------
    def test_owner_policy(self):
        c = self.connect(self.tok("alice"))
        r = self.request(c, {"type": "subscribe", "id": 1, "channels": ["user:alice"]})
        self.assertEqual(r["type"], "subscribed", r)
        r = self.request(c, {"type": "subscribe", "id": 2, "channels": ["user:bob"]})
        self.assert_refused(r, ("forbidden",), channel="user:bob")
        # a longer name that starts with the user's channel is not the user's
        r = self.request(c, {"type": "subscribe", "id": 3, "channels": ["user:alice:evil"]})
        self.assert_refused(r, ("forbidden",), channel="user:alice:evil")
        # nor is a channel whose name the sub is a prefix of
        c2 = self.connect(self.tok("ali"))
        r = self.request(c2, {"type": "subscribe", "id": 4, "channels": ["user:alice"]})
        self.assert_refused(r, ("forbidden",), channel="user:alice")

    def test_sub_is_matched_literally(self):
        # a sub of "*" is no wildcard
        c = self.connect(self.tok("*"))
        r = self.request(c, {"type": "subscribe", "channels": ["user:bob"]})
        self.assert_refused(r, ("forbidden",), channel="user:bob")
        # a sub with ':' still owns user:{sub} (SPEC 9.14) and is auto-joined to it
        c2 = self.connect(self.tok("eth:0xabc"))
        self.assertEqual(c2.connected["data"]["channels"], ["user:eth:0xabc"])
        ack = self.server.publish_ok("user:eth:0xabc", "balance", {"wei": "1"})
        self.assertEqual(self.next_event(c2, "user:eth:0xabc")["id"], ack["id"])
        r = self.request(c2, {"type": "subscribe", "channels": ["user:eth"]})
        self.assert_refused(r, ("forbidden",), channel="user:eth")

    # -- authenticated, claim, access_token, deny -------------------------------------------
    def test_authenticated_policy(self):
        anon = self.connect()
        r = self.request(anon, {"type": "subscribe", "channels": ["members:news"]})
        self.assert_refused(r, REFUSED, channel="members:news")
        c = self.connect(self.tok("member"))
        r = self.request(c, {"type": "subscribe", "channels": ["members:news"]})
        self.assertEqual(r["type"], "subscribed", r)

    def test_claim_policy(self):
        c = self.connect(self.tok("carol", channels=["team:red", "team:blue"]))
        r = self.request(c, {"type": "subscribe", "channels": ["team:red", "team:blue"]})
        self.assertEqual(r["type"], "subscribed", r)
        ack = self.server.publish_ok("team:red", "goal", {"n": 1})
        self.assertEqual(self.next_event(c, "team:red")["id"], ack["id"])
        r = self.request(c, {"type": "subscribe", "channels": ["team:green"]})
        self.assert_refused(r, ("forbidden",), channel="team:green")
        # all or nothing: one channel outside the claim refuses the whole request
        r = self.request(c, {"type": "subscribe", "channels": ["team:red", "team:green"]})
        self.assert_refused(r, ("forbidden",), channel="team:green")
        noclaim = self.connect(self.tok("dave"))
        r = self.request(noclaim, {"type": "subscribe", "channels": ["team:red"]})
        self.assert_refused(r, REFUSED, channel="team:red")
        anon = self.connect()
        r = self.request(anon, {"type": "subscribe", "channels": ["team:red"]})
        self.assert_refused(r, REFUSED, channel="team:red")

    def test_access_token_policy_on_ws(self):
        t = self.create_token(["ticket:42"], label="ws-test")
        c = self.connect(t["token"])
        self.assertIsNone(c.connected["data"]["user"])
        self.assertEqual(c.connected["data"]["channels"], [])
        r = self.request(c, {"type": "subscribe", "channels": ["ticket:42"]})
        self.assertEqual(r["type"], "subscribed", r)
        ack = self.server.publish_ok("ticket:42", "status", {"s": "open"})
        self.assertEqual(self.next_event(c, "ticket:42")["id"], ack["id"])
        r = self.request(c, {"type": "subscribe", "channels": ["ticket:43"]})
        self.assert_refused(r, ("forbidden",), channel="ticket:43")
        # the same token in a Bearer header
        c2 = self.connect(t["token"], via="header")
        self.assertEqual(self.request(c2, {"type": "subscribe", "channels": ["ticket:42"]})["type"], "subscribed")
        # a JWT user or an anonymous client has no token scopes
        for other in (self.connect(self.tok("erin")), self.connect()):
            r = self.request(other, {"type": "subscribe", "channels": ["ticket:42"]})
            self.assert_refused(r, REFUSED, channel="ticket:42")
        # an unknown access token is refused at connect
        self.assert_unauthorized("htk_" + "A" * 43, what="unknown access token")

    def test_deny_and_none_policies(self):
        for c in (self.connect(self.tok("frank", channels=["vault:1", "locked:1"])), self.connect()):
            for ch in ("vault:1", "locked:1"):
                r = self.request(c, {"type": "subscribe", "channels": [ch]})
                self.assert_refused(r, ("forbidden",), channel=ch)

    # -- auto_join, several connections of one user, disconnect by user ----------------------
    def test_auto_join_user_channel_receives(self):
        c = self.connect(self.tok("grace"))
        self.assertEqual(c.connected["data"]["channels"], ["user:grace"])
        self.server.wait_subscribers("user:grace", 1)
        ack = self.server.publish_ok("user:grace", "balance", {"eth": "1.5"})
        m = self.next_event(c, "user:grace")
        self.assertEqual((m["type"], m["data"], m["id"]), ("balance", {"eth": "1.5"}, ack["id"]))

    def test_two_tabs_of_one_user_and_disconnect_by_user(self):
        a1, a2 = self.connect(self.tok("heidi")), self.connect(self.tok("heidi"), via="header")
        other = self.connect(self.tok("ivan"))
        self.assertNotEqual(a1.connected["data"]["connection_id"], a2.connected["data"]["connection_id"])
        self.server.wait_subscribers("user:heidi", 2)
        ack = self.server.publish_ok("user:heidi", "notice", {"n": 1})
        for c in (a1, a2):
            self.assertEqual(self.next_event(c, "user:heidi", timeout=3)["id"], ack["id"])
        other.no_message(0.3)
        st, r = self.server.post("/api/disconnect", {"user": "heidi"})
        self.assertEqual((st, r), (200, {"success": True, "disconnected": 2}))
        for c in (a1, a2):
            c.expect_close(4003, timeout=3)
        r = self.request(other, {"type": "ping", "id": "still"})
        self.assertEqual((r["type"], r.get("id")), ("pong", "still"))
        st, r = self.server.post("/api/disconnect", {"user": "heidi"})
        self.assertEqual((st, r), (200, {"success": True, "disconnected": 0}))

    def test_no_events_after_the_disconnect_close_frame(self):
        c = self.connect(self.tok("late-reader"))
        self.server.wait_subscribers("user:late-reader", 1)
        st, r = self.server.post("/api/disconnect", {"user": "late-reader"})
        self.assertEqual((st, r), (200, {"success": True, "disconnected": 1}))
        late = self.frames_after_close(c, 4003, lambda: [
            self.server.publish_ok("user:late-reader", "dm", {"after_disconnect": i}) for i in range(3)])
        self.assertEqual(late, [], "a disconnected user's connection still received events after its close "
                                   "frame (until it answers the close or the close wait ends)")

    def test_disconnect_by_user_ends_sse_streams(self):
        s = self.track(Stream(self.server.port, sse_query("user:sse-user", token=self.tok("sse-user"))))
        self.assertEqual(s.status, 200, s.body)
        ws = self.connect(self.tok("sse-user"))
        self.server.wait_subscribers("user:sse-user", 2)
        st, r = self.server.post("/api/disconnect", {"user": "sse-user"})
        self.assertEqual((st, r), (200, {"success": True, "disconnected": 2}))
        ws.expect_close(4003, timeout=3)
        self.assertTrue(s.ends_within(3), "the SSE stream of a disconnected user stayed open")

    # -- publish policy ----------------------------------------------------------------------
    def test_publish_policy_authenticated(self):
        ch = uniq("chat:room")
        watcher = self.connect()
        self.assertEqual(self.request(watcher, {"type": "subscribe", "channels": [ch]})["type"], "subscribed")
        anon = self.connect()
        r = self.request(anon, {"type": "publish", "id": "p0", "channel": ch, "event": "msg", "data": {"t": "hi"}})
        self.assert_refused(r, REFUSED)
        watcher.no_message(0.3)
        c = self.connect(self.tok("judy"))
        r = self.request(c, {"type": "publish", "id": "p1", "channel": ch, "event": "msg", "data": {"t": "hello"}})
        self.assertEqual((r["type"], r.get("id")), ("published", "p1"), r)
        self.assertEqual(r["data"]["channel"], ch)
        m = self.next_event(watcher, ch)
        self.assertEqual((m["type"], m["data"], m["id"], m["offset"]),
                         ("msg", {"t": "hello"}, r["data"]["id"], r["data"]["offset"]))
        # a rule without `publish` means none, token or not
        r = self.request(c, {"type": "publish", "channel": uniq("news"), "event": "msg", "data": {}})
        self.assert_refused(r, ("forbidden",))

    # -- SSE ---------------------------------------------------------------------------------
    def sse(self, query, **kw):
        s = Stream(self.server.port, query, **kw)
        self.track(s)
        return s

    def test_sse_claim_policy_with_bearer(self):
        tok = self.tok("kim", channels=["team:sse"])
        s = self.sse(sse_query("team:sse"), headers={"Authorization": "Bearer " + tok})
        self.assertEqual(s.status, 200, s.body)
        ack = self.server.publish_ok("team:sse", "goal", {"k": 1})
        self.assertEqual(s.next_data()["id"], ack["id"])
        s2 = self.sse(sse_query("team:other"), headers={"Authorization": "Bearer " + tok})
        assert_error_json(self, s2.status, s2.body, 403, "forbidden")

    def test_sse_access_token_and_bad_tokens(self):
        t = self.create_token(["ticket:sse"])
        s = self.sse(sse_query("ticket:sse", token=t["token"]))
        self.assertEqual(s.status, 200, s.body)
        ack = self.server.publish_ok("ticket:sse", "status", {"s": 1})
        self.assertEqual(s.next_data()["id"], ack["id"])
        s2 = self.sse(sse_query("ticket:other", token=t["token"]))
        assert_error_json(self, s2.status, s2.body, 403, "forbidden")
        for what, tok in (("unknown access token", "htk_" + "B" * 43),
                          ("wrong issuer", self.tok(iss="https://evil.example.test")),
                          ("alg none", make_jwt(claims_for("x"), alg="none"))):
            s3 = self.sse(sse_query("news", token=tok))
            self.assertEqual(s3.status, 401, "%s: %r" % (what, s3.body))
            assert_error_json(self, s3.status, s3.body, 401, "unauthorized")


# =====================================================================================
class JwtRsa(SecCase):
    """RS256 only, with a public key file: HMAC keyed with that key is refused."""
    CONFIG = {"auth": {"jwt": {"public_key_file": KEYS.rsa_pub, "algorithms": ["RS256"]}}}

    def test_rs256_token_via_query_and_bearer(self):
        tok = make_jwt({"sub": "rsa-user", "exp": int(time.time()) + 600}, alg="RS256", key=KEYS.rsa)
        self.assertEqual(self.connect(tok).connected["data"]["user"], "rsa-user")
        self.assertEqual(self.connect(tok, via="header").connected["data"]["user"], "rsa-user")

    def test_rs256_signed_by_another_key_is_4001(self):
        self.assert_unauthorized(make_jwt({"sub": "x", "exp": int(time.time()) + 600}, alg="RS256",
                                          key=KEYS.rsa_other), what="RS256 by another key")

    def test_hs256_keyed_with_the_public_key_is_4001(self):
        with open(KEYS.rsa_pub, "rb") as f:
            pem = f.read()
        claims = {"sub": "admin", "exp": int(time.time()) + 600}
        for what, key in (("the PEM file", pem), ("the PEM without its final newline", pem.rstrip(b"\n")),
                          ("the DER key", openssl("pkey", "-pubin", "-in", KEYS.rsa_pub, "-outform", "DER"))):
            self.assert_unauthorized(make_jwt(claims, alg="HS256", key=key), what="HS256 keyed with " + what)
        # and an RS256 header over an HMAC made with the key
        self.assert_unauthorized(make_jwt(claims, alg="RS256", key=pem, sign_as="HS256"),
                                 what="RS256 header, HMAC signature")

    def test_other_algorithms_are_4001(self):
        claims = {"sub": "x", "exp": int(time.time()) + 600}
        self.assert_unauthorized(make_jwt(claims, alg="none"), what="alg none")
        self.assert_unauthorized(make_jwt(claims, alg="ES256", key=KEYS.ec), what="ES256")
        self.assert_unauthorized(make_jwt(claims, alg="HS256", key="anything"), what="HS256")


class JwtEc(SecCase):
    """ES256 with a P-256 public key: the JWS signature is r || s."""
    CONFIG = {"auth": {"jwt": {"public_key_file": KEYS.ec_pub, "algorithms": ["ES256"]}}}

    def claims(self, sub):
        return {"sub": sub, "exp": int(time.time()) + 600}

    def test_es256_token(self):
        tok = make_jwt(self.claims("ec-user"), alg="ES256", key=KEYS.ec)
        self.assertEqual(len(base64.urlsafe_b64decode(tok.split(".")[2] + "==")), 64)
        self.assertEqual(self.connect(tok).connected["data"]["user"], "ec-user")
        self.assertEqual(self.connect(tok, via="header").connected["data"]["user"], "ec-user")

    def test_bad_es256_signatures_are_4001(self):
        self.assert_unauthorized(make_jwt(self.claims("x"), alg="ES256", key=KEYS.ec_other), what="another key")
        self.assert_unauthorized(make_jwt(self.claims("x"), alg="ES256", key=KEYS.ec, sign_as="ES256-DER"),
                                 what="DER signature instead of r||s")
        good = make_jwt(self.claims("x"), alg="ES256", key=KEYS.ec)
        head, payload, sig = good.split(".")
        raw = base64.urlsafe_b64decode(sig + "==")
        self.assert_unauthorized("%s.%s.%s" % (head, payload, b64u(raw[:32] + bytes(32))), what="s = 0")
        self.assert_unauthorized("%s.%s.%s" % (head, payload, b64u(raw[:-1] + bytes([raw[-1] ^ 1]))),
                                 what="bit flipped")
        with open(KEYS.ec_pub, "rb") as f:
            self.assert_unauthorized(make_jwt(self.claims("x"), alg="HS256", key=f.read()),
                                     what="HS256 keyed with the EC public key")


class JwtMixed(SecCase):
    """HS256 and RS256 both configured: each token is checked with its own key only."""
    CONFIG = {"auth": {"jwt": {"secret": HS_SECRET, "public_key_file": KEYS.rsa_pub,
                               "algorithms": ["HS256", "RS256"]}}}

    def test_each_algorithm_with_its_key(self):
        claims = {"sub": "mixed", "exp": int(time.time()) + 600}
        self.assertEqual(self.connect(make_jwt(claims)).connected["data"]["user"], "mixed")
        self.assertEqual(self.connect(make_jwt(claims, alg="RS256", key=KEYS.rsa)).connected["data"]["user"], "mixed")

    def test_keys_do_not_cross(self):
        claims = {"sub": "admin", "exp": int(time.time()) + 600}
        with open(KEYS.rsa_pub, "rb") as f:
            pem = f.read()
        self.assert_unauthorized(make_jwt(claims, alg="HS256", key=pem), what="HS256 keyed with the public key")
        self.assert_unauthorized(make_jwt(claims, alg="RS256", key=HS_SECRET, sign_as="HS256"),
                                 what="RS256 header, HMAC with the secret")


class AnonymousOff(SecCase):
    """auth.anonymous false: every connection needs a valid token."""
    CONFIG = {"auth": {"anonymous": False, "jwt": {"secret": HS_SECRET}},
              "routes": [{"path": "/ws/feed/{room}", "channels": ["feed:{room}"], "auth": "jwt", "format": "data"}]}

    def test_ws_without_token_is_4001(self):
        self.assert_unauthorized(None, what="no token")
        self.assert_unauthorized("", what="an empty ?token=")
        c = self.raw(headers={"Authorization": "Bearer "})
        self.assertEqual(c.status, 101)
        self.assertEqual(c.recv_json(timeout=3)["data"]["code"], "unauthorized")
        c.expect_close(4001, timeout=3)

    def test_ws_with_token_connects(self):
        tok = make_jwt({"sub": "olga", "exp": int(time.time()) + 600})
        c = self.connect(tok)
        self.assertEqual(c.connected["data"]["user"], "olga")
        self.assertEqual(c.connected["data"]["channels"], ["user:olga"])

    def test_sse_without_token_is_401(self):
        s = Stream(self.server.port, sse_query("news"))
        self.track(s)
        assert_error_json(self, s.status, s.body, 401, "unauthorized")
        s2 = self.track(Stream(self.server.port, sse_query("news", token=make_jwt(
            {"sub": "olga", "exp": int(time.time()) + 600}))))
        self.assertEqual(s2.status, 200, s2.body)

    def test_jwt_route_without_token_is_4001(self):
        self.assert_closed_4001_alone("/ws/feed/lobby", what="jwt data route without a token")
        tok = make_jwt({"sub": "olga", "exp": int(time.time()) + 600})
        c = self.raw(path=q_token("/ws/feed/lobby", tok))
        self.assertEqual(c.status, 101)
        self.server.wait_subscribers("feed:lobby", 1)
        self.server.publish_ok("feed:lobby", "post", {"text": "hi"})
        self.assertEqual(c.recv_json(timeout=3), {"text": "hi"})


class UntrustedForwardedFor(SecCase):
    """No trusted_proxies: X-Forwarded-For and Forwarded cannot dodge the per-address limit."""
    CONFIG = {"limits": {"connections_per_ip_per_second": 3}}

    def test_spoofed_forwarded_headers_do_not_reset_the_limit(self):
        statuses = []
        for i in range(10):
            hdr = ({"X-Forwarded-For": "198.51.100.%d" % i} if i % 2 else
                   {"Forwarded": "for=203.0.113.%d" % i})
            statuses.append(self.raw(headers=hdr).status)
        self.assertIn(429, statuses, "spoofed forwarding headers let %r through" % statuses)
        self.assertLessEqual(statuses.count(101), 6, statuses)


# =====================================================================================
ROUTES = [
    {"path": "/ws/overlay/{creatorId}", "channels": ["creator:{creatorId}"], "auth": "access_token",
     "format": "data"},
    {"path": "/ws/live/{creatorId}", "channels": ["creator:{creatorId}"], "auth": "access_token",
     "format": "envelope"},
    {"path": "/ws/board/{room}", "channels": ["board:{room}"], "auth": "none", "format": "data"},
    {"path": "/ws/peek/{name}", "channels": ["user:{name}"], "auth": "none", "format": "data"},
    {"path": "/ws/inbox/{name}", "channels": ["user:{name}"], "auth": "jwt", "format": "envelope"},
    {"path": "/ws/duo/{a}/{b}", "channels": ["creator:{a}", "creator:{b}"], "auth": "access_token",
     "format": "data"},
]
TIP = {"type": "TIP_SENT", "creatorId": "abc", "amountEth": "0.05"}


class AccessTokens(SecCase):
    """Access tokens (CLI and API) and path routes."""
    CONFIG = {"auth": {"jwt": {"secret": HS_SECRET}}, "routes": ROUTES}

    def overlay(self, creator, token, via="query"):
        path = "/ws/overlay/" + creator
        headers = None
        if via == "query":
            path = q_token(path, token)
        else:
            headers = {"Authorization": "Bearer " + token}
        c = self.raw(path=path, headers=headers)
        self.assertEqual(c.status, 101, "%s: %d %r" % (path, c.status, c.body))
        return c

    def data_frame(self, c, timeout=3):
        op, payload = c.recv_message(timeout=timeout)
        self.assertEqual(op, OP_TEXT, "expected a data frame, got op %d %r" % (op, payload[:200]))
        return json.loads(payload)

    def db_files(self):
        return [os.path.join(self.server.data_dir, n) for n in sorted(os.listdir(self.server.data_dir))]

    # -- creating and listing --------------------------------------------------------------
    def test_cli_create_list_and_use_at_once(self):
        rc, out, err = self.cli("token", "create", "--channel", "creator:abc", "--label", "obs-cli",
                                "--data-dir", self.server.data_dir)
        self.assertEqual(rc, 0, err)
        secret = out.strip()
        self.assertEqual(out, secret + "\n", "token create prints the token alone: %r" % out)
        self.assertRegex(secret, TOKEN_RE)
        # the running server honours it at once
        c = self.overlay("abc", secret)
        self.server.wait_subscribers("creator:abc", 1)
        self.server.publish_ok("creator:abc", "TIP_SENT", TIP)
        self.assertEqual(self.data_frame(c), TIP)
        rc, out, err = self.cli("token", "list", "--data-dir", self.server.data_dir)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(secret, out + err)
        self.assertNotIn(secret[4:], out + err)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        mine = [r for r in rows if r.get("label") == "obs-cli"]
        self.assertEqual(len(mine), 1, rows)
        self.assertEqual(mine[0]["channels"], ["creator:abc"])
        self.assertRegex(mine[0]["id"], r"^[0-9A-Za-z_-]{4,32}$")
        self.assertRegex(mine[0]["created_at"], ISO_RE)
        for r in rows:
            self.assertNotIn("token", r, r)
        # the API lists the CLI's token too (one store)
        st, lst = self.server.get("/api/tokens")
        self.assertEqual(st, 200, lst)
        self.assertIn(mine[0]["id"], [t["id"] for t in lst["tokens"]])

    def test_api_create_and_list_without_secrets(self):
        t = self.create_token(["creator:api1", "creator:api2"], label="obs-api")
        self.assertEqual(set(t), {"id", "token", "channels", "label", "created_at"}, t)
        self.assertRegex(t["token"], TOKEN_RE)
        self.assertEqual(t["channels"], ["creator:api1", "creator:api2"])
        self.assertEqual(t["label"], "obs-api")
        self.assertRegex(t["created_at"], ISO_RE)
        self.assertNotIn(t["id"], t["token"])
        t2 = self.create_token(["creator:api1"])
        self.assertNotEqual((t["id"], t["token"]), (t2["id"], t2["token"]))
        with urllib.request.urlopen(self.server.url("/api/tokens"), timeout=5) as r:
            raw = r.read().decode()
        self.assertNotIn(t["token"], raw)
        self.assertNotIn(t["token"][4:], raw)
        listed = {x["id"]: x for x in json.loads(raw)["tokens"]}
        self.assertIn(t["id"], listed)
        self.assertEqual(set(listed[t["id"]]), {"id", "channels", "label", "created_at"}, listed[t["id"]])
        self.assertEqual(listed[t["id"]]["channels"], ["creator:api1", "creator:api2"])
        self.assertIsNone(listed[t2["id"]]["label"])

    def test_api_create_refuses_bad_input(self):
        for body in ({}, {"channels": []}, {"channels": "creator:abc"}, {"channels": [1]},
                     {"channels": ["creator:abc"], "label": 5}, {"channels": ["bad channel"]},
                     {"channels": ["creator:abc", "two words"]}):
            st, r = self.server.post("/api/tokens", body)
            assert_error_json(self, st, r, 400, "bad_request")
        st, r = http("DELETE", self.server.url("/api/tokens/nosuchid"))
        assert_error_json(self, st, r, 404)

    def test_tokens_are_stored_hashed(self):
        api = self.create_token(["creator:hash"], label="hash-api")["token"]
        rc, out, err = self.cli("token", "create", "--channel", "creator:hash", "--label", "hash-cli",
                                "--data-dir", self.server.data_dir)
        self.assertEqual(rc, 0, err)
        cli = out.strip()
        files = self.db_files()
        self.assertTrue(any(f.endswith(".db") or f.endswith(".sqlite") for f in files), files)
        raw = b""
        for f in files:
            if os.path.isfile(f):
                with open(f, "rb") as fh:
                    raw += fh.read()
        self.assertIn(b"hash-api", raw, "the label is not in %r: looking at the wrong files?" % files)
        # every text and blob value of every table, through SQLite (WAL included)
        values = []
        for f in files:
            if not (f.endswith(".db") or f.endswith(".sqlite")):
                continue
            db = sqlite3.connect("file:%s?mode=ro" % f, uri=True, timeout=5)
            try:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                for tbl in tables:
                    for row in db.execute('SELECT * FROM "%s"' % tbl.replace('"', '""')):
                        values.extend(v for v in row if isinstance(v, (str, bytes)))
            finally:
                db.close()
        for secret in (api, cli):
            for needle in (secret, secret[4:]):
                self.assertNotIn(needle.encode(), raw, "a token secret is in the data dir's files")
                for v in values:
                    self.assertNotIn(needle.encode() if isinstance(v, bytes) else needle, v,
                                     "a token secret is stored in the database")
            digest = hashlib.sha256(secret.encode()).digest()
            self.assertTrue(any(v in (digest, digest.hex(), digest.hex().upper()) for v in values),
                            "no SHA-256 of the token stored (SPEC 9.5)")

    # -- the data route --------------------------------------------------------------------
    def test_overlay_receives_exactly_the_data(self):
        t = self.create_token(["creator:abc"], label="obs")
        c = self.overlay("abc", t["token"])
        c.no_message(0.3)   # no `connected`, nothing before the first event
        self.server.wait_subscribers("creator:abc", 1)
        self.server.publish_ok("creator:xyz", "TIP_SENT", dict(TIP, creatorId="xyz"))
        self.server.publish_ok("creator:abc", "TIP_SENT", TIP)
        op, payload = c.recv_message(timeout=3)
        self.assertEqual(op, OP_TEXT)
        self.assertEqual(json.loads(payload), TIP)
        # client messages get no reply on a data route
        c.send_json({"type": "ping", "id": 1})
        c.send_json({"type": "subscribe", "channels": ["creator:xyz"]})
        c.no_message(0.3)
        self.server.publish_ok("creator:xyz", "TIP_SENT", dict(TIP, creatorId="xyz"))
        self.server.publish_ok("creator:abc", "other", [1, "two", None])
        self.assertEqual(self.data_frame(c), [1, "two", None])

    def test_overlay_token_in_bearer_and_pattern_scope(self):
        t = self.create_token(["creator:*"])
        c1 = self.overlay("p1", t["token"], via="header")
        c2 = self.overlay("p2", t["token"])
        self.server.wait_subscribers("creator:p2", 1)
        self.server.wait_subscribers("creator:p1", 1)
        self.server.publish_ok("creator:p1", "TIP_SENT", {"n": 1})
        self.server.publish_ok("creator:p2", "TIP_SENT", {"n": 2})
        self.assertEqual(self.data_frame(c1), {"n": 1})
        self.assertEqual(self.data_frame(c2), {"n": 2})

    def test_overlay_refusals_are_close_4001(self):
        t = self.create_token(["creator:abc"])
        self.assert_closed_4001_alone("/ws/overlay/xyz", t["token"], what="token for creator:abc on xyz")
        self.assert_closed_4001_alone("/ws/overlay/abc", "htk_" + "C" * 43, what="unknown token")
        self.assert_closed_4001_alone("/ws/overlay/abc", None, what="no token")
        self.assert_closed_4001_alone("/ws/overlay/abc", "htk_short", what="malformed token")
        jwt_tok = make_jwt({"sub": "abc", "exp": int(time.time()) + 600})
        self.assert_closed_4001_alone("/ws/overlay/abc", jwt_tok, what="a JWT on an access_token route")
        self.assert_closed_4001_alone("/ws/overlay/xyz", t["token"], via="header", what="wrong creator, Bearer")
        self.assertEqual(self.server.subscribers("creator:xyz"), 0)

    def test_token_must_cover_every_channel_of_the_route(self):
        one = self.create_token(["creator:d1"])
        self.assert_closed_4001_alone("/ws/duo/d1/d2", one["token"], what="token covering one of two channels")
        wait_until(lambda: self.server.subscribers("creator:d1") == 0, 3,
                   what="no subscription left behind by the refused connection")
        both = self.create_token(["creator:d1", "creator:d2"])
        c = self.raw(path=q_token("/ws/duo/d1/d2", both["token"]))
        self.assertEqual(c.status, 101)
        self.server.wait_subscribers("creator:d2", 1)
        self.server.publish_ok("creator:d1", "TIP_SENT", {"from": 1})
        self.server.publish_ok("creator:d2", "TIP_SENT", {"from": 2})
        self.assertEqual([self.data_frame(c), self.data_frame(c)], [{"from": 1}, {"from": 2}])

    # -- revocation --------------------------------------------------------------------------
    def test_revoke_via_api_closes_at_once(self):
        a = self.create_token(["creator:rv"], label="revoked")
        b = self.create_token(["creator:rv"], label="kept")
        a1, a2 = self.overlay("rv", a["token"]), self.overlay("rv", a["token"], via="header")
        live = self.raw(path=q_token("/ws/live/rv", a["token"]))
        self.assertEqual(live.recv_json(timeout=3)["type"], "connected")
        kept = self.overlay("rv", b["token"])
        self.server.wait_subscribers("creator:rv", 4)
        t0 = time.monotonic()
        st, r = http("DELETE", self.server.url("/api/tokens/" + a["id"]))
        self.assertEqual((st, r), (200, {"success": True}))
        for c in (a1, a2, live):
            c.expect_close(4003, timeout=1.5)
        self.assertLess(time.monotonic() - t0, 1.5, "revocation through the API must close at once")
        self.server.publish_ok("creator:rv", "TIP_SENT", {"after": True})
        self.assertEqual(self.data_frame(kept), {"after": True})
        self.assert_closed_4001_alone("/ws/overlay/rv", a["token"], what="revoked token")
        st, lst = self.server.get("/api/tokens")
        self.assertNotIn(a["id"], [x["id"] for x in lst["tokens"]])
        self.assertIn(b["id"], [x["id"] for x in lst["tokens"]])
        st, r = http("DELETE", self.server.url("/api/tokens/" + a["id"]))
        assert_error_json(self, st, r, 404)

    def test_revoke_closes_native_connections_and_sse_streams(self):
        t = self.create_token(["creator:rn"])
        native = self.connect(t["token"])
        self.assertIsNone(native.connected["data"]["user"])
        s = self.track(Stream(self.server.port, sse_query("creator:rn", token=t["token"])))
        self.assertEqual(s.status, 200, s.body)
        self.server.wait_subscribers("creator:rn", 1)
        st, r = http("DELETE", self.server.url("/api/tokens/" + t["id"]))
        self.assertEqual((st, r), (200, {"success": True}))
        native.expect_close(4003, timeout=1.5)
        self.assertTrue(s.ends_within(1.5), "an SSE stream of a revoked token stayed open")
        s2 = self.track(Stream(self.server.port, sse_query("creator:rn", token=t["token"])))
        assert_error_json(self, s2.status, s2.body, 401, "unauthorized")

    def test_no_events_after_the_revocation_close_frame(self):
        t = self.create_token(["creator:late"])
        c = self.overlay("late", t["token"])
        self.server.wait_subscribers("creator:late", 1)
        st, r = http("DELETE", self.server.url("/api/tokens/" + t["id"]))
        self.assertEqual((st, r), (200, {"success": True}))
        late = self.frames_after_close(c, 4003, lambda: [
            self.server.publish_ok("creator:late", "TIP_SENT", {"after_revoke": i}) for i in range(3)])
        self.assertEqual(late, [], "a revoked token's connection still received events after its 4003 close "
                                   "frame (a client that ignores the close keeps reading)")
        # and it no longer counts as a subscriber once refused
        self.assertEqual(self.server.subscribers("creator:late"), 0)

    def test_refused_route_connection_gets_no_events(self):
        one = self.create_token(["creator:e1"])
        c = self.raw(path=q_token("/ws/duo/e1/e2", one["token"]))
        self.assertEqual(c.status, 101)
        late = self.frames_after_close(c, 4001, lambda: [
            self.server.publish_ok("creator:e1", "TIP_SENT", {"after_refusal": i}) for i in range(3)])
        self.assertEqual(late, [], "a connection refused with 4001 still received events of the route's "
                                   "first channel after its close frame")

    def test_revoke_via_api_by_secret(self):
        t = self.create_token(["creator:rs"])
        c = self.overlay("rs", t["token"])
        self.server.wait_subscribers("creator:rs", 1)
        st, r = http("DELETE", self.server.url("/api/tokens/" + urllib.parse.quote(t["token"], safe="")))
        self.assertEqual((st, r), (200, {"success": True}))
        c.expect_close(4003, timeout=1.5)
        self.assert_closed_4001_alone("/ws/overlay/rs", t["token"], what="token revoked by its secret")

    def test_revoke_via_cli_closes_within_5s(self):
        rc, out, err = self.cli("token", "create", "--channel", "creator:cli", "--data-dir", self.server.data_dir)
        self.assertEqual(rc, 0, err)
        secret = out.strip()
        rc, out, err = self.cli("token", "list", "--data-dir", self.server.data_dir)
        ids = [json.loads(x)["id"] for x in out.splitlines()
               if x.strip() and json.loads(x)["channels"] == ["creator:cli"]]
        self.assertEqual(len(ids), 1, out)
        c = self.overlay("cli", secret)
        self.server.wait_subscribers("creator:cli", 1)
        t0 = time.monotonic()
        rc, out, err = self.cli("token", "revoke", ids[0], "--data-dir", self.server.data_dir)
        self.assertEqual(rc, 0, err)
        c.expect_close(4003, timeout=6)
        self.assertLess(time.monotonic() - t0, 5.5, "a CLI revocation must close within 5 s")
        self.assert_closed_4001_alone("/ws/overlay/cli", secret, what="token revoked by the CLI")
        rc, out, err = self.cli("token", "revoke", ids[0], "--data-dir", self.server.data_dir)
        self.assertNotEqual(rc, 0, "revoking twice should fail: %r" % out)

    # -- the envelope route and routes with other auth ---------------------------------------
    def test_envelope_route_speaks_the_native_protocol(self):
        t = self.create_token(["creator:env"])
        c = self.raw(path=q_token("/ws/live/env", t["token"]))
        self.assertEqual(c.status, 101)
        hello = c.recv_json(timeout=3)
        self.assertEqual(hello["type"], "connected", hello)
        self.assertEqual(hello["data"]["channels"], ["creator:env"])
        self.assertIsNone(hello["data"]["user"])
        r = c.request({"type": "ping", "id": 7}, timeout=3)
        self.assertEqual((r["type"], r.get("id")), ("pong", 7))
        ack = self.server.publish_ok("creator:env", "TIP_SENT", TIP)
        m = self.next_event(c, "creator:env")
        self.assertEqual((m["type"], m["data"], m["id"], m["offset"]), ("TIP_SENT", TIP, ack["id"], ack["offset"]))
        # a wrong token here gets the error message, then 4001
        self.assert_unauthorized("htk_" + "D" * 43, path="/ws/live/env", what="unknown token, envelope route")
        self.assert_unauthorized(t["token"], path="/ws/live/other", what="token for another channel")

    def test_route_without_auth_keeps_channel_rules(self):
        c = self.raw(path="/ws/board/lobby")
        self.assertEqual(c.status, 101)
        self.server.wait_subscribers("board:lobby", 1)
        self.server.publish_ok("board:lobby", "note", {"pinned": True})
        self.assertEqual(self.data_frame(c), {"pinned": True})
        # user:* is owner-or-deny: an anonymous route cannot open somebody's channel
        self.assert_closed_4001_alone("/ws/peek/alice", what="auth none route onto user:alice")
        self.assertEqual(self.server.subscribers("user:alice"), 0)

    def test_jwt_route_applies_the_owner_rule(self):
        tok = make_jwt({"sub": "alice", "exp": int(time.time()) + 600})
        c = self.raw(path=q_token("/ws/inbox/alice", tok))
        hello = c.recv_json(timeout=3)
        self.assertEqual(hello["type"], "connected", hello)
        self.assertEqual((hello["data"]["user"], hello["data"]["channels"]), ("alice", ["user:alice"]))
        self.assert_unauthorized(tok, path="/ws/inbox/bob", what="alice on /ws/inbox/bob")
        self.assert_unauthorized(None, path="/ws/inbox/bob", what="anonymous on /ws/inbox/bob")


# =====================================================================================
API_KEY = "ak_live_7f3c9d2e1b_do_not_log"
WRONG_KEY = "ak_live_7f3c9d2e1b_do_not_lof"
ENV_JWT_SECRET = "jwt-env-secret-5b1e8a4c9d-do-not-log"


class ApiKeysAndLogs(SecCase):
    """api_keys guard the token and disconnect endpoints; no secret reaches the log."""
    CONFIG = {"api_keys": [API_KEY], "routes": ROUTES[:1]}
    ENV = {"HERALD_JWT_SECRET": ENV_JWT_SECRET}
    ARGS = ["--log-level", "debug"]
    KEYED = {"X-API-Key": API_KEY}

    def test_token_and_disconnect_endpoints_need_the_key(self):
        calls = (("GET", "/api/tokens", None), ("POST", "/api/tokens", {"channels": ["creator:k"]}),
                 ("DELETE", "/api/tokens/00000000", None), ("POST", "/api/disconnect", {"user": "nobody"}))
        for method, path, body in calls:
            for hdrs in ({}, {"X-API-Key": WRONG_KEY}, {"Authorization": "Bearer " + WRONG_KEY},
                         {"Authorization": "Bearer " + API_KEY[:-1]}):
                st, r = http(method, self.server.url(path), body=body, headers=hdrs)
                assert_error_json(self, st, r, 401)
        st, r = http("GET", self.server.url("/api/tokens"), headers={"Authorization": "Bearer " + API_KEY})
        self.assertEqual(st, 200, r)
        st, r = http("POST", self.server.url("/api/tokens"), body={"channels": ["creator:k"]}, headers=self.KEYED)
        self.assertEqual(st, 201, r)
        st, r = http("DELETE", self.server.url("/api/tokens/" + r["id"]), headers=self.KEYED)
        self.assertEqual((st, r), (200, {"success": True}))
        st, r = http("POST", self.server.url("/api/disconnect"), body={"user": "nobody"},
                     headers={"Authorization": "Bearer " + API_KEY})
        self.assertEqual((st, r), (200, {"success": True, "disconnected": 0}))

    def test_client_credentials_are_not_api_keys(self):
        st, t = http("POST", self.server.url("/api/tokens"), body={"channels": ["creator:k2"]}, headers=self.KEYED)
        self.assertEqual(st, 201, t)
        jwt_tok = make_jwt({"sub": "alice", "exp": int(time.time()) + 600}, key=ENV_JWT_SECRET)
        for cred in (t["token"], jwt_tok, ENV_JWT_SECRET):
            for hdrs in ({"Authorization": "Bearer " + cred}, {"X-API-Key": cred}):
                st, r = self.server.publish("news", "e", {}, headers=hdrs)
                assert_error_json(self, st, r, 401)

    def test_secrets_never_reach_the_log(self):
        st, t = http("POST", self.server.url("/api/tokens"), body={"channels": ["creator:log"], "label": "log"},
                     headers=self.KEYED)
        self.assertEqual(st, 201, t)
        good = make_jwt({"sub": "logged-user", "exp": int(time.time()) + 600}, key=ENV_JWT_SECRET)
        expired = make_jwt({"sub": "logged-user", "exp": int(time.time()) - 600}, key=ENV_JWT_SECRET)
        forged = make_jwt({"sub": "logged-user", "exp": int(time.time()) + 600}, key="guess")
        self.assertEqual(self.connect(good).connected["data"]["user"], "logged-user")
        self.assertEqual(self.connect(good, via="header").connected["data"]["user"], "logged-user")
        for bad in (expired, forged):
            self.assert_unauthorized(bad)
            self.assert_unauthorized(bad, via="header")
        c = self.raw(path=q_token("/ws/overlay/log", t["token"]))
        self.assertEqual(c.status, 101)
        self.server.wait_subscribers("creator:log", 1)
        self.assert_closed_4001_alone("/ws/overlay/other", t["token"])
        s = self.track(Stream(self.server.port, sse_query("news", token=good)))
        self.assertEqual(s.status, 200)
        s2 = self.track(Stream(self.server.port, sse_query("news", token=forged)))
        self.assertEqual(s2.status, 401)
        for hdrs in ({"X-API-Key": WRONG_KEY}, {"Authorization": "Bearer " + WRONG_KEY}, self.KEYED):
            self.server.publish("news", "e", {"x": 1}, headers=hdrs)
        http("DELETE", self.server.url("/api/tokens/" + urllib.parse.quote(t["token"], safe="")), headers=self.KEYED)
        c.expect_close(4003, timeout=3)
        time.sleep(0.3)
        with open(self.server.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        self.assertIn("listening", log, "the log is not where the test looks")
        for what, secret in (("the API key", API_KEY), ("a wrong API key", WRONG_KEY),
                             ("the JWT secret", ENV_JWT_SECRET), ("the access token", t["token"]),
                             ("the access token body", t["token"][4:]), ("a valid JWT", good),
                             ("a valid JWT's signature", good.split(".")[2]), ("an expired JWT", expired),
                             ("a forged JWT", forged)):
            self.assertNotIn(secret, log, "%s is in the server log" % what)


# =====================================================================================
class TlsHerald(Herald):
    """A herald serving https/wss: its URLs use the TLS schemes."""

    def url(self, path):
        return "https://%s:%d%s" % (HOST, self.port, path)

    def ws_url(self, path="/ws"):
        return "wss://%s:%d%s" % (HOST, self.port, path)


TLS_CONFIG = {"tls": {"cert_file": KEYS.tls_cert, "key_file": KEYS.tls_key},
              "auth": {"jwt": {"secret": HS_SECRET}}}


class _TrustOurCert:
    """Points the harness's HTTP opener at a context that trusts the test certificate
    (its /health polling and API helpers then work over https)."""

    def __enter__(self):
        self.saved = harness._opener
        harness._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=KEYS.client_ssl()))
        return self

    def __exit__(self, *exc):
        harness._opener = self.saved


def arun(coro, timeout=30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def arecv(ws, timeout=3.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


class Tls(unittest.TestCase):
    """https, wss and SSE on one TLS listener."""
    server = None

    @classmethod
    def setUpClass(cls):
        cls.trust = _TrustOurCert().__enter__()
        try:
            cls.server = TlsHerald(TLS_CONFIG, name="Tls").start()
        except BaseException:
            cls.trust.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            s, cls.server = cls.server, None
            if s is not None:
                s.stop()
        finally:
            cls.trust.__exit__(None, None, None)

    def setUp(self):
        self.assertTrue(self.server.alive(), "herald died before this test\n" + self.server.log_tail())
        self._close = []

    def tearDown(self):
        for s in self._close:
            try:
                s.close()
            except OSError:
                pass
        self.assertTrue(self.server.alive(), "herald died during this test\n" + self.server.log_tail())

    def test_https_health_with_curl(self):
        if not shutil.which("curl"):
            self.skipTest("curl is not installed")
        p = subprocess.run(["curl", "-sS", "--max-time", "5", "--noproxy", "*", "--cacert", KEYS.tls_cert,
                            self.server.url("/health")], capture_output=True, timeout=15)
        self.assertEqual(p.returncode, 0, p.stderr)
        body = json.loads(p.stdout)
        self.assertEqual(body["status"], "ok", body)
        # without the CA, curl refuses the self-signed certificate: it really is TLS with this cert
        p = subprocess.run(["curl", "-sS", "--max-time", "5", "--noproxy", "*", self.server.url("/health")],
                           capture_output=True, timeout=15)
        self.assertNotEqual(p.returncode, 0)

    def test_https_api_and_certificate(self):
        st, body = self.server.get("/health")
        self.assertEqual((st, body.get("status")), (200, "ok"), body)
        with socket.create_connection((HOST, self.server.port), timeout=5) as raw:
            with KEYS.client_ssl().wrap_socket(raw, server_hostname=HOST) as s:
                self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
                der = s.getpeercert(binary_form=True)
        with open(KEYS.tls_cert) as f:
            self.assertEqual(der, ssl.PEM_cert_to_DER_cert(f.read()))

    def test_wss_subscribe_and_receive_publish_over_https(self):
        async def body():
            tok = make_jwt({"sub": "tls-user", "exp": int(time.time()) + 600})
            ws = await websockets.connect(q_token(self.server.ws_url(), tok), ssl=KEYS.client_ssl(),
                                          open_timeout=5, close_timeout=2, ping_interval=None)
            try:
                hello = await arecv(ws)
                self.assertEqual(hello["type"], "connected", hello)
                self.assertEqual(hello["data"]["user"], "tls-user")
                ch = uniq("tls")
                await ws.send(json.dumps({"type": "subscribe", "id": 1, "channels": [ch]}))
                r = await arecv(ws)
                self.assertEqual((r["type"], r["id"]), ("subscribed", 1), r)
                ack = await asyncio.to_thread(self.server.publish_ok, ch, "over_tls", {"n": 1})
                m = await arecv(ws)
                self.assertEqual((m["type"], m["channel"], m["id"]), ("over_tls", ch, ack["id"]))
                # many events, one large: TLS records carry them in order, none lost
                big = "x" * 900000
                acks = []
                for i in range(50):
                    acks.append(await asyncio.to_thread(self.server.publish_ok, ch, "seq",
                                                        {"i": i, "pad": big if i == 25 else ""}))
                for i in range(50):
                    m = await arecv(ws, 5)
                    self.assertEqual((m["data"]["i"], m["offset"]), (i, acks[i]["offset"]))
                    self.assertEqual(len(m["data"]["pad"]), 900000 if i == 25 else 0)
                await asyncio.to_thread(self.server.publish_ok, "user:tls-user", "dm", {"hi": 1})
                m = await arecv(ws)
                self.assertEqual((m["channel"], m["data"]), ("user:tls-user", {"hi": 1}))
            finally:
                await ws.close()
        arun(body())

    def test_wss_bad_token_gets_4001(self):
        async def body():
            ws = await websockets.connect(q_token(self.server.ws_url(), "not.a.jwt"), ssl=KEYS.client_ssl(),
                                          open_timeout=5, close_timeout=2, ping_interval=None)
            m = await arecv(ws)
            self.assertEqual((m["type"], m["data"]["code"]), ("error", "unauthorized"))
            with self.assertRaises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 3)
            self.assertEqual(ws.close_code, 4001)
        arun(body())

    def test_sse_over_https(self):
        ch = uniq("tls-sse")
        s = Stream(self.server.port, sse_query(ch), ctx=KEYS.client_ssl())
        self._close.append(s)
        self.assertEqual(s.status, 200, s.body)
        self.assertTrue(s.headers.get("content-type", "").startswith("text/event-stream"), s.headers)
        ack = self.server.publish_ok(ch, "tick", {"t": 1})
        env = s.next_data()
        self.assertEqual((env["channel"], env["id"], env["data"]), (ch, ack["id"], {"t": 1}))

    def test_plain_http_on_the_tls_port_fails_cleanly(self):
        for payload in (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                        os.urandom(2048)):
            with socket.create_connection((HOST, self.server.port), timeout=5) as s:
                s.sendall(payload)
                got, deadline = b"", time.monotonic() + 3
                while time.monotonic() < deadline:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        chunk = s.recv(4096)
                    except (ConnectionResetError, BrokenPipeError):
                        break
                    except socket.timeout:
                        self.fail("the server kept a non-TLS connection open for 3 s (got %r)" % got[:100])
                    if not chunk:
                        break
                    got += chunk
                self.assertFalse(got.startswith(b"HTTP/"), "plain HTTP answered on the TLS port: %r" % got[:200])
        st, body = self.server.get("/health")
        self.assertEqual(st, 200, body)

    def test_stalled_handshake_does_not_block_others(self):
        idle = socket.create_connection((HOST, self.server.port), timeout=5)
        half = socket.create_connection((HOST, self.server.port), timeout=5)
        self._close += [idle, half]
        half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # a ClientHello cut short
        t0 = time.monotonic()
        st, body = self.server.get("/health", timeout=3)
        self.assertEqual(st, 200, body)
        self.assertLess(time.monotonic() - t0, 2.0)

    def tls_socket(self):
        raw = socket.create_connection((HOST, self.server.port), timeout=5)
        s = KEYS.client_ssl().wrap_socket(raw, server_hostname=HOST)
        self._close.append(s)
        return s

    def test_pipelined_requests_over_tls(self):
        s = self.tls_socket()
        s.sendall(b"".join(request_bytes("GET", "/health") for _ in range(30)))
        reader = RawHTTP.__new__(RawHTTP)
        reader.sock, reader.timeout, reader.buf = s, 5.0, b""
        for i in range(30):
            st, _h, body = reader.read_response(timeout=5)
            self.assertEqual(st, 200, "response %d: %r" % (i, body[:200]))
            self.assertEqual(json.loads(body)["status"], "ok")

    def test_abrupt_tls_disconnects_during_fanout(self):
        ch = uniq("tls-rst")
        clients = []
        for _ in range(12):
            s = self.tls_socket()
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "closed during the handshake")
                head += chunk
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head[:100])
            s.sendall(encode_frame(OP_TEXT, json.dumps({"type": "subscribe", "channels": [ch]})))
            clients.append(s)
        wait_until(lambda: self.server.subscribers(ch) == 12, 5, what="12 subscribers")
        pad = "y" * 60000
        for i in range(10):
            self.server.publish_ok(ch, "fill", {"i": i, "pad": pad})
        for s in clients[:6]:   # reset: no close_notify, no FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        for i in range(10):
            self.server.publish_ok(ch, "fill", {"i": 10 + i, "pad": pad})
        for s in clients[6:]:   # gone without close_notify
            s.close()
        self.server.publish_ok(ch, "fill", {"i": 99})
        wait_until(lambda: self.server.get("/health")[1].get("connections") == 0, 10,
                   what="every dropped TLS connection released")

        async def alive():
            ws = await websockets.connect(self.server.ws_url(), ssl=KEYS.client_ssl(), open_timeout=5,
                                          close_timeout=2, ping_interval=None)
            try:
                self.assertEqual((await arecv(ws))["type"], "connected")
            finally:
                await ws.close()
        arun(alive())

    def test_tls_1_2_is_served_and_older_versions_refused(self):
        ctx = KEYS.client_ssl()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((HOST, self.server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                self.assertEqual(s.version(), "TLSv1.2")
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(KEYS.tls_cert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                old.set_ciphers("DEFAULT:@SECLEVEL=0")
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            except (ValueError, ssl.SSLError) as e:
                self.skipTest("this client cannot offer TLS 1.1: %s" % e)
        with socket.create_connection((HOST, self.server.port), timeout=5) as raw:
            try:
                with old.wrap_socket(raw, server_hostname=HOST) as s:
                    self.fail("a TLS 1.1 handshake succeeded: %s" % s.version())
            except ssl.SSLError as e:
                if "NO_PROTOCOLS_AVAILABLE" in str(e) or "NO_CIPHERS" in str(e):
                    self.skipTest("this client cannot offer TLS 1.1: %s" % e)
                # the server itself refused the version (alert 70), not the client
                self.assertIn("PROTOCOL_VERSION", str(e).upper().replace(" ", "_"), e)
        self.assertEqual(self.server.get("/health")[0], 200)


class TlsShutdown(unittest.TestCase):
    def test_sigterm_with_tls_clients_closes_1001_and_exits_0(self):
        with _TrustOurCert():
            server = TlsHerald(TLS_CONFIG, name="TlsShutdown").start()
            try:
                async def body():
                    ws = await websockets.connect(server.ws_url(), ssl=KEYS.client_ssl(), open_timeout=5,
                                                  close_timeout=2, ping_interval=None)
                    self.assertEqual((await arecv(ws))["type"], "connected")
                    s = Stream(server.port, sse_query("bye"), ctx=KEYS.client_ssl())
                    self.assertEqual(s.status, 200)
                    wait_until(lambda: server.get("/health")[1].get("connections") == 2, 5,
                               what="2 connections")
                    server.proc.send_signal(signal.SIGTERM)
                    with self.assertRaises(websockets.exceptions.ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
                    self.assertEqual(ws.close_code, 1001)
                    s.close()
                arun(body())
            finally:
                server.stop()


if __name__ == "__main__":
    run()
