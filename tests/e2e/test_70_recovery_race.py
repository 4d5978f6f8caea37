"""End-to-end race: recovery under load (SPEC 3 recovery, 9.3, 9.12).

4 publisher threads publish to 3 channels as fast as herald acknowledges (one
keep-alive HTTP connection each), about 2,000 events in all. Meanwhile:
  - 20 native /ws subscribers (Debian's python3-websockets) connect, subscribe to
    the 3 channels (with `since` = the last offset they saw on each channel, after
    their first subscribe), read a random number of events, drop the TCP
    connection without a close frame, and start again;
  - 10 SSE subscribers (raw HTTP) do the same with Last-Event-ID.
At the end each one reads until it has the final offset of every channel. Per
subscriber and channel the offsets must go up by exactly 1 from the position of
its first subscribe (no gap, no duplicate), every event must be the one the
publisher was acknowledged for, every resubscribe must say recovered:true, and
every SSE position must name what that stream has delivered. history.size is
5000, so nothing falls out of history. Bounded: the whole run is under 90 s."""
import asyncio
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HOST, ServerCase, run, uniq  # noqa: E402

PUBLISHERS = 4
PUBLISHES_EACH = 500            # 2,000 in all
WS_SUBSCRIBERS = 20
SSE_SUBSCRIBERS = 10
MAX_READ = 40                   # events read per connection: 0..MAX_READ
CATCH_UP_READ = 600             # the same once publishing is over
RUN_LIMIT_S = 75.0              # the whole race, publishers and subscribers
QUIET_S = 10.0                  # no event for this long while some are due: a failure


class Publisher(threading.Thread):
    def __init__(self, port, channels, count, seed):
        super().__init__(daemon=True)
        self.port, self.channels, self.count = port, channels, count
        self.rng = random.Random(seed)
        self.acks = []          # (channel, offset, id)
        self.error = None

    def run(self):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        deadline = time.monotonic() + RUN_LIMIT_S
        try:
            for i in range(self.count):
                if time.monotonic() > deadline:
                    raise AssertionError("publisher out of time after %d publishes" % i)
                ch = self.rng.choice(self.channels)
                body = json.dumps({"channel": ch, "event": "tick", "data": {"i": i, "by": self.name}})
                conn.request("POST", "/api/publish", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                if r.status != 200:
                    raise AssertionError("publish answered %d %r" % (r.status, raw[:200]))
                ack = json.loads(raw)
                self.acks.append((ch, ack["offset"], ack["id"]))
        except Exception as e:   # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            conn.close()


class Race:
    """What the subscribers share: the channels, the final offsets once known."""

    def __init__(self, channels):
        self.channels = channels
        self.final = None           # {channel: last acknowledged offset}, set when publishers end
        self.publishing = False
        self.stopping = False       # the race is being torn down: later failures are noise
        self.errors = []

    def done_for(self, last):
        return self.final is not None and all(last.get(c) == self.final[c] for c in self.channels)


class Subscriber:
    """Bookkeeping of one subscriber: what it saw per channel, checked as it comes."""

    def __init__(self, name, race, seed):
        self.name, self.race = name, race
        self.rng = random.Random(seed)
        self.start = None           # {channel: offset} of its first subscribe
        self.last = None            # {channel: last offset delivered}
        self.seen = {c: [] for c in race.channels}   # (offset, event id)
        self.connections = 0
        self.recoveries = 0
        self.recoveries_racing = 0  # resubscribes while publishes were in flight

    def fail(self, msg):
        if not self.race.stopping:
            self.race.errors.append("%s: %s" % (self.name, msg))
        raise AssertionError(msg)

    def take(self, env):
        ch, off = env.get("channel"), env.get("offset")
        if ch not in self.last:
            self.fail("event on an unexpected channel %r" % (env,))
        want = self.last[ch] + 1
        if off != want:
            kind = "duplicate" if isinstance(off, int) and off < want else "gap"
            self.fail("%s on %s: offset %r, expected %d (connection %d)" % (kind, ch, off, want, self.connections))
        self.last[ch] = off
        self.seen[ch].append((off, env.get("id")))


def read_budget(sub):
    """Events to read before dropping the connection. Once publishing is over the
    rest is a replay from history: bigger bites, so the catch-up stays short."""
    if sub.race.final is None:
        return sub.rng.randint(0, MAX_READ)
    return sub.rng.randint(0, CATCH_UP_READ)


# -- native WebSocket subscribers ------------------------------------------------------
async def ws_recv(ws, timeout):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def ws_subscriber(port, sub):
    race = sub.race
    while True:
        sub.connections += 1
        ws = await websockets.connect("ws://%s:%d/ws" % (HOST, port), ping_interval=None, open_timeout=5,
                                      close_timeout=1, max_queue=None)
        try:
            hello = await ws_recv(ws, 5)
            if hello.get("type") != "connected":
                sub.fail("first message %r" % (hello,))
            msg = {"type": "subscribe", "id": sub.connections, "channels": race.channels}
            if sub.last is not None:
                msg["since"] = dict(sub.last)
            await ws.send(json.dumps(msg))
            reply = await ws_recv(ws, 5)
            if reply.get("type") != "subscribed" or reply.get("id") != sub.connections:
                sub.fail("subscribe answered %r" % (reply,))
            d = reply["data"]
            if sub.last is None:
                sub.start = dict(d["offsets"])
                sub.last = dict(d["offsets"])
                if "recovered" in d:
                    sub.fail("recovered without since: %r" % (d,))
            else:
                sub.recoveries += 1
                sub.recoveries_racing += race.publishing
                if d.get("recovered") != {c: True for c in race.channels}:
                    sub.fail("resubscribe with since %r: recovered %r" % (msg["since"], d.get("recovered")))
            budget = read_budget(sub)
            while budget > 0:
                if race.done_for(sub.last):
                    return
                try:
                    env = await ws_recv(ws, QUIET_S)
                except asyncio.TimeoutError:
                    sub.fail("no event for %.0f s at %r (final %r)" % (QUIET_S, sub.last, race.final))
                if "offset" not in env:
                    sub.fail("control message among events: %r" % (env,))
                sub.take(env)
                budget -= 1
        finally:
            ws.transport.abort()    # no close frame: the abrupt end a network drop gives
            try:
                await asyncio.wait_for(ws.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(sub.rng.random() * 0.01)


# -- SSE subscribers ---------------------------------------------------------------------
def parse_position(pos):
    out = {}
    for part in pos.split("&"):
        name, eq, off = part.partition("=")
        if not eq or not off.isdigit():
            raise AssertionError("malformed position %r" % pos)
        out[urllib.parse.unquote(name, errors="strict")] = int(off)
    return out


async def sse_block(reader, timeout):
    """The next block's fields [(name, value)] (comment-only blocks skipped)."""
    fields = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise EOFError("stream ended")
        line = line.decode("utf-8").rstrip("\r\n")
        if line == "":
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.append((name, value[1:] if value.startswith(" ") else value))


async def sse_subscriber(port, sub, last_id_box):
    race = sub.race
    query = "&".join("channel=" + urllib.parse.quote(c, safe="") for c in race.channels)
    while True:
        sub.connections += 1
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        try:
            head = "GET /events?%s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n" % (query, HOST, port)
            if last_id_box[0] is not None:
                head += "Last-Event-ID: %s\r\n" % last_id_box[0]
            writer.write((head + "\r\n").encode())
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status = raw.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 200"):
                sub.fail("GET /events answered %r" % raw[:200])
            # The first line is the position as of connecting. (It is read as a line
            # of its own here, whether or not a blank line ends its block.)
            first = (await asyncio.wait_for(reader.readline(), 5)).decode("utf-8").rstrip("\n")
            if not first.startswith("id: "):
                sub.fail("stream starts with %r" % first)
            pos = parse_position(first[4:])
            if set(pos) != set(race.channels):
                sub.fail("first position %r names other channels" % pos)
            if sub.last is None:
                sub.start = dict(pos)
                sub.last = dict(pos)
            else:
                sub.recoveries += 1
                sub.recoveries_racing += race.publishing
                if pos != sub.last:
                    sub.fail("resumed with Last-Event-ID %r: first position %r, expected %r (not recovered?)"
                             % (last_id_box[0], pos, sub.last))
            last_id_box[0] = first[4:]
            budget = read_budget(sub)
            while budget > 0:
                if race.done_for(sub.last):
                    return
                try:
                    fields = await sse_block(reader, QUIET_S)
                except asyncio.TimeoutError:
                    sub.fail("no event for %.0f s at %r (final %r)" % (QUIET_S, sub.last, race.final))
                f = dict(fields)
                if "data" not in f or "id" not in f or f.get("event") != "tick":
                    sub.fail("block %r" % (fields,))
                env = json.loads(f["data"])
                sub.take(env)
                got = parse_position(f["id"])
                if got != sub.last:
                    sub.fail("event %s/%d carries position %r, delivered so far %r"
                             % (env["channel"], env["offset"], got, sub.last))
                last_id_box[0] = f["id"]
                budget -= 1
        finally:
            writer.transport.abort()
        await asyncio.sleep(sub.rng.random() * 0.01)


# -- the test ------------------------------------------------------------------------------
class RecoveryRace(ServerCase):
    CONFIG = {"history": {"size": 5000, "ttl_s": 600},
              "limits": {"messages_per_second": 1000, "connections_per_ip_per_second": 0}}

    def test_reconnecting_subscribers_miss_nothing_under_load(self):
        tag = uniq("race")
        channels = ["a-" + tag, "b:" + tag, "c%&=\u00e9-" + tag]   # the last needs percent-encoding in SSE
        race = Race(channels)
        seed = int(os.environ.get("RACE_SEED", str(int(time.time()))))
        print("seed %d (set RACE_SEED to repeat)" % seed, flush=True)
        rng = random.Random(seed)
        ws_subs = [Subscriber("ws%d" % i, race, rng.random()) for i in range(WS_SUBSCRIBERS)]
        sse_subs = [Subscriber("sse%d" % i, race, rng.random()) for i in range(SSE_SUBSCRIBERS)]
        pubs = [Publisher(self.server.port, channels, PUBLISHES_EACH, rng.random()) for _ in range(PUBLISHERS)]
        port = self.server.port
        t0 = time.monotonic()
        timing = {}

        async def main():
            tasks = [asyncio.ensure_future(ws_subscriber(port, s)) for s in ws_subs]
            tasks += [asyncio.ensure_future(sse_subscriber(port, s, [None])) for s in sse_subs]
            try:
                await race_body(tasks)
            finally:
                race.stopping = True
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        async def race_body(tasks):
            # every subscriber has its starting position before the first publish
            while any(s.start is None for s in ws_subs + sse_subs):
                for t in tasks:
                    if t.done():
                        t.result()
                if time.monotonic() - t0 > 10:
                    raise AssertionError("subscribers did not all subscribe within 10 s")
                await asyncio.sleep(0.02)
            t_pub = time.monotonic()
            race.publishing = True
            for p in pubs:
                p.start()
            while any(p.is_alive() for p in pubs):
                for t in tasks:
                    if t.done():
                        t.result()   # a subscriber that failed ends the race at once
                await asyncio.sleep(0.05)
            for p in pubs:
                if p.error:
                    raise AssertionError("publisher: %s" % p.error)
            race.publishing = False
            timing["publish"] = time.monotonic() - t_pub
            timing["lag"] = {s.name: sum(s.last.values()) for s in ws_subs + sse_subs}
            final = {c: 0 for c in channels}
            for p in pubs:
                for ch, off, _ in p.acks:
                    final[ch] = max(final[ch], off)
            race.final = final
            await asyncio.gather(*tasks)

        try:
            asyncio.run(asyncio.wait_for(main(), RUN_LIMIT_S))
        except asyncio.TimeoutError:
            self.fail("the race did not finish within %.0f s; errors: %r" % (RUN_LIMIT_S, race.errors[:5]))
        finally:
            for p in pubs:
                p.join(timeout=10)
        self.assertEqual(race.errors, [])
        elapsed = time.monotonic() - t0

        # the acknowledged offsets are 1..N per channel, each once
        acks = {}
        for p in pubs:
            for ch, off, eid in p.acks:
                self.assertNotIn((ch, off), acks, "offset acknowledged twice")
                acks[(ch, off)] = eid
        self.assertEqual(len(acks), PUBLISHERS * PUBLISHES_EACH)
        for ch in channels:
            self.assertEqual(sorted(o for c, o in acks if c == ch), list(range(1, race.final[ch] + 1)))

        for s in ws_subs + sse_subs:
            for ch in channels:
                offs = [o for o, _ in s.seen[ch]]
                self.assertEqual(offs, list(range(s.start[ch] + 1, race.final[ch] + 1)),
                                 "%s on %s" % (s.name, ch))
                for o, eid in s.seen[ch]:
                    self.assertEqual(eid, acks[(ch, o)], "%s: %s/%d is not the acknowledged event" % (s.name, ch, o))
            self.assertGreater(s.recoveries, 0, "%s never resubscribed" % s.name)
        n_ws = sum(s.connections for s in ws_subs)
        n_sse = sum(s.connections for s in sse_subs)
        racing_ws = sum(s.recoveries_racing for s in ws_subs)
        racing_sse = sum(s.recoveries_racing for s in sse_subs)
        print("publishing took %.1f s; events each subscriber had by then: %s"
              % (timing["publish"], sorted(timing["lag"].values())), flush=True)
        print("%d publishes, %d ws connections (%d recoveries, %d while publishing), %d sse connections "
              "(%d recoveries, %d while publishing) in %.1f s"
              % (len(acks), n_ws, sum(s.recoveries for s in ws_subs), racing_ws, n_sse,
                 sum(s.recoveries for s in sse_subs), racing_sse, elapsed), flush=True)
        # the race took place: resubscribes overlapped with publishes in flight
        self.assertGreaterEqual(racing_ws, WS_SUBSCRIBERS, "too few ws resubscribes while publishing")
        self.assertGreaterEqual(racing_sse, SSE_SUBSCRIBERS // 2, "too few sse resubscribes while publishing")


if __name__ == "__main__":
    run()
