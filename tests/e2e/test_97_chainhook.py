"""End-to-end: the `chainhook` source (SPEC section 8, docs/sources.md).

Stacks Chainhook payloads from tests/fixtures/chainhook are POSTed to the
source's path, and what herald publishes is read back from a subscribed native
WebSocket client, /api/history, /stats and /metrics:

- the prints of the configured contract reach `stream:{stream-id}` live, named by
  their `event` field, with the printed tuple plus `_chain`; the other contract's
  print goes nowhere; the answer counts what was published;
- a repeated delivery (the same file again, a payload repeating a block)
  publishes nothing new and counts duplicates;
- hex `raw_value`s decode to exactly the JSON of `decode_clarity_values`, an
  amount beyond 2^53 (and beyond 64 bits) included;
- rollbacks publish `<event>:removed` for what was applied, once; a reorg's
  removals come before the sibling block's events; an undecodable print is
  skipped, counted and logged while the rest is published;
- 401, 405, 400 and 413 publish nothing; the record of what was published
  survives a restart; /stats and /metrics count exactly; /health stays 200.

Every test starts its own servers (fresh data dirs unless a restart is the
point) so that offsets and counts are exact. Only processes started here are
signalled, by their Popen handle; every server's exit status is checked."""
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ISO_RE, UUID4_RE, Collector, Herald, RawHTTP, assert_error_json, http,  # noqa: E402
                     run, wait_until)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "chainhook")
CONTRACT = "SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-pay-v1"
OTHER_CONTRACT = "SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-token"
SOURCE = "stacks"
HOOK = "/hooks/chainhook"
SECRET = "Bearer 7f3a9c-chainhook-e2e"
AUTH = {"Authorization": SECRET, "Content-Type": "application/json"}
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

BLOCK_1 = "0x9e632a51a6b0d337a0e214087e296fe76e4567ae69687daaf52cadbcca9aca94"
BLOCK_2 = "0x3968fdbe3864ee37c4d1bebf536941c057a2df66785f02fccad7d0aaa5aa0fbd"
SIBLING = "0x8020ba1a2e23d1586d1ea349368d1d1d25cbbd59bd2c9b0a0636ee6d1facd204"
BIG_AMOUNT = 100000000000000000000   # u100000000000000000000: past 2^53 and past 64 bits

CONFIG = {"sources": [{"type": "chainhook", "name": SOURCE, "path": HOOK, "authorization": SECRET,
                       "prints": [{"contract": CONTRACT, "channel": "stream:{stream-id}", "event": "{event}"}]}]}

# where the other contract's print ({"result": {...}}, no stream-id, no event) could
# plausibly have gone if it were not ignored
PLAUSIBLE_CHANNELS = ["stream:", "stream:{stream-id}", "stream:null", "stream:undefined",
                      "stream:2500000", "stream:3", "stream:0", "stream-token", OTHER_CONTRACT]


# -- fixtures ----------------------------------------------------------------------
def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def fixture_json(name):
    return json.loads(fixture_bytes(name).decode("utf-8"))


def herald_json(v):
    """A decoded Clarity value as herald renders it: integers outside int64 are their
    decimal strings (src/chain/clarity.c's header), the rest unchanged."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v if INT64_MIN <= v <= INT64_MAX else str(v)
    if isinstance(v, dict):
        return {k: herald_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [herald_json(x) for x in v]
    return v


def prints_of(name, contract=CONTRACT):
    """The print events of `contract` in a fixture, in the order herald handles
    them: rollback blocks, then apply blocks; within a transaction by event index.
    Each: {kind, block_index, block_hash, tx_hash, event_index, value (decoded, when
    the fixture has one)}."""
    doc = fixture_json(name)
    out = []
    for kind in ("rollback", "apply"):
        for blk in doc.get(kind) or []:
            bid = blk["block_identifier"]
            for tx in blk["transactions"]:
                found = []
                for ev in tx["metadata"]["receipt"]["events"]:
                    d = ev.get("data") or {}
                    if ev.get("type") != "SmartContractEvent" or d.get("topic") != "print":
                        continue
                    if d.get("contract_identifier") != contract:
                        continue
                    p = {"kind": kind, "block_index": bid["index"], "block_hash": bid["hash"],
                         "tx_hash": tx["transaction_identifier"]["hash"], "event_index": ev["position"]["index"]}
                    if "value" in d:
                        p["value"] = herald_json(d["value"])
                    found.append(p)
                out.extend(sorted(found, key=lambda p: p["event_index"]))
    return out


def expected_event(p, removed=False):
    """(channel, event name, data) that herald publishes for print p."""
    v = p["value"]
    data = dict(v)
    data["_chain"] = {"source": SOURCE, "block_index": p["block_index"], "block_hash": p["block_hash"],
                      "tx_hash": p["tx_hash"], "event_index": p["event_index"], "contract_identifier": CONTRACT,
                      "removed": removed}
    name = v["event"] + (":removed" if removed else "")
    return "stream:%s" % v["stream-id"], name, data


def answer(published=0, removed=0, skipped=0, duplicates=0):
    return {"success": True, "published": published, "removed": removed, "skipped": skipped,
            "duplicates": duplicates}


def compact(doc):
    """A payload trimmed to what a Chainhook delivery needs, compact: small enough
    for a 2 KiB body limit."""
    out = {"apply": [], "rollback": []}
    for kind in ("apply", "rollback"):
        for blk in doc.get(kind) or []:
            txs = []
            for tx in blk["transactions"]:
                evs = [{"type": e["type"], "data": {k: e["data"][k] for k in ("contract_identifier", "topic", "value")},
                        "position": e["position"]}
                       for e in tx["metadata"]["receipt"]["events"]
                       if e["type"] == "SmartContractEvent" and e["data"].get("topic") == "print"]
                txs.append({"transaction_identifier": tx["transaction_identifier"],
                            "metadata": {"receipt": {"events": evs}}})
            out[kind].append({"block_identifier": blk["block_identifier"], "transactions": txs})
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- the cases -----------------------------------------------------------------------
class ChainhookCase(unittest.TestCase):
    """Tracks every server a test starts; each is stopped (exit status 0 asserted)
    at the end of the test, or killed when stopping it failed."""

    def setUp(self):
        self.servers = []
        self.socks = []
        self.dirs = []

    def tearDown(self):
        for c in self.socks:
            c.close()
        errors = []
        for h in self.servers:
            if h.proc is None:
                continue
            try:
                if h.alive():
                    st, body = h.get("/health", timeout=3.0)
                    if st != 200:
                        errors.append("/health answered %d %r at the end of the test" % (st, body))
                h.stop()
            except (AssertionError, OSError) as e:
                errors.append(str(e))
                h.kill()
            finally:
                if h.dir:
                    shutil.rmtree(h.dir, ignore_errors=True)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        if errors:
            self.fail("\n".join(errors))

    # -- servers and clients ------------------------------------------------------
    def start(self, config=None, data_dir=None):
        h = Herald(config or CONFIG, data_dir=data_dir, name=self.id())
        self.servers.append(h)
        return h.start()

    def data_dir(self):
        d = tempfile.mkdtemp(prefix="herald-e2e-chainhook-")
        self.dirs.append(d)
        return d

    def client(self, h, *channels):
        """A native /ws client subscribed to channels, read by a Collector."""
        c = h.ws()
        self.socks.append(c)
        if channels:
            c.subscribe(*channels)
        col = Collector(c)
        col.start()
        self.addCleanup(col.stop)
        return col

    # -- deliveries -----------------------------------------------------------------
    def post(self, h, body, headers=None, method="POST", timeout=10.0):
        """Sends a delivery (bytes, or a fixture's name) as is; checks /health after it."""
        raw = fixture_bytes(body) if isinstance(body, str) else body
        st, r = http(method, h.url(HOOK), raw_body=raw, headers=AUTH if headers is None else headers,
                     timeout=timeout)
        self.assert_healthy(h)
        return st, r

    def deliver(self, h, body, want):
        st, r = self.post(h, body)
        self.assertEqual(st, 200, "delivery of %s: %r" % (body if isinstance(body, str) else "a body", r))
        self.assertEqual(r, want, "the answer to %s" % (body if isinstance(body, str) else "a body"))
        return r

    def assert_healthy(self, h):
        st, body = h.get("/health")
        self.assertEqual(st, 200, "/health: %r" % (body,))
        self.assertEqual(body.get("status"), "ok", body)

    # -- reading back -------------------------------------------------------------------
    def history(self, h, ch):
        st, body = h.get("/api/history?" + urllib.parse.urlencode({"channel": ch, "limit": 1000}))
        self.assertEqual(st, 200, "history of %s: %r" % (ch, body))
        return body

    def offsets(self, h, *channels):
        return {ch: self.history(h, ch)["offset"] for ch in channels}

    def source_stats(self, h):
        s = h.stats()
        self.assertIn("sources", s, s)
        self.assertIn(SOURCE, s["sources"], s["sources"])
        return s["sources"][SOURCE]

    def published_total(self, h):
        return h.stats()["messages"]["published"]

    def assert_nothing_published(self, h):
        self.assertEqual(self.published_total(h), 0, "herald published something")
        self.assertEqual(self.offsets(h, "stream:1", "stream:2", "stream:3"),
                         {"stream:1": 0, "stream:2": 0, "stream:3": 0})
        st = self.source_stats(h)
        self.assertEqual((st["events"], st["removed"], st["duplicates"], st["skipped"]), (0, 0, 0, 0), st)

    def assert_event(self, ev, channel, name, data, offset=None):
        self.assertEqual((ev["channel"], ev["type"]), (channel, name), ev)
        self.assertEqual(ev["data"], data, "data of %s on %s" % (name, channel))
        self.assertRegex(ev["id"], UUID4_RE)
        self.assertRegex(ev["timestamp"], ISO_RE)
        if offset is not None:
            self.assertEqual(ev["offset"], offset, ev)

    def wait_events(self, col, n, timeout=5.0):
        """The first n events the live client received (waits for them)."""
        wait_until(lambda: len(col.events()) >= n or col.error, timeout, what="%d events on the live client" % n)
        self.assertIsNone(col.error, "the live client failed: %r" % col.error)
        return col.events()[:n]

    def assert_no_more(self, col, n, within=0.5):
        time.sleep(within)
        self.assertIsNone(col.error, "the live client failed: %r" % col.error)
        self.assertEqual(len(col.events()), n, "unexpected events: %r" % col.events()[n:])


class Apply(ChainhookCase):
    def test_apply_reaches_subscribed_ws_client_live(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "apply-decoded.json", answer(published=2))
        evs = self.wait_events(col, 2)
        prints = prints_of("apply-decoded.json")
        self.assertEqual(len(prints), 2)
        for ev, p, off in zip(evs, prints, (1, 1)):
            ch, name, data = expected_event(p)
            self.assert_event(ev, ch, name, data, off)
        # the spelled-out form of the first one, so the fixture walk above is checked too
        self.assertEqual(evs[0]["data"], {
            "amount": 1000, "end-block": 154321, "event": "stream-created", "memo": None,
            "recipient": "SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW",
            "sender": "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7", "start-block": 150001, "stream-id": 1,
            "_chain": {"source": "stacks", "block_index": 150001, "block_hash": BLOCK_1,
                       "tx_hash": "0xa73990b74d664565c94a636376c7de36b3a40ee2572b3393dfd96415d116faf9",
                       "event_index": 11, "contract_identifier": CONTRACT, "removed": False}})
        self.assertEqual(evs[1]["data"]["memo"], "rent — march ⭐")
        self.assertEqual(evs[1]["data"]["_chain"]["event_index"], 14)
        # the same events are in history
        for ev in evs:
            hist = self.history(h, ev["channel"])
            self.assertEqual(hist["offset"], 1)
            self.assertEqual(hist["events"], [ev])
        # the stream-token print went nowhere: not to this client ($all included), not
        # to any plausible channel, and herald published two messages in all
        self.assert_no_more(col, 2)
        self.assertEqual(self.published_total(h), 2)
        for ch in PLAUSIBLE_CHANNELS:
            st, body = h.get("/api/history?" + urllib.parse.urlencode({"channel": ch}))
            if st == 200:
                self.assertEqual(body["offset"], 0, "%s got events: %r" % (ch, body))
            else:
                self.assertEqual(st, 400, body)   # not a valid channel name: nothing there either
        st = self.source_stats(h)
        self.assertEqual((st["events"], st["skipped"]), (2, 0), st)

    def test_repeated_delivery_publishes_nothing_new(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "apply-decoded.json", answer(published=2))
        self.wait_events(col, 2)
        before = self.offsets(h, "stream:1", "stream:2")
        self.assertEqual(before, {"stream:1": 1, "stream:2": 1})
        self.deliver(h, "apply-decoded.json", answer(duplicates=2))
        self.deliver(h, "apply-raw.json", answer(duplicates=2))        # the same block, raw values
        self.deliver(h, "duplicate.json", answer(duplicates=4))        # the block twice more
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), before)
        self.assert_no_more(col, 2)
        self.assertEqual(self.published_total(h), 2)
        st = self.source_stats(h)
        self.assertEqual((st["events"], st["duplicates"]), (2, 8), st)

    def test_block_repeated_within_one_delivery_is_published_once(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "duplicate.json", answer(published=2, duplicates=2))
        evs = self.wait_events(col, 2)
        for ev, p in zip(evs, prints_of("apply-decoded.json")):
            self.assert_event(ev, *expected_event(p), offset=1)
        self.assert_no_more(col, 2)
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), {"stream:1": 1, "stream:2": 1})


class Decoding(ChainhookCase):
    def published_data(self, fixture, channels, want):
        """A fresh herald fed fixture: the history of channels (type, channel, data)."""
        h = self.start()
        self.deliver(h, fixture, want)
        out = {}
        for ch in channels:
            out[ch] = [(e["type"], e["channel"], e["data"]) for e in self.history(h, ch)["events"]]
        self.assertEqual(self.published_total(h), sum(len(v) for v in out.values()))
        h.stop()
        return out

    def test_raw_value_gives_the_same_data_as_decoded_value(self):
        chans = ("stream:1", "stream:2")
        decoded = self.published_data("apply-decoded.json", chans, answer(published=2))
        raw = self.published_data("apply-raw.json", chans, answer(published=2))
        both = self.published_data("apply-both.json", chans, answer(published=2))
        want = {ch: [] for ch in chans}
        for p in prints_of("apply-decoded.json"):
            ch, name, data = expected_event(p)
            want[ch].append((name, ch, data))
        self.assertEqual(decoded, want)
        self.assertEqual(raw, decoded, "raw_value decoded differently from decode_clarity_values")
        self.assertEqual(both, decoded)
        # the raw fixture really has no decoded values (the test would prove nothing)
        for p in prints_of("apply-raw.json") + prints_of("apply-raw.json", OTHER_CONTRACT):
            self.assertNotIn("value", p)

    def test_amount_beyond_2_53_is_exact_both_ways(self):
        decoded = self.published_data("apply-big-amount.json", ("stream:3",), answer(published=1))
        raw = self.published_data("apply-big-amount-raw.json", ("stream:3",), answer(published=1))
        (p,) = prints_of("apply-big-amount.json")
        ch, name, data = expected_event(p)
        self.assertEqual(decoded, {"stream:3": [(name, ch, data)]})
        self.assertEqual(raw, decoded)
        data = decoded["stream:3"][0][2]
        # beyond int64: its exact decimal string (clarity.c), never a rounded number
        self.assertEqual(data["amount"], str(BIG_AMOUNT))
        self.assertEqual(data["amount"], "100000000000000000000")
        self.assertEqual((data["stream-id"], data["end-block"], data["start-block"]), (3, 151003, 150003))

    def test_undecodable_print_is_skipped_logged_and_the_rest_published(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "apply-undecodable.json", answer(published=1, skipped=1))
        (ev,) = self.wait_events(col, 1)
        good, bad = prints_of("apply-next.json")   # the same block with decoded values
        self.assert_event(ev, *expected_event(good), offset=1)
        self.assert_no_more(col, 1)
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), {"stream:1": 1, "stream:2": 0})
        st = self.source_stats(h)
        self.assertEqual((st["events"], st["skipped"]), (1, 1), st)

        def warned():
            with open(h.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return [ln for ln in lines if re.search(r'"level"\s*:\s*"warn', ln) and bad["tx_hash"] in ln]
        wait_until(warned, 5.0, what="a warn line naming the undecodable print's transaction")
        # the skipped print was not recorded as published: its block, delivered whole
        # with decoded values, publishes it (and only it)
        self.deliver(h, "apply-next.json", answer(published=1, duplicates=1))
        (ev2,) = self.wait_events(col, 2)[1:]
        self.assert_event(ev2, *expected_event(bad), offset=1)


class Rollback(ChainhookCase):
    def test_rollback_retracts_what_was_applied_once(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "apply-next.json", answer(published=2))
        applied = self.wait_events(col, 2)
        prints = prints_of("apply-next.json")
        for ev, p in zip(applied, prints):
            self.assert_event(ev, *expected_event(p), offset=1)
        self.deliver(h, "rollback.json", answer(removed=2))
        removals = self.wait_events(col, 4)[2:]
        for ev, p, orig in zip(removals, prints, applied):
            ch, name, data = expected_event(p, removed=True)
            self.assertEqual(name, orig["type"] + ":removed")
            self.assertEqual(ch, orig["channel"])
            want = dict(orig["data"])
            want["_chain"] = dict(orig["data"]["_chain"], removed=True)
            self.assertEqual(data, want)
            self.assert_event(ev, ch, name, data, offset=2)
        for ch in ("stream:1", "stream:2"):
            hist = self.history(h, ch)
            self.assertEqual([(e["offset"], e["type"]) for e in hist["events"]],
                             [(1, e["type"]) for e in applied if e["channel"] == ch] +
                             [(2, e["type"]) for e in removals if e["channel"] == ch])
        # a second rollback of the same block retracts nothing more
        st, r = self.post(h, "rollback.json")
        self.assertEqual(st, 200, r)
        self.assertEqual((r.get("success"), r.get("published"), r.get("removed"), r.get("skipped")),
                         (True, 0, 0, 0), r)
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), {"stream:1": 2, "stream:2": 2})
        self.assert_no_more(col, 4)
        st = self.source_stats(h)
        self.assertEqual((st["events"], st["removed"]), (2, 2), st)

    def test_rollback_of_a_block_never_applied_publishes_nothing(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        # another block of the same streams was applied: it is not touched
        self.deliver(h, "apply-decoded.json", answer(published=2))
        self.wait_events(col, 2)
        st, r = self.post(h, "rollback.json")
        self.assertEqual(st, 200, r)
        self.assertEqual((r.get("success"), r.get("published"), r.get("removed"), r.get("skipped")),
                         (True, 0, 0, 0), r)
        self.assert_no_more(col, 2)
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), {"stream:1": 1, "stream:2": 1})
        self.assertEqual(self.source_stats(h)["removed"], 0)

    def test_reorg_removals_come_before_the_sibling_block(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        self.deliver(h, "apply-next.json", answer(published=2))
        self.wait_events(col, 2)
        self.deliver(h, "reorg.json", answer(published=2, removed=2))
        evs = self.wait_events(col, 6)[2:]
        self.assert_no_more(col, 6)
        prints = prints_of("reorg.json")
        rolled = [p for p in prints if p["kind"] == "rollback"]
        sibling = [p for p in prints if p["kind"] == "apply"]
        self.assertEqual({p["block_hash"] for p in rolled}, {BLOCK_2})
        self.assertEqual({p["block_hash"] for p in sibling}, {SIBLING})
        # on the live client: both removals, then the sibling's two events
        want = [expected_event(p, removed=True) for p in rolled] + [expected_event(p) for p in sibling]
        self.assertEqual([(e["channel"], e["type"]) for e in evs], [w[:2] for w in want])
        for ev, w in zip(evs, want):
            self.assert_event(ev, *w)
        # in history: on each channel the removal's offset is below the sibling's event
        for ch in ("stream:1", "stream:2"):
            hist = self.history(h, ch)["events"]
            self.assertEqual([e["offset"] for e in hist], [1, 2, 3], hist)
            self.assertTrue(hist[1]["type"].endswith(":removed"), hist[1])
            self.assertIs(hist[1]["data"]["_chain"]["removed"], True)
            self.assertEqual(hist[1]["data"]["_chain"]["block_hash"], BLOCK_2)
            self.assertFalse(hist[2]["type"].endswith(":removed"), hist[2])
            self.assertEqual(hist[2]["data"]["_chain"]["block_hash"], SIBLING)
            self.assertIs(hist[2]["data"]["_chain"]["removed"], False)
        # the sibling's print of the transaction that was in the rolled-back block too
        # is a new event (another block), with its own event index
        again = [p for p in sibling if p["tx_hash"] in {q["tx_hash"] for q in rolled}]
        self.assertEqual(len(again), 1)
        hist1 = self.history(h, "stream:1")["events"]
        self.assertEqual(hist1[2]["data"], expected_event(again[0])[2])
        # delivered again, the reorg changes nothing
        st, r = self.post(h, "reorg.json")
        self.assertEqual(st, 200, r)
        self.assertEqual((r.get("success"), r.get("published"), r.get("removed")), (True, 0, 0), r)
        self.assertGreaterEqual(r.get("duplicates"), 2, r)   # the sibling's two prints
        self.assertEqual(self.offsets(h, "stream:1", "stream:2"), {"stream:1": 3, "stream:2": 3})


class Refusals(ChainhookCase):
    def test_authorization_is_required_and_exact(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        body = fixture_bytes("apply-decoded.json")
        for hdrs in ({"Content-Type": "application/json"},
                     {"Authorization": "Bearer wrong", "Content-Type": "application/json"},
                     {"Authorization": SECRET + "x", "Content-Type": "application/json"},
                     {"Authorization": SECRET[:-1], "Content-Type": "application/json"},
                     {"Authorization": SECRET.lower(), "Content-Type": "application/json"},
                     {"Authorization": "", "Content-Type": "application/json"}):
            st, r = self.post(h, body, headers=hdrs)
            assert_error_json(self, st, r, 401)
        self.assert_no_more(col, 0)
        self.assert_nothing_published(h)
        # with the right header the same body is a first delivery
        self.deliver(h, body, answer(published=2))

    def test_without_authorization_only_direct_loopback_requests_are_taken(self):
        src = dict(CONFIG["sources"][0])
        del src["authorization"]
        h = self.start({"sources": [src]})
        with open(h.log_path, "rb") as f:
            records = [json.loads(ln) for ln in f.read().decode("utf-8", "replace").splitlines()
                       if ln.startswith("{")]
        warned = [rec for rec in records if "without authorization" in rec.get("msg", "")]
        self.assertEqual(len(warned), 1, h.log_tail(20))
        self.assertEqual((warned[0]["level"], warned[0]["source"]), ("warn", SOURCE))
        plain = {"Content-Type": "application/json"}
        body = fixture_bytes("apply-decoded.json")
        # through a proxy on this host: refused whatever else it carries
        for extra in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"},
                      {"X-Forwarded-For": "203.0.113.7", "Authorization": SECRET}):
            st, r = self.post(h, body, headers=dict(plain, **extra))
            assert_error_json(self, st, r, 403)
        self.assert_nothing_published(h)
        # a direct loopback request (a Chainhook node on this host) is taken
        st, r = self.post(h, body, headers=plain)
        self.assertEqual((st, r), (200, answer(published=2)))

    def test_other_methods_than_post_get_405(self):
        h = self.start()
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            raw = fixture_bytes("apply-decoded.json") if method in ("PUT", "PATCH") else None
            st, r = self.post(h, raw, method=method)
            assert_error_json(self, st, r, 405)
        self.assert_nothing_published(h)

    def test_malformed_bodies_get_400_and_change_nothing(self):
        h = self.start()
        col = self.client(h, "stream:1", "stream:2")
        names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, "malformed-*.json")))
        self.assertGreaterEqual(len(names), 7, names)
        for name in names:
            st, r = self.post(h, name)
            assert_error_json(self, st, r, 400)
        for body in (b"", b"null", b"[]", b"{}", b"\"apply\"", b"{\"apply\": null}"):
            st, r = self.post(h, body)
            assert_error_json(self, st, r, 400)
        self.assert_no_more(col, 0)
        self.assert_nothing_published(h)
        # malformed-print-no-contract and -tx-no-hash carry good prints of block
        # 0x3968fd...: none was recorded, the real delivery publishes both
        self.deliver(h, "apply-next.json", answer(published=2))

    def test_body_over_max_body_bytes_gets_413(self):
        cfg = dict(CONFIG, limits={"max_body_bytes": 2048})
        h = self.start(cfg)
        big = fixture_bytes("apply-decoded.json")
        small = compact(fixture_json("apply-next.json"))
        self.assertGreater(len(big), 2048)
        self.assertLess(len(small), 2048)
        # raw, so that a server closing the connection after its answer is read right
        c = RawHTTP(h.port, timeout=5.0)
        try:
            head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (HOOK, SECRET, len(big)))
            try:
                c.send(head.encode() + big)
            except OSError:
                pass   # refused before the whole body went out: the answer is still there
            st, _hdrs, raw = c.read_response(timeout=5.0)
        finally:
            c.close()
        self.assertEqual(st, 413, raw[:200])
        self.assert_healthy(h)
        self.assert_nothing_published(h)
        # under the limit, a delivery is taken
        self.deliver(h, small, answer(published=2))


class Restart(ChainhookCase):
    def test_record_survives_restart(self):
        d = self.data_dir()
        h1 = self.start(data_dir=d)
        self.deliver(h1, "apply-decoded.json", answer(published=2))
        self.deliver(h1, "apply-next.json", answer(published=2))
        before = self.offsets(h1, "stream:1", "stream:2")
        self.assertEqual(before, {"stream:1": 2, "stream:2": 2})
        applied = {ch: self.history(h1, ch)["events"] for ch in before}
        h1.stop()
        h2 = self.start(data_dir=d)
        col = self.client(h2, "stream:1", "stream:2")
        # what was published before the restart is not published again
        self.deliver(h2, "apply-decoded.json", answer(duplicates=2))
        self.deliver(h2, "apply-next.json", answer(duplicates=2))
        self.assertEqual(self.offsets(h2, "stream:1", "stream:2"), before)
        self.assert_no_more(col, 0)
        # and a rollback after the restart retracts what was applied before it
        self.deliver(h2, "rollback.json", answer(removed=2))
        evs = self.wait_events(col, 2)
        for ev in evs:
            orig = applied[ev["channel"]][1]   # apply-next's event on that channel
            self.assertEqual(orig["data"]["_chain"]["block_hash"], BLOCK_2)
            self.assertEqual(ev["type"], orig["type"] + ":removed")
            self.assertEqual(ev["data"], dict(orig["data"], _chain=dict(orig["data"]["_chain"], removed=True)))
            self.assertEqual(ev["offset"], 3)
        self.assertEqual(sorted(e["channel"] for e in evs), ["stream:1", "stream:2"])
        self.assert_no_more(col, 2)
        h2.stop()
        # and the retraction too is remembered across a restart
        h3 = self.start(data_dir=d)
        st, r = self.post(h3, "rollback.json")
        self.assertEqual(st, 200, r)
        self.assertEqual((r.get("published"), r.get("removed")), (0, 0), r)
        self.assertEqual(self.offsets(h3, "stream:1", "stream:2"), {"stream:1": 3, "stream:2": 3})


class Observability(ChainhookCase):
    def test_stats_and_metrics_count_exactly(self):
        h = self.start()
        st = self.source_stats(h)
        self.assertEqual(st, {"type": "chainhook", "events": 0, "removed": 0, "duplicates": 0, "skipped": 0})
        self.deliver(h, "apply-decoded.json", answer(published=2))
        self.deliver(h, "apply-decoded.json", answer(duplicates=2))
        self.deliver(h, "duplicate.json", answer(duplicates=4))
        self.deliver(h, "apply-undecodable.json", answer(published=1, skipped=1))
        self.deliver(h, "apply-next.json", answer(published=1, duplicates=1))
        self.deliver(h, "rollback.json", answer(removed=2))
        self.deliver(h, "apply-big-amount-raw.json", answer(published=1))
        # refusals count nowhere
        self.assertEqual(self.post(h, b"{}")[0], 400)
        self.assertEqual(self.post(h, "apply-next.json", headers={})[0], 401)
        st = self.source_stats(h)
        self.assertEqual(st, {"type": "chainhook", "events": 5, "removed": 2, "duplicates": 7, "skipped": 1})
        self.assertNotIn("connected", st)   # evm only
        self.assertNotIn("block", st)
        self.assertEqual(self.published_total(h), 7)
        status, text = h.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIsInstance(text, str)
        m = re.findall(r'^herald_source_events_total\{source="stacks"\} (\d+)$', text, re.M)
        self.assertEqual(m, ["5"], text[-2000:])
        self.assertNotRegex(text, r'herald_source_connected\{source="stacks"\}')
        self.assertNotRegex(text, r'herald_source_block\{source="stacks"\}')
        self.assertIn("# TYPE herald_source_events_total counter", text)


if __name__ == "__main__":
    run()
