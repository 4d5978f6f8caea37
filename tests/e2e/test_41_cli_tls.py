"""End-to-end: `herald tail` and `herald publish` over TLS (wss://, https://)
against herald serving with tls.cert_file/key_file.

A private CA and two server certificates signed by it (one for 127.0.0.1 and
localhost, one for another name) are made at start with the `openssl` CLI in a
temporary directory. The client trusts the CA only through HERALD_CA_FILE (or
--ca-file): without it the system trust store is used and the certificate is
refused. A certificate for another name, a plain server on a TLS URL and a
server that never answers fail with one clear line, within the timeout."""
import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HERALD_BIN, HOST, Herald, run, uniq, wait_until  # noqa: E402

OPEN_RULES = [{"pattern": "*", "subscribe": "any", "publish": "none"}]


# -- certificates ------------------------------------------------------------------
def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode("utf-8", "replace")))


class Pki:
    """A CA, a certificate for 127.0.0.1/localhost and one for wrong.example."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-e2e-clitls-")
        atexit.register(shutil.rmtree, self.dir, True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self.ca, self.ca_key = self.path("ca.pem"), self.path("ca-key.pem")
        openssl("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                "-subj", "/CN=herald e2e CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.cert, self.key = self.leaf("good", "localhost", "IP:127.0.0.1,DNS:localhost")
        self.wrong_cert, self.wrong_key = self.leaf("wrong", "wrong.example", "DNS:wrong.example")

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, cn, san):
        key, csr, cert, ext = (self.path(name + s) for s in ("-key.pem", ".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % san)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key


PKI = Pki()


# -- a herald serving TLS ------------------------------------------------------------
class TlsHerald(Herald):
    def url(self, path):
        return "https://%s:%d%s" % (HOST, self.port, path)

    def ws_url(self, path="/ws"):
        return "wss://%s:%d%s" % (HOST, self.port, path)


def tls_config(cert, key):
    return {"channels": OPEN_RULES, "tls": {"cert_file": cert, "key_file": key}}


class TrustCa:
    """Points the harness's HTTP opener at a context that trusts the test CA and
    ignores the name (so /health polling works for the wrong-name server too)."""

    def __enter__(self):
        ctx = ssl.create_default_context(cafile=PKI.ca)
        ctx.check_hostname = False
        self.saved = harness._opener
        harness._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                      urllib.request.HTTPSHandler(context=ctx))
        return self

    def __exit__(self, *exc):
        harness._opener = self.saved


def clean_env(extra=None):
    """The environment without HERALD_* settings or OpenSSL trust-store overrides."""
    e = dict(os.environ)
    for k in list(e):
        if (k.startswith("HERALD_") and k != "HERALD_BIN") or k in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            del e[k]
    e.update(extra or {})
    return e


def cli(*args, env=None, timeout=20.0):
    return subprocess.run([HERALD_BIN] + list(args), capture_output=True, text=True, timeout=timeout,
                          env=clean_env(env), stdin=subprocess.DEVNULL)


def timed_cli(*args, env=None, timeout=20.0):
    t0 = time.monotonic()
    p = cli(*args, env=env, timeout=timeout)
    return p, time.monotonic() - t0


WITH_CA = {"HERALD_CA_FILE": PKI.ca}


class TlsClient(unittest.TestCase):
    """tail and publish against a TLS herald whose certificate the CA signed."""
    server = None

    @classmethod
    def setUpClass(cls):
        cls.trust = TrustCa().__enter__()
        try:
            cls.server = TlsHerald(tls_config(PKI.cert, PKI.key), name="CliTls").start()
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

    def tearDown(self):
        self.assertTrue(self.server.alive(), "herald died during this test\n" + self.server.log_tail())

    def start_tail(self, url, *args, env=None):
        p = subprocess.Popen([HERALD_BIN, "tail", "--url", url] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=clean_env(env))
        self.addCleanup(self.reap, p)
        return p

    def reap(self, p):
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=5)

    def history(self, ch):
        st, r = self.server.get("/api/history?channel=" + ch)
        self.assertEqual(st, 200, r)
        return r

    def test_tail_wss_with_ca_file_receives_event_published_over_https(self):
        ch = uniq("clitls")
        t = self.start_tail(self.server.ws_url(), "--max-events", "1", "--timeout", "20", ch, env=WITH_CA)
        wait_until(lambda: self.server.subscribers(ch) == 1 or t.poll() is not None, 10.0,
                   what="herald tail subscribed over wss")
        if t.poll() is not None:
            self.fail("tail exited early: %r" % (t.communicate(timeout=5),))
        p = cli("publish", "--url", self.server.url(""), ch, "job_created", '{"id":7,"over":"tls"}', env=WITH_CA)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["offset"], 1, p.stdout)
        out, err = t.communicate(timeout=15)
        self.assertEqual(t.returncode, 0, err[-2000:])
        events = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        self.assertEqual(len(events), 1, out)
        self.assertEqual((events[0]["channel"], events[0]["type"], events[0]["data"], events[0]["offset"]),
                         (ch, "job_created", {"id": 7, "over": "tls"}, 1))

    def test_tail_wss_localhost_name_and_ca_file_flag(self):
        ch = uniq("clitlsname")
        self.server.publish_ok(ch, "h", {"i": 1})
        t = self.start_tail("wss://localhost:%d/ws" % self.server.port, "--ca-file", PKI.ca, "--since", "0",
                            "--max-events", "1", "--timeout", "20", ch)
        out, err = t.communicate(timeout=25)
        self.assertEqual(t.returncode, 0, err[-2000:])
        self.assertEqual([json.loads(ln)["data"] for ln in out.splitlines() if ln.strip()], [{"i": 1}])

    def test_publish_https_with_ca_file(self):
        ch = uniq("clitlspub")
        p = cli("publish", "--url", self.server.url(""), ch, "e", '{"n":1}', env=WITH_CA)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("publish", "--url", "https://localhost:%d" % self.server.port, "--ca-file", PKI.ca, ch, "e",
                '{"n":2}')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([e["data"] for e in self.history(ch)["events"]], [{"n": 1}, {"n": 2}])

    def test_publish_system_store_is_openssls_default_paths(self):
        # without HERALD_CA_FILE the system store is used: OpenSSL's default paths,
        # which SSL_CERT_FILE overrides; trusting the CA that way works too
        ch = uniq("clitlssys")
        p = cli("publish", "--url", self.server.url(""), ch, "e", '{"n":3}', env={"SSL_CERT_FILE": PKI.ca})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.history(ch)["offset"], 1)

    def test_publish_without_ca_file_fails_verification(self):
        ch = uniq("clitlsnoca")
        p, took = timed_cli("publish", "--url", self.server.url(""), ch, "e", "{}")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("certificate verify failed", p.stderr)
        self.assertIn("HERALD_CA_FILE", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertLess(took, 8.0)
        self.assertEqual(self.history(ch)["offset"], 0)

    def test_tail_without_ca_file_fails_verification_and_exits(self):
        ch = uniq("clitlsnoca")
        p, took = timed_cli("tail", "--url", self.server.ws_url(), "--timeout", "15", ch)
        self.assertEqual(p.returncode, 1, p.stderr)   # not 2: a refused certificate is not retried
        self.assertLess(took, 10.0)
        lines = [json.loads(ln) for ln in p.stderr.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertEqual(lines[0]["level"], "error", lines)
        self.assertIn("certificate verify failed", lines[0]["error"])
        self.assertIn("HERALD_CA_FILE", lines[0].get("hint", ""))

    def test_unreadable_ca_file_is_one_clear_error(self):
        missing = {"HERALD_CA_FILE": PKI.path("nonexistent.pem")}
        p = cli("publish", "--url", self.server.url(""), uniq("x"), "e", "{}", env=missing)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot read CA file", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        p = cli("tail", "--url", self.server.ws_url(), "--timeout", "10", uniq("x"), env=missing)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot read CA file", p.stderr)

    def test_plain_http_url_to_tls_port_fails(self):
        # plain HTTP to the TLS listener: refused by the server, and the CA file plays no part
        p, took = timed_cli("publish", "--url", "http://127.0.0.1:%d" % self.server.port, uniq("x"), "e", "{}",
                            env=WITH_CA)
        self.assertNotEqual(p.returncode, 0)
        self.assertLess(took, 12.0)


class WrongName(unittest.TestCase):
    """A certificate signed by the trusted CA, but for another name."""

    @classmethod
    def setUpClass(cls):
        cls.trust = TrustCa().__enter__()
        try:
            cls.server = TlsHerald(tls_config(PKI.wrong_cert, PKI.wrong_key), name="CliTlsWrong").start()
        except BaseException:
            cls.trust.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.trust.__exit__(None, None, None)

    def test_publish_refuses_certificate_for_other_name(self):
        for url, why in (("https://127.0.0.1:%d", "IP address mismatch"), ("https://localhost:%d", "hostname mismatch")):
            p = cli("publish", "--url", url % self.server.port, uniq("x"), "e", "{}", env=WITH_CA)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("certificate verify failed", p.stderr)
            self.assertIn(why, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)

    def test_tail_refuses_certificate_for_other_name(self):
        p, took = timed_cli("tail", "--url", "wss://localhost:%d/ws" % self.server.port, "--timeout", "15",
                            uniq("x"), env=WITH_CA)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertLess(took, 10.0)
        self.assertIn("hostname mismatch", p.stderr)


class NotTls(unittest.TestCase):
    """TLS URLs pointing at servers that do not speak TLS."""

    def test_plain_herald_on_tls_urls_fails_cleanly(self):
        s = Herald({"channels": OPEN_RULES}, name="CliTlsPlain").start()
        try:
            p, took = timed_cli("publish", "--url", "https://127.0.0.1:%d" % s.port, uniq("x"), "e", "{}",
                                env=WITH_CA)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("TLS handshake", p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertLess(took, 8.0)
            # tail retries with backoff (the port may be about to serve TLS) until --timeout
            p, took = timed_cli("tail", "--url", "wss://127.0.0.1:%d/ws" % s.port, "--timeout", "2", uniq("x"),
                                env=WITH_CA)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertLess(took, 6.0)
            self.assertIn("TLS handshake", p.stderr)
            self.assertNotIn("Sanitizer", p.stderr)
            self.assertTrue(s.alive())
        finally:
            s.stop()

    def test_silent_tcp_server_times_out(self):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind((HOST, 0))
        lsock.listen(8)
        lsock.settimeout(0.2)
        port = lsock.getsockname()[1]
        halt = threading.Event()
        held = []

        def accept_and_hold():   # accepts, reads nothing, answers nothing; bounded by halt
            deadline = time.monotonic() + 30
            while not halt.is_set() and time.monotonic() < deadline:
                try:
                    c, _ = lsock.accept()
                    held.append(c)
                except socket.timeout:
                    pass

        th = threading.Thread(target=accept_and_hold, daemon=True)
        th.start()
        try:
            p, took = timed_cli("tail", "--url", "wss://127.0.0.1:%d/ws" % port, "--timeout", "2", uniq("x"),
                                env=WITH_CA)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertLess(took, 6.0)
            self.assertIn("timed out", p.stderr)
        finally:
            halt.set()
            th.join(timeout=5)
            for c in held:
                c.close()
            lsock.close()


if __name__ == "__main__":
    run()
