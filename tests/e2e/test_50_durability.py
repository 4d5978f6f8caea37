"""End-to-end: the durable event log across restarts (SPEC sections 1, 3, 9.3, 9.4).

A crash (SIGKILL in the middle of concurrent keep-alive publishing) loses no
acknowledged event: after a restart on the same data dir every acknowledged event
is in /api/history with its offset and id, offsets run 1..N without a gap, and
publishing continues at N+1 under the same epoch. Across a graceful restart a
subscriber resuming with `since` gets exactly the events it missed; history size
and TTL still apply; a repeated idempotency key is still a duplicate. With
history.durable false a restart starts a new history: new epoch, offsets from 1.

Each test starts its own servers on a shared temporary data dir. Only processes
started here are signalled, by their Popen handle. The killed instance is not
checked for a clean exit (a SIGKILLed process has none); every other is."""
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Herald, RawHTTP, UUID4_RE, request_bytes, run, uniq, wait_until)  # noqa: E402

BIG_HISTORY = {"size": 10000, "ttl_s": 3600}
BIG = {"history": dict(BIG_HISTORY),
       "channels": [{"pattern": "*", "subscribe": "any", "history": dict(BIG_HISTORY)}]}

CRASH_PUBLISHERS = 8
CRASH_ACKS = 1500          # acknowledged publishes before the kill
CRASH_DEADLINE_S = 40.0    # bound on the publishing phase


class DurabilityCase(unittest.TestCase):
    """Tracks every server a test starts: stopped (and checked) or killed at the end."""

    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="herald-e2e-durable-")
        self.servers = []

    def tearDown(self):
        for h in self.servers:
            if h.proc is not None:
                h.kill()
            if h.dir:
                shutil.rmtree(h.dir, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def start(self, config):
        h = Herald(config, data_dir=self.data_dir, name=self.id())
        self.servers.append(h)
        return h.start()

    def stop(self, h):
        """Graceful stop: SIGTERM, exit status 0 (no sanitizer report)."""
        h.stop()

    def crash(self, h):
        """SIGKILL: the process gets no chance to flush anything."""
        h.kill()
        shutil.rmtree(h.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------
    def history(self, h, ch, since=None, limit=None):
        q = {"channel": ch}
        if since is not None:
            q["since"] = since
        if limit is not None:
            q["limit"] = limit
        st, body = h.get("/api/history?" + urllib.parse.urlencode(q), timeout=10.0)
        self.assertEqual(st, 200, body)
        return body

    def history_all(self, h, ch):
        """Every stored event, paging with since; returns (events, latest, epoch)."""
        events, since, body = [], 0, None
        for _ in range(100):
            body = self.history(h, ch, since=since, limit=1000)
            if not body["events"]:
                break
            events.extend(body["events"])
            since = body["events"][-1]["offset"]
        else:
            self.fail("history paging did not end")
        return events, body["offset"], body["epoch"]

    def publish(self, h, ch, data, key=None):
        body = {"channel": ch, "event": "evt", "data": data}
        if key is not None:
            body["idempotency_key"] = key
        st, r = h.post("/api/publish", body, timeout=10.0)
        self.assertEqual(st, 200, r)
        return r


class Crash(DurabilityCase):
    def test_kill_9_mid_stream_loses_no_acknowledged_event(self):
        h = self.start(BIG)
        ch = uniq("crash")
        epoch = self.history(h, ch)["epoch"]
        acked = [[] for _ in range(CRASH_PUBLISHERS)]   # per publisher: (n, offset, id)
        errors = [None] * CRASH_PUBLISHERS
        bad = []                                         # non-200 answers before the kill
        lock = threading.Lock()
        total = [0]
        killed = threading.Event()
        deadline = time.monotonic() + CRASH_DEADLINE_S

        def publisher(p):
            try:
                c = RawHTTP(h.port, timeout=5.0)
            except OSError as e:
                errors[p] = e
                return
            try:
                for n in range(100000):
                    if time.monotonic() > deadline:
                        errors[p] = "deadline"
                        return
                    body = {"channel": ch, "event": "seq", "data": {"p": p, "n": n}}
                    c.send(request_bytes("POST", "/api/publish", body))
                    st, _hd, raw = c.read_response(timeout=5.0)
                    if st != 200:
                        if not killed.is_set():
                            with lock:
                                bad.append((p, n, st, raw[:200]))
                        return
                    r = json.loads(raw)
                    acked[p].append((n, r["offset"], r["id"]))
                    with lock:
                        total[0] += 1
            except (OSError, EOFError, socket.timeout) as e:
                errors[p] = e   # expected once the server is killed
            finally:
                c.close()

        threads = [threading.Thread(target=publisher, args=(p,), daemon=True) for p in range(CRASH_PUBLISHERS)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: total[0] >= CRASH_ACKS or not any(t.is_alive() for t in threads),
                       timeout=CRASH_DEADLINE_S, interval=0.005, what="%d acknowledged publishes" % CRASH_ACKS)
        finally:
            killed.set()
            self.crash(h)   # SIGKILL while the publishers are still sending
            for t in threads:
                t.join(timeout=10)
        self.assertFalse(any(t.is_alive() for t in threads), "a publisher did not stop after the kill")
        self.assertEqual(bad, [], "publishes refused before the kill")
        n_acked = sum(len(a) for a in acked)
        self.assertGreaterEqual(n_acked, CRASH_ACKS, "publisher errors: %r" % errors)
        for p in range(CRASH_PUBLISHERS):
            self.assertTrue(acked[p], "publisher %d got no acknowledgement (%r)" % (p, errors[p]))

        h2 = self.start(BIG)
        events, latest, epoch2 = self.history_all(h2, ch)
        self.assertEqual(epoch2, epoch, "the epoch changed across the crash")
        offsets = [e["offset"] for e in events]
        self.assertEqual(offsets, list(range(1, latest + 1)), "stored offsets are not 1..N without gaps")
        by_offset = {e["offset"]: e for e in events}
        # every acknowledged publish is there, at the offset and with the id it was given
        max_acked = 0
        for p in range(CRASH_PUBLISHERS):
            for n, off, eid in acked[p]:
                e = by_offset.get(off)
                self.assertIsNotNone(e, "acknowledged offset %d (p=%d n=%d) lost" % (off, p, n))
                self.assertEqual(e["data"], {"p": p, "n": n}, "offset %d holds another event" % off)
                self.assertEqual(e["id"], eid)
                self.assertEqual(e["type"], "seq")
                self.assertEqual(e["channel"], ch)
                max_acked = max(max_acked, off)
        self.assertGreaterEqual(latest, max_acked)
        # nothing else: per publisher its acknowledged sequence, plus at most the one
        # request in flight at the kill (committed, not yet answered), no duplicates
        seen = {}
        for e in events:
            d = e["data"]
            self.assertEqual(set(d), {"p", "n"}, e)
            seen.setdefault(d["p"], []).append(d["n"])
        for p in range(CRASH_PUBLISHERS):
            ns = seen.get(p, [])
            a = len(acked[p])
            self.assertIn(len(ns), (a, a + 1), "publisher %d: %d acknowledged, %d stored" % (p, a, len(ns)))
            self.assertEqual(ns, list(range(len(ns))), "publisher %d: stored out of order or duplicated" % p)
        self.assertLessEqual(latest, n_acked + CRASH_PUBLISHERS)
        print("note: %d acknowledged before the kill, %d stored (%d committed but unanswered)"
              % (n_acked, latest, latest - n_acked), flush=True)

        # publishing continues after the stored offset, under the same epoch
        r = self.publish(h2, ch, {"after": "crash"})
        self.assertEqual(r["offset"], latest + 1)
        body = self.history(h2, ch, since=latest)
        self.assertEqual(body["epoch"], epoch)
        self.assertEqual([e["offset"] for e in body["events"]], [latest + 1])
        self.assertEqual(body["events"][0]["data"], {"after": "crash"})
        self.stop(h2)


class Restart(DurabilityCase):
    def test_subscriber_resumes_with_since_across_graceful_restart(self):
        h = self.start(BIG)
        ch = uniq("resume")
        c = h.ws()
        epoch = c.connected["data"]["epoch"]
        r = c.subscribe(ch)
        self.assertEqual(r["data"]["offsets"], {ch: 0})
        for i in range(1, 4):
            self.publish(h, ch, {"i": i})
        got = [c.recv_until(lambda m: "offset" in m, timeout=5.0)[0] for _ in range(3)]
        self.assertEqual([m["offset"] for m in got], [1, 2, 3])
        last = got[-1]["offset"]
        c.close()
        for i in range(4, 6):   # missed while disconnected, before the restart
            self.publish(h, ch, {"i": i})
        self.stop(h)

        h2 = self.start(BIG)
        for i in range(6, 8):   # missed, after the restart
            self.publish(h2, ch, {"i": i})
        c2 = h2.ws()
        self.assertEqual(c2.connected["data"]["epoch"], epoch, "the node's epoch changed across the restart")
        r = c2.subscribe(ch, since={ch: last}, epoch=epoch)
        self.assertEqual(r["data"]["recovered"], {ch: True}, r)
        self.assertEqual(r["data"]["offsets"], {ch: 7}, r)
        self.assertEqual(r["data"]["epochs"], {ch: epoch}, r)
        missed = [c2.recv_json(timeout=5.0) for _ in range(4)]
        self.assertEqual([m["offset"] for m in missed], [4, 5, 6, 7])
        self.assertEqual([m["data"] for m in missed], [{"i": i} for i in range(4, 8)])
        for m in missed:
            self.assertEqual(m["channel"], ch)
            self.assertEqual(m["type"], "evt")
            self.assertRegex(m["id"], UUID4_RE)
        c2.no_message(0.5)   # exactly the missed ones: no duplicate
        self.publish(h2, ch, {"i": 8})
        live = c2.recv_json(timeout=5.0)
        self.assertEqual((live["offset"], live["data"]), (8, {"i": 8}))
        c2.close()

        # an old epoch is not recovered (the client must refetch)
        c3 = h2.ws()
        r = c3.subscribe(ch, since={ch: last}, epoch="not-" + epoch)
        self.assertEqual(r["data"]["recovered"], {ch: False}, r)
        c3.no_message(0.3)
        c3.close()
        self.stop(h2)

    def test_history_size_and_ttl_apply_after_restart(self):
        cfg = {"history": {"size": 5, "ttl_s": 3600},
               "channels": [{"pattern": "short:*", "subscribe": "any", "history": {"size": 5, "ttl_s": 2}},
                            {"pattern": "*", "subscribe": "any", "history": {"size": 5, "ttl_s": 3600}}]}
        h = self.start(cfg)
        long_ch, short_ch = uniq("long"), "short:" + uniq("ttl")
        for i in range(1, 9):
            self.publish(h, long_ch, i)
        t_short = time.monotonic()
        for i in range(1, 4):
            self.publish(h, short_ch, i)
        self.stop(h)

        h2 = self.start(cfg)
        body = self.history(h2, long_ch)
        self.assertEqual([e["offset"] for e in body["events"]], [4, 5, 6, 7, 8])   # the last `size`
        self.assertEqual([e["data"] for e in body["events"]], [4, 5, 6, 7, 8])
        self.assertEqual(body["offset"], 8)
        # past the TTL: no events, but the offset stays
        time.sleep(max(0.0, t_short + 2.3 - time.monotonic()))
        body = self.history(h2, short_ch)
        self.assertEqual(body["events"], [])
        self.assertEqual(body["offset"], 3)
        c = h2.ws()
        r = c.subscribe(short_ch, since={short_ch: 1})
        self.assertEqual(r["data"]["offsets"], {short_ch: 3})
        self.assertEqual(r["data"]["recovered"], {short_ch: False}, r)   # history no longer reaches back
        c.close()
        self.assertEqual(self.publish(h2, short_ch, 4)["offset"], 4)
        self.stop(h2)

        # a larger size after the restart shows the store kept only the last 5
        cfg_big = {"history": {"size": 100, "ttl_s": 3600},
                   "channels": [{"pattern": "*", "subscribe": "any", "history": {"size": 100, "ttl_s": 3600}}]}
        h3 = self.start(cfg_big)
        body = self.history(h3, long_ch)
        self.assertEqual([e["offset"] for e in body["events"]], [4, 5, 6, 7, 8])
        self.assertEqual(body["offset"], 8)
        self.stop(h3)

    def test_idempotency_key_repeated_after_restart_is_duplicate(self):
        h = self.start(BIG)
        ch = uniq("idem")
        first = self.publish(h, ch, {"pay": 1}, key="order-42")
        self.assertEqual(first["offset"], 1)
        self.assertNotIn("duplicate", first)
        self.assertEqual(self.publish(h, ch, {"pay": 2})["offset"], 2)
        self.stop(h)

        h2 = self.start(BIG)
        c = h2.ws()
        c.subscribe(ch)
        again = self.publish(h2, ch, {"pay": 1}, key="order-42")
        self.assertEqual(again.get("duplicate"), True, again)
        self.assertEqual(again["offset"], 1)
        self.assertEqual(again["id"], first["id"])
        c.no_message(0.5)   # nothing delivered
        body = self.history(h2, ch)
        self.assertEqual(body["offset"], 2)
        self.assertEqual(len(body["events"]), 2)
        # a new key is a new event, delivered
        r = self.publish(h2, ch, {"pay": 3}, key="order-43")
        self.assertEqual(r["offset"], 3)
        m = c.recv_json(timeout=5.0)
        self.assertEqual((m["offset"], m["data"]), (3, {"pay": 3}))
        c.close()
        self.stop(h2)

    def test_idempotency_key_survives_kill_9(self):
        h = self.start(BIG)
        ch = uniq("idemkill")
        first = self.publish(h, ch, {"pay": 1}, key="k-1")
        self.crash(h)
        h2 = self.start(BIG)
        again = self.publish(h2, ch, {"pay": 1}, key="k-1")
        self.assertEqual((again.get("duplicate"), again["offset"], again["id"]), (True, 1, first["id"]))
        self.stop(h2)


class Pending(DurabilityCase):
    def test_pipelined_publishes_answered_in_order_after_commit(self):
        h = self.start(BIG)
        ch = uniq("pipe")
        c = RawHTTP(h.port, timeout=5.0)
        try:
            c.send(b"".join(request_bytes("POST", "/api/publish", {"channel": ch, "event": "evt", "data": i})
                            for i in range(1, 21)))
            offsets = []
            for _ in range(20):
                st, _hd, raw = c.read_response(timeout=10.0)
                self.assertEqual(st, 200, raw)
                offsets.append(json.loads(raw)["offset"])
            self.assertEqual(offsets, list(range(1, 21)))
        finally:
            c.close()
        body = self.history(h, ch)
        self.assertEqual([e["data"] for e in body["events"]], list(range(1, 21)))
        self.stop(h)

    def test_broadcast_offsets_continue_after_restart(self):
        h = self.start(BIG)
        a, b = uniq("bca"), uniq("bcb")
        st, r = h.post("/api/broadcast", {"channels": [a, b], "event": "evt", "data": 1})
        self.assertEqual((st, r.get("offsets")), (200, {a: 1, b: 1}), r)
        self.publish(h, a, 2)
        self.stop(h)
        h2 = self.start(BIG)
        st, r = h2.post("/api/broadcast", {"channels": [a, b], "event": "evt", "data": 3})
        self.assertEqual((st, r.get("offsets")), (200, {a: 3, b: 2}), r)
        self.assertEqual([e["data"] for e in self.history(h2, a)["events"]], [1, 2, 3])
        self.assertEqual([e["data"] for e in self.history(h2, b)["events"]], [1, 3])
        self.stop(h2)


class MemoryOnly(DurabilityCase):
    def test_durable_false_restart_gives_new_epoch_and_offsets_from_1(self):
        cfg = {"history": {"durable": False}, "channels": BIG["channels"]}
        h = self.start(cfg)
        ch = uniq("mem")
        for i in range(1, 4):
            self.assertEqual(self.publish(h, ch, i)["offset"], i)
        epoch = self.history(h, ch)["epoch"]
        self.stop(h)

        h2 = self.start(cfg)
        body = self.history(h2, ch)
        self.assertNotEqual(body["epoch"], epoch, "memory-only history must announce its loss")
        self.assertEqual(body["events"], [])
        self.assertEqual(body["offset"], 0)
        self.assertEqual(self.publish(h2, ch, "again")["offset"], 1)
        # a client of the old history is told to refetch
        c = h2.ws()
        r = c.subscribe(ch, since={ch: 3}, epoch=epoch)
        self.assertEqual(r["data"]["recovered"], {ch: False}, r)
        c.close()
        self.stop(h2)


if __name__ == "__main__":
    run()
