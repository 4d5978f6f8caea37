"""End-to-end: herald's command line (SPEC section 7): version, config check,
publish and tail against a running server, and a restart on the same data dir."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HERALD_BIN, Herald, ServerCase, run, uniq, wait_until  # noqa: E402

OPEN_RULES = [{"pattern": "*", "subscribe": "any", "publish": "none"}]


def cli(*args, stdin=None, timeout=10.0, env=None):
    """Runs `herald ARGS`; returns CompletedProcess (text)."""
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("HERALD_") and k != "HERALD_BIN":
            del e[k]
    e.update(env or {})
    return subprocess.run([HERALD_BIN] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=None if stdin is not None else subprocess.DEVNULL)


def write_tmp(text):
    fd, path = tempfile.mkstemp(suffix=".json", prefix="herald-cfg-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


GOOD_CONFIG = {
    "listen": "127.0.0.1:18080", "data_dir": "./herald-data", "node_id": "auto",
    "allowed_origins": ["https://app.example"], "api_keys": ["k1"], "trusted_proxies": ["10.0.0.0/8"],
    "auth": {"jwt": {"secret": "s3cret", "algorithms": ["HS256"], "issuer": None, "audience": None,
                     "leeway_s": 5}, "anonymous": True},
    "auto_join": ["user:{sub}"],
    "channels": [{"pattern": "user:{sub}", "subscribe": "owner"}, {"pattern": "user:*", "subscribe": "deny"},
                 {"pattern": "chat:*", "subscribe": "authenticated", "publish": "authenticated"},
                 {"pattern": "*", "subscribe": "any", "publish": "none", "history": {"size": 100, "ttl_s": 300}}],
    "routes": [{"path": "/ws/overlay/{creatorId}", "channels": ["creator:{creatorId}"], "auth": "access_token",
                "format": "data"}],
    "socketio": {"enabled": True, "path": "/socket.io/", "namespaces": [], "ping_interval_ms": 25000,
                 "ping_timeout_ms": 20000, "connected_event": None, "join_events": {"join-user-room": "user:{0}"},
                 "leave_events": {}},
    "heartbeat": {"interval_s": 30, "timeout_s": 10},
    "history": {"size": 100, "ttl_s": 300, "durable": True, "idempotency_ttl_s": 300},
    "limits": {"max_connections": 100000, "max_channels_per_connection": 100, "max_message_bytes": 65536,
               "max_body_bytes": 1048576, "messages_per_second": 50, "connections_per_ip_per_second": 0,
               "send_queue_bytes": 1048576},
    "tls": {"cert_file": None, "key_file": None},
    "shutdown_timeout_s": 10,
    "redis": {"url": None, "prefix": "herald"},
    "sources": [],
}


class Offline(unittest.TestCase):
    def test_version(self):
        p = cli("version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"\d+\.\d+")
        self.assertIn("herald", (p.stdout + p.stderr).lower())

    def test_config_check_good_file(self):
        path, empty = write_tmp(json.dumps(GOOD_CONFIG)), write_tmp("{}")
        try:
            p = cli("config", "check", path)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            p = cli("config", "check", empty)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            os.unlink(path)
            os.unlink(empty)

    def test_config_check_bad_value(self):
        path = write_tmp(json.dumps({"limits": {"max_connections": "lots"}}))
        try:
            p = cli("config", "check", path)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("$.limits.max_connections", p.stderr)
        finally:
            os.unlink(path)

    def test_config_check_reports_every_problem(self):
        bad = {"limits": {"max_connections": -5, "send_queue_bytes": "big"},
               "heartbeat": {"interval_s": "often"},
               "channels": [{"pattern": "*", "subscribe": "sometimes"}],
               "listen": "nowhere", "bogus_key": 1}
        path = write_tmp(json.dumps(bad))
        try:
            p = cli("config", "check", path)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            for jp in ("$.limits.max_connections", "$.limits.send_queue_bytes", "$.heartbeat.interval_s",
                       "$.channels[0].subscribe", "$.listen", "$.bogus_key"):
                self.assertIn(jp, p.stderr)
        finally:
            os.unlink(path)

    def test_config_check_syntax_error_and_missing_file(self):
        path = write_tmp('{"limits": {"max_connections": 5,}')
        try:
            p = cli("config", "check", path)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("$", p.stderr)
        finally:
            os.unlink(path)
        p = cli("config", "check", "/nonexistent/herald.json")
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())

    def test_unknown_command_fails(self):
        p = cli("frobnicate")
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())

    def test_serve_refuses_bad_config(self):
        path = write_tmp(json.dumps({"limits": {"max_connections": "lots"}}))
        d = tempfile.mkdtemp(prefix="herald-e2e-")
        try:
            p = cli("serve", "--config", path, "--listen", "127.0.0.1:0", "--data-dir", d, timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("$.limits.max_connections", p.stderr)
        finally:
            os.unlink(path)
            shutil.rmtree(d, ignore_errors=True)


class PublishAndTail(ServerCase):
    CONFIG = {"channels": OPEN_RULES}

    def history(self, ch):
        st, r = self.server.get("/api/history?channel=" + ch)
        self.assertEqual(st, 200, r)
        return r

    def start_tail(self, *args):
        p = subprocess.Popen([HERALD_BIN, "tail", "--url", self.server.ws_url()] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.addCleanup(self.reap, p)
        return p

    def reap(self, p):
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=5)

    def finish(self, p, timeout=8.0):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
            self.fail("herald tail did not exit after its events; stdout=%r stderr=%r" % (out, err[-2000:]))
        self.assertEqual(p.returncode, 0, err[-2000:])
        lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        return lines

    def assertEvent(self, m, ch, ev, data):
        self.assertEqual(m.get("channel"), ch, m)
        self.assertIn(ev, (m.get("type"), m.get("event")), m)
        self.assertEqual(m.get("data"), data, m)
        self.assertIsInstance(m.get("offset"), int, m)

    def test_publish_cli(self):
        ch = uniq("clipub")
        p = cli("publish", "--url", self.server.url(""), ch, "job_created", '{"id":1,"title":"Fix the sink"}')
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.history(ch)
        self.assertEqual(r["offset"], 1)
        self.assertEqual(r["events"][0]["data"], {"id": 1, "title": "Fix the sink"})
        self.assertEqual(r["events"][0]["type"], "job_created")

    def test_publish_cli_data_from_stdin(self):
        ch = uniq("clistdin")
        p = cli("publish", "--url", self.server.url(""), ch, "e", "-", stdin='{"from":"stdin","n":[1,2]}\n')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.history(ch)["events"][0]["data"], {"from": "stdin", "n": [1, 2]})

    def test_publish_cli_refuses_bad_input(self):
        ch = uniq("clibad")
        p = cli("publish", "--url", self.server.url(""), ch, "e", "{not json")
        self.assertNotEqual(p.returncode, 0)
        p = cli("publish", "--url", self.server.url(""), "bad channel", "e", "{}")
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())
        p = cli("publish", "--url", self.server.url(""), ch, "subscribed", "{}")
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(self.history(ch)["offset"], 0)
        port = self.server.port
        p = cli("publish", "--url", "http://127.0.0.1:1", ch, "e", "{}", timeout=15)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(port, self.server.port)

    def test_tail_prints_json_lines(self):
        ch = uniq("clitail")
        t = self.start_tail("--max-events", "2", ch)
        wait_until(lambda: self.server.subscribers(ch) == 1 or t.poll() is not None, 8.0,
                   what="herald tail subscribed to %s" % ch)
        if t.poll() is not None:
            self.fail("tail exited early: %r" % (t.communicate(timeout=5),))
        for i in (1, 2):
            p = cli("publish", "--url", self.server.url(""), ch, "job_created", json.dumps({"id": i}))
            self.assertEqual(p.returncode, 0, p.stderr)
        lines = self.finish(t)
        events = [m for m in lines if "offset" in m]
        self.assertEqual(len(events), 2, lines)
        for i, m in enumerate(events, 1):
            self.assertEvent(m, ch, "job_created", {"id": i})
            self.assertEqual(m["offset"], i)

    def test_tail_since_replays_history(self):
        ch = uniq("clisince")
        for i in range(1, 4):
            self.server.publish_ok(ch, "h", {"i": i})
        t = self.start_tail("--since", "1", "--max-events", "2", ch)
        lines = self.finish(t)
        events = [m for m in lines if "offset" in m]
        self.assertEqual([m["offset"] for m in events], [2, 3])
        self.assertEvent(events[0], ch, "h", {"i": 2})

    def test_tail_several_channels(self):
        a, b = uniq("tailA"), uniq("tailB")
        t = self.start_tail("--max-events", "2", a, b)
        wait_until(lambda: (self.server.subscribers(a), self.server.subscribers(b)) == (1, 1) or t.poll() is not None,
                   8.0, what="tail subscribed to both")
        self.server.publish_ok(a, "ea", 1)
        self.server.publish_ok(b, "eb", 2)
        events = [m for m in self.finish(t) if "offset" in m]
        self.assertEqual(sorted(m["channel"] for m in events), sorted([a, b]))


class Restart(unittest.TestCase):
    def test_offsets_and_history_survive_restart(self):
        data = tempfile.mkdtemp(prefix="herald-e2e-data-")
        ch = uniq("durable")
        s1 = Herald({"channels": OPEN_RULES}, data_dir=data).start()
        try:
            for i in range(1, 4):
                self.assertEqual(s1.publish_ok(ch, "d", i)["offset"], i)
            epoch1 = s1.get("/api/history?channel=" + ch)[1]["epoch"]
            s1.stop()
            s2 = Herald({"channels": OPEN_RULES}, data_dir=data).start()
            try:
                r = s2.get("/api/history?channel=" + ch)[1]
                self.assertEqual([e["data"] for e in r["events"]], [1, 2, 3])
                self.assertEqual(r["offset"], 3)
                self.assertEqual(r["epoch"], epoch1, "epoch changed although no history was lost")
                self.assertEqual(s2.publish_ok(ch, "d", 4)["offset"], 4)
            finally:
                s2.stop()
        finally:
            s1.kill()
            shutil.rmtree(data, ignore_errors=True)

    def test_tail_reconnects_after_server_restart(self):
        ch = uniq("reconnect")
        s1 = Herald({"channels": OPEN_RULES}).start()
        port = s1.port
        tail = None
        try:
            tail = subprocess.Popen([HERALD_BIN, "tail", "--url", s1.ws_url(), "--max-events", "2", ch],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                    text=True)
            s1.wait_subscribers(ch, 1, 8.0)
            s1.publish_ok(ch, "d", "before")
            time.sleep(0.3)   # let the event reach the tail before the shutdown
            s1.stop()
            s2 = Herald({"channels": OPEN_RULES}, port=port).start()
            try:
                s2.wait_subscribers(ch, 1, 10.0)   # reconnected, with backoff
                s2.publish_ok(ch, "d", "after")
                out, err = tail.communicate(timeout=10)
                self.assertEqual(tail.returncode, 0, err[-2000:])
                events = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
                self.assertEqual([m["data"] for m in events if "offset" in m], ["before", "after"])
            finally:
                s2.stop()
        finally:
            if tail is not None and tail.poll() is None:
                tail.kill()
                tail.communicate(timeout=5)
            s1.kill()


if __name__ == "__main__":
    run()
