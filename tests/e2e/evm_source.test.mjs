// End-to-end: herald's `evm` source (SPEC section 8, "Sources configuration and
// data") against a real local Ethereum node, the npm `ganache` 7, running a tipping
// contract (chain/Tipping.sol) compiled by npm `solc` and driven by npm `ethers`.
// The app modelled: viewers tip creators in ETH, the overlay of each creator holds
// a WebSocket on creator:<address> and shows TIP_SENT.
//
// herald reaches the node through chain/evm.mjs's RpcProxy, which records the calls,
// drops and refuses connections (the node going away), and injects `removed: true`
// logs (a reorg: no npm node emits one). Each test deploys its own contract, so a
// herald sees only that test's logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ethers } from 'ethers';
import { startHerald, api, stats, waitFor, sleep, connect, freePort, HeraldProcess } from './harness.mjs';
import { Ganache, Chain, RpcProxy, SIGNATURES, CHAIN_ID, compileTipping } from './chain/evm.mjs';

const T = { timeout: 150000 };
const SOURCE = 'tips';
const WAIT_BACK_MS = 45000;   // reconnect backoff tops out at 30 s (with jitter)

let ganache;
let chain;

before(async () => {
  compileTipping();
  ganache = new Ganache();
  await ganache.start();
  chain = new Chain(ganache);
});

after(async () => {
  chain?.destroy();
  await ganache?.stop();
  ganache?.cleanup();
});

// -- herald configuration -------------------------------------------------------------

function heraldConfig(proxy, address, source = {}) {
  return {
    channels: [{ pattern: '*', subscribe: 'any', history: { size: 1000, ttl_s: 3600 } }],
    sources: [{
      type: 'evm', name: SOURCE, url: proxy.url, address,
      start_block: 'earliest', confirmations: 0, backfill_max_range: 2000,
      events: [
        { signature: SIGNATURES.TipSent, channel: 'creator:{creator}', event: 'TIP_SENT' },
        { signature: SIGNATURES.Settled, channel: 'settle:{id}', event: 'SETTLED' },
        { signature: SIGNATURES.Noted, channel: 'notes:{who}' },   // event name: the signature's, "Noted"
      ],
      ...source,
    }],
  };
}


// -- shared steps -------------------------------------------------------------------------

const randomCreator = () => ethers.Wallet.createRandom().address;   // checksummed; herald lowercases
const keyOf = (x) => (x._chain ? `${x._chain.tx_hash}:${x._chain.log_index}` : `${x.txHash}:${x.logIndex}`);

async function sourceStats(server) {
  const s = await stats(server);
  return s?.sources?.[SOURCE];
}

// herald's logs subscription is confirmed by the node (through the proxy) and /stats says connected.
async function waitSubscribed(server, proxy, { heads = false } = {}) {
  await waitFor(() => proxy.subscribed().length > 0, 20000, 'herald\'s eth_subscribe logs through the proxy');
  if (heads) await waitFor(() => proxy.headsSubscribed().length > 0, 10000, 'herald\'s eth_subscribe newHeads (confirmations > 0)');
  await waitFor(async () => (await sourceStats(server))?.connected === true, 10000, `/stats sources.${SOURCE}.connected true`);
}

async function subscribe(server, channels) {
  const c = await connect(server);
  const r = await c.request({ type: 'subscribe', channels, id: 'sub' });
  assert.equal(r.type, 'subscribed', JSON.stringify(r));
  return c;
}

const received = (c, type = 'TIP_SENT') => c.queue.filter((m) => m.type === type);

async function waitReceived(c, n, timeoutMs = 15000, type = 'TIP_SENT') {
  await waitFor(() => received(c, type).length >= n, timeoutMs, `${n} ${type} on the client (have ${received(c, type).length})`);
  return received(c, type);
}

// Waits for n events of type and takes them off the client's queue.
async function take(c, n, timeoutMs = 15000, type = 'TIP_SENT') {
  await waitReceived(c, n, timeoutMs, type);
  const got = [];
  for (let i = 0; i < n; i++) got.push(c.queue.splice(c.queue.findIndex((m) => m.type === type), 1)[0]);
  return got;
}

async function history(server, channel) {
  const r = await api(server, 'GET', `/api/history?channel=${encodeURIComponent(channel)}&since=0&limit=1000`);
  if (r.status === 404) return [];
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.events;
}

function expectedTip(address, log, tipper, creator, amount, tipMode) {
  return {
    tipper, creator: creator.toLowerCase(), amount: String(amount), tipMode,
    _chain: chainMeta(address, log),
  };
}

function chainMeta(address, log, removed = false) {
  return {
    source: SOURCE, chain_id: CHAIN_ID, address, block_number: log.blockNumber, block_hash: log.blockHash,
    tx_hash: log.txHash, log_index: log.logIndex, removed,
  };
}

// Every event once, in the order given, with offsets increasing by one.
function assertExactlyOnceInOrder(events, sentLogs, what) {
  const keys = events.map((e) => keyOf(e.data));
  const dupes = keys.filter((k, i) => keys.indexOf(k) !== i);
  assert.deepEqual(dupes, [], `${what}: duplicates`);
  assert.deepEqual(keys, sentLogs.map(keyOf), `${what}: every tip once, in chain order`);
  for (let i = 1; i < events.length; i++) {
    assert.equal(events[i].offset, events[i - 1].offset + 1, `${what}: offsets ${events[i - 1].offset} then ${events[i].offset}`);
  }
}

// /health and /stats sources.<name>.connected, sampled every 100 ms until stopped.
function watch(server) {
  const w = { health: [], connected: [], stopped: false };
  w.done = (async () => {
    for (let i = 0; i < 3000 && !w.stopped; i++) {
      try {
        const r = await fetch(server.url('/health'), { signal: AbortSignal.timeout(3000) });
        await r.text();
        w.health.push(r.status);
      } catch (e) {
        w.health.push(`${e.name}`);
      }
      try {
        const s = await sourceStats(server);
        const v = s?.connected;
        if (w.connected[w.connected.length - 1] !== v) w.connected.push(v);
      } catch { /* counted by /health */ }
      await sleep(100);
    }
  })();
  w.stop = async () => { w.stopped = true; await w.done; };
  return w;
}

function metricValue(text, name, source = SOURCE) {
  const re = new RegExp(`^${name}\\{source="${source}"\\} ([0-9.e+-]+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : undefined;
}

async function metrics(server) {
  const r = await fetch(server.url('/metrics'), { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  return r.text();
}

// One test's herald: a proxy to the node, then a herald whose source follows dep
// (heraldConfig with `source` on top; a function of the proxy when it needs its
// URL), subscribed to the node. prepare(proxy) runs before herald starts. body
// gets { proxy, server, track }: track(client) closes the client afterwards. On a
// failure herald's log is printed; herald and the proxy are stopped either way.
async function withHerald(dep, source, body, { heads = false, prepare } = {}) {
  const proxy = await new RpcProxy(ganache.wsUrl).start();
  prepare?.(proxy);
  const clients = [];
  let server;
  try {
    server = await startHerald(heraldConfig(proxy, dep.address, typeof source === 'function' ? source(proxy) : source));
    await waitSubscribed(server, proxy, { heads });
    await body({ proxy, server, track: (c) => { clients.push(c); return c; } });
  } catch (e) {
    if (server) console.error(server.logTail());
    throw e;
  } finally {
    for (const c of clients) c.close();
    await proxy.stop();
    await server?.stop();
  }
}

// -- a. decoding and routing --------------------------------------------------------------

test('a. tips reach the right creator channels with decoded fields; Settled and Noted decode every type', T, async () => {
  const dep = await chain.deploy();
  await withHerald(dep, { start_block: dep.blockNumber }, async ({ server, track }) => {
    const A = randomCreator(); const B = randomCreator(); const idle = randomCreator();
    const cA = track(await subscribe(server, [`creator:${A.toLowerCase()}`]));
    const cB = track(await subscribe(server, [`creator:${B.toLowerCase()}`]));
    const cIdle = track(await subscribe(server, [`creator:${idle.toLowerCase()}`]));
    const tipper = await chain.address(1);

    // 0.05 ETH, "instant"
    const t1 = (await chain.tip(dep.contract, A, 50000000000000000n, 'instant')).logs[0];
    const m1 = await cA.next((m) => m.type === 'TIP_SENT', 10000);
    assert.equal(m1.channel, `creator:${A.toLowerCase()}`);
    assert.deepEqual(m1.data, expectedTip(dep.address, t1, tipper, A, '50000000000000000', 'instant'));
    assert.deepEqual(m1.data, {
      tipper, creator: A.toLowerCase(), amount: '50000000000000000', tipMode: 'instant',
      _chain: { source: 'tips', chain_id: 1337, address: dep.address, block_number: t1.blockNumber,
        block_hash: t1.blockHash, tx_hash: t1.txHash, log_index: 0, removed: false },
    });
    assert.equal(typeof m1.offset, 'number');

    // wei beyond 2^53, a UTF-8 tip mode, to B
    const big = 123456789012345678901n;
    const t2 = (await chain.tip(dep.contract, B, big, 'live ✨ «boost»', 2)).logs[0];
    const m2 = await cB.next((m) => m.type === 'TIP_SENT', 10000);
    assert.deepEqual(m2.data, expectedTip(dep.address, t2, await chain.address(2), B, big.toString(), 'live ✨ «boost»'));

    // one transaction, three logs: A, B, A with log indexes 0, 1, 2
    const many = (await chain.tipMany(dep.contract, [A, B, A], 10n ** 15n, 'split')).logs;
    assert.deepEqual(many.map((l) => l.logIndex), [0, 1, 2]);
    const mA = await take(cA, 2, 10000);
    const mB = await take(cB, 1, 10000);
    assert.deepEqual(mA.map((m) => m.data), [
      expectedTip(dep.address, many[0], tipper, A, 10n ** 15n, 'split'),
      expectedTip(dep.address, many[2], tipper, A, 10n ** 15n, 'split')]);
    assert.deepEqual(mB.map((m) => m.data), [expectedTip(dep.address, many[1], tipper, B, 10n ** 15n, 'split')]);
    assert.ok(mA[1].offset === mA[0].offset + 1);

    // Settled: bytes32 indexed, int256 at its minimum and maximum, bool, bytes, uint8[]
    const id1 = ethers.id('settlement-1'); const id2 = ethers.id('settlement-2');
    const cS = track(await subscribe(server, [`settle:${id1}`, `settle:${id2}`]));
    const s1 = (await chain.settle(dep.contract, { id: id1, delta: -(2n ** 255n), ok: true, memo: '0xdeadbeef00', parts: [1, 2, 255] })).logs[0];
    const s2 = (await chain.settle(dep.contract, { id: id2, delta: 2n ** 255n - 1n, ok: false, memo: '0x', parts: [] })).logs[0];
    const settled = await take(cS, 2, 10000, 'SETTLED');
    assert.equal(settled[0].channel, `settle:${id1}`);
    assert.equal(settled[1].channel, `settle:${id2}`);
    assert.deepEqual(settled[0].data, {
      id: id1, delta: '-57896044618658097711785492504343953926634992332820282019728792003956564819968', ok: true,
      memo: '0xdeadbeef00', parts: ['1', '2', '255'], _chain: chainMeta(dep.address, s1),
    });
    assert.deepEqual(settled[1].data, {
      id: id2, delta: '57896044618658097711785492504343953926634992332820282019728792003956564819967', ok: false,
      memo: '0x', parts: [], _chain: chainMeta(dep.address, s2),
    });

    // Noted: an indexed string is its topic hash; address, bytes4, uint64, int8, uint16[2]
    const who = await chain.address(3);
    const cN = track(await subscribe(server, [`notes:${who}`]));
    const n1 = (await chain.note(dep.contract, { tag: 'shout-out ✓', sel: '0x12345678', small: -128, pair: [65535, 0] })).logs[0];
    const noted = await cN.next((m) => m.type === 'Noted', 10000);
    assert.deepEqual(noted.data, {
      tag: ethers.id('shout-out ✓'), who, sel: '0x12345678', seq: '1', small: '-128', pair: ['65535', '0'],
      _chain: chainMeta(dep.address, n1),
    });

    // nothing strays: B got none of A's, the idle creator nothing at all
    await sleep(1000);
    assert.equal(received(cA).length, 0, JSON.stringify(cA.queue));
    assert.equal(received(cB).length, 0, JSON.stringify(cB.queue));
    assert.deepEqual(cIdle.queue, [], 'the idle creator\'s channel gets nothing');
    assert.deepEqual(cS.queue, []);
    assert.deepEqual(cN.queue, []);

    // the same events in /api/history, in the envelope they were delivered in
    const hA = await history(server, `creator:${A.toLowerCase()}`);
    assert.deepEqual(hA.map((e) => keyOf(e.data)), [t1, many[0], many[2]].map(keyOf));
    assert.deepEqual(hA[0].data, m1.data);
    assert.equal(hA[0].type ?? hA[0].event, 'TIP_SENT');
  });
});

test('a2. herald answers the node\'s WebSocket pings; the API key in the node\'s URL is never logged', T, async () => {
  const dep = await chain.deploy();
  const KEY = 'e2e-provider-key-5f1c9a';   // as providers put it: wss://host/v3/<key>
  const source = (proxy) => ({ start_block: dep.blockNumber, url: `${proxy.url}/v3/${KEY}?apikey=${KEY}` });
  await withHerald(dep, source, async ({ proxy, server, track }) => {
    let log = '';
    await waitFor(() => (log = fs.readFileSync(server.logPath, 'utf8')).includes('evm source connected'), 5000,
      'the connected log line');
    assert.match(log, new RegExp(`"msg":"evm source connected".*"endpoint":"ws://127\\.0\\.0\\.1:${proxy.port}"`));
    assert.ok(!log.includes(KEY), 'the key appears in the log');
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await proxy.pingClients(3000), { asked: 1, answered: 1 }, `ping ${i}`);
    }
    // and the connection still works afterwards
    const A = randomCreator();
    const c = track(await subscribe(server, [`creator:${A.toLowerCase()}`]));
    await chain.tip(dep.contract, A, 1n, 'after-pings');
    await c.next((m) => m.type === 'TIP_SENT', 10000);
  });
});

test('a3. replies are matched by id: decoy replies under stale and future ids, sent first, change nothing', T, async () => {
  const dep = await chain.deploy();
  const A = randomCreator(); const D = randomCreator();
  const t0 = (await chain.tip(dep.contract, A, 7n, 'before-start')).logs[0];   // reaches herald by eth_getLogs
  const raw = await chain.rawLog(t0.blockHash, t0.logIndex);
  // a well-formed TipSent to D that never happened: published only if a decoy is taken for eth_getLogs
  const fake = { ...raw, topics: [raw.topics[0], raw.topics[1], ethers.zeroPadValue(D, 32)],
    blockHash: `0x${'ab'.repeat(32)}`, transactionHash: `0x${'cd'.repeat(32)}` };
  const decoy = (req) => {
    switch (req.method) {
      case 'eth_chainId': return { result: '0x1' };
      case 'eth_blockNumber': return { result: '0xffffff' };
      case 'eth_getLogs': return { result: [fake] };
      case 'eth_subscribe': return { result: '0xdec0' };
      default: return { error: { code: -32000, message: 'decoy' } };
    }
  };
  await withHerald(dep, { start_block: dep.blockNumber }, async ({ proxy, server, track }) => {
    // the backfill may end after the subscription is confirmed: t0 first, then the client
    await waitFor(async () => (await sourceStats(server))?.events === 1, 10000, 'the backfilled tip published');
    const c = track(await subscribe(server, [`creator:${A.toLowerCase()}`, `creator:${D.toLowerCase()}`]));
    const t1 = (await chain.tip(dep.contract, A, 8n, 'live')).logs[0];
    const live = await c.next((m) => m.type === 'TIP_SENT', 10000);
    assert.deepEqual(live.data, expectedTip(dep.address, t1, await chain.address(1), A, 8n, 'live'));
    assert.ok(proxy.decoysSent >= 6, `decoys sent: ${proxy.decoysSent}`);
    await sleep(500);
    const hA = await history(server, `creator:${A.toLowerCase()}`);
    assert.deepEqual(hA.map((e) => keyOf(e.data)), [t0, t1].map(keyOf), 'the real tips, once each');
    assert.equal(hA[0].data._chain.chain_id, CHAIN_ID, 'eth_chainId from its own reply');
    assert.deepEqual(await history(server, `creator:${D.toLowerCase()}`), [], 'the decoy log was not taken');
    assert.deepEqual(received(c).length, 0, JSON.stringify(c.queue));
    const s = await sourceStats(server);
    assert.ok(s.block <= await chain.head(), `stats block ${s.block} is not the decoy head`);
  }, { prepare: (proxy) => { proxy.decoy = decoy; } });
});

// -- b. the node goes away ------------------------------------------------------------------

test('b. the node dropped, restarted, and both: tips sent meanwhile are backfilled in order, once; /health stays 200', T, async () => {
  const dep = await chain.deploy();
  const proxy = await new RpcProxy(ganache.wsUrl).start();
  const server = await startHerald(heraldConfig(proxy, dep.address, { start_block: dep.blockNumber }));
  const w = watch(server);
  let c;
  try {
    await waitSubscribed(server, proxy);
    const A = randomCreator();
    c = await subscribe(server, [`creator:${A.toLowerCase()}`]);
    const sent = [];
    const tip = async (mode) => {
      const log = (await chain.tip(dep.contract, A, 10n ** 15n + BigInt(sent.length), mode)).logs[0];
      sent.push(log);
      return log;
    };
    const connectedIs = (v, ms) => waitFor(async () => (await sourceStats(server))?.connected === v, ms,
      `/stats sources.${SOURCE}.connected ${v}`, 25);

    await tip('live-1');
    await waitReceived(c, 1);

    // 1. the node unreachable: connections dropped and refused; three tips and two empty blocks meanwhile
    await proxy.refuse();
    await connectedIs(false, 10000);
    await tip('unreachable-1');
    await chain.mine(2);
    await tip('unreachable-2');
    await tip('unreachable-3');
    await sleep(1000);
    assert.equal(received(c).length, 1, 'nothing is published while the node cannot be reached');
    await proxy.accept();
    await connectedIs(true, WAIT_BACK_MS);
    await waitReceived(c, 4, WAIT_BACK_MS);

    // 2. ganache itself stopped and started again (same port, same database) under herald
    const head = await chain.head();
    await ganache.stop();
    await connectedIs(false, 10000);
    await ganache.start();
    assert.equal(await chain.head(), head, 'ganache kept its chain');
    await tip('node-restarted-1');
    await tip('node-restarted-2');
    await connectedIs(true, WAIT_BACK_MS);
    await waitReceived(c, 6, WAIT_BACK_MS);

    // 3. both: unreachable, a tip, ganache restarted, a tip, reachable again
    await proxy.refuse();
    await connectedIs(false, 10000);
    await tip('both-1');
    await ganache.restart();
    await tip('both-2');
    await proxy.accept();
    await connectedIs(true, WAIT_BACK_MS);
    await waitReceived(c, 8, WAIT_BACK_MS);

    await sleep(1500);   // a duplicate would have arrived by now
    assertExactlyOnceInOrder(received(c), sent, 'live client');
    assertExactlyOnceInOrder(await history(server, `creator:${A.toLowerCase()}`), sent, '/api/history');
    for (const [i, m] of received(c).entries()) {
      assert.equal(m.data.amount, String(10n ** 15n + BigInt(i)));
      assert.equal(m.data._chain.removed, false);
    }
    assert.ok(proxy.accepted >= 4, `herald reconnected (${proxy.accepted} connections)`);
    await w.stop();
    assert.ok(w.health.length > 10, `health sampled ${w.health.length} times`);
    assert.deepEqual(w.health.filter((s) => s !== 200), [], '/health answered 200 throughout');
    const up = w.connected.indexOf(true);
    const down = up < 0 ? -1 : w.connected.indexOf(false, up);
    assert.ok(up >= 0 && down > up && w.connected.indexOf(true, down) > down,
      `/stats connected went true, false, true: ${JSON.stringify(w.connected)}`);
  } catch (e) {
    console.error(`${server.logTail()}\n${ganache.logTail(10)}`);
    throw e;
  } finally {
    await w.stop();
    c?.close();
    await proxy.stop();
    await server.stop();
  }
});

// -- c. herald restarted ----------------------------------------------------------------------

// Tips are sent every 150 ms in the background while herald is stopped (SIGTERM, or
// SIGKILL: a crash) and started again on the same data dir, `rounds` times; each
// time at least two more tips are published before the stop and four more are sent
// while herald is down. The sender goes on until the rounds are over and at least
// 8 * rounds + 8 tips are sent (at most 200, however slow the machine). Afterwards
// the channel's history holds each tip once, in order.
async function restartWhileTipping(how, { rounds = 1, downMs = 0, history: hist } = {}) {
  const dep = await chain.deploy();
  const proxy = await new RpcProxy(ganache.wsUrl).start();
  const config = heraldConfig(proxy, dep.address, { start_block: 'earliest' });
  if (hist) config.history = hist;
  const herald = new HeraldProcess(config, 'herald-e2e-evm-');
  const port = await freePort();
  const A = randomCreator();
  const channel = `creator:${A.toLowerCase()}`;
  const sent = [];
  const TOTAL = 8 * rounds + 8;
  let failure = null;
  let stopSending = false;
  let roundsOver = false;
  let sender;
  try {
    await herald.start(port);
    await waitSubscribed(herald, proxy);
    sender = (async () => {
      for (let i = 0; i < 200 && !stopSending && !(roundsOver && i >= TOTAL); i++) {
        try {
          sent.push((await chain.tip(dep.contract, A, BigInt(1000 + i), `${how}-${i}`)).logs[0]);
        } catch (e) { failure = e; return; }
        await sleep(150);
      }
    })();
    for (let round = 0; round < rounds; round++) {
      const before = (await history(herald, channel)).length;
      await waitFor(async () => (await history(herald, channel)).length >= before + 2 || failure, 20000,
        `two more tips published before stop ${round + 1}`);
      if (how === 'sigterm') await herald.stop();
      else await herald.kill();
      const downAt = sent.length;
      const downSince = Date.now();
      await waitFor(() => (sent.length >= downAt + 4 && Date.now() - downSince >= downMs) || failure, 20000 + downMs,
        `4 more tips while herald is down (${round + 1})`);
      await herald.start(port);
      if (failure) throw failure;
    }
    roundsOver = true;
    await sender;
    if (failure) throw failure;
    assert.ok(sent.length >= TOTAL && sent.length <= 200, `${sent.length} tips sent`);
    await waitFor(async () => (await history(herald, channel)).length >= sent.length, 30000,
      `all ${sent.length} tips in /api/history`);
    await sleep(1500);   // a duplicate would have arrived by now
    const events = await history(herald, channel);
    assertExactlyOnceInOrder(events, sent, `/api/history after ${rounds} ${how} restart(s)`);
    assert.equal(events[0].offset, 1);
    for (const e of events) assert.equal(e.data.creator, A.toLowerCase());
    // a client that subscribes now with since=0 gets the same, once
    const c = await connect(herald);
    c.send({ type: 'subscribe', channels: [channel], since: { [channel]: 0 }, id: 'r' });
    await waitFor(() => received(c).length >= sent.length, 10000, 'recovered events');
    await sleep(300);
    assert.deepEqual(received(c).map((m) => keyOf(m.data)), sent.map(keyOf));
    c.close();
  } catch (e) {
    console.error(`${herald.logTail()}\n(kept: ${herald.dir})`);
    herald.keep = true;
    throw e;
  } finally {
    stopSending = true;
    await sender?.catch(() => {});
    await proxy.stop();
    try { await herald.stop(); } finally { if (!herald.keep) herald.cleanup(); }
  }
}

test('c. herald stopped (SIGTERM) and started again on its data dir while tips are sent: each tip once in total', T, async () => {
  await restartWhileTipping('sigterm');
});

test('c2. herald killed (SIGKILL) and started again while tips are sent: each tip once in total', T, async () => {
  await restartWhileTipping('sigkill', { rounds: 2 });
});

// The publish's idempotency key covers a crash between the acknowledgement and the
// state write, within history.idempotency_ttl_s; a graceful stop must not need it:
// idempotency_ttl_s 1 and herald down 2.5 s each time, three SIGTERM restarts while
// tips are sent.
test('c3. SIGTERM restarts while tips are sent, each down longer than history.idempotency_ttl_s: each tip once', T, async () => {
  await restartWhileTipping('sigterm', { rounds: 3, downMs: 2500, history: { idempotency_ttl_s: 1 } });
});

// -- d. backfill in small chunks -----------------------------------------------------------------

test('d. backfill_max_range 3 over 20+ blocks: every log, in block order, every eth_getLogs range at most 3 blocks', T, async () => {
  const dep = await chain.deploy();
  const A = randomCreator();
  const channel = `creator:${A.toLowerCase()}`;
  const sent = [];
  // history before herald starts: a tip, an empty block, 12 times; then one transaction with three tips
  for (let i = 0; i < 12; i++) {
    sent.push((await chain.tip(dep.contract, A, BigInt(i + 1), `backlog-${i}`)).logs[0]);
    await chain.mine(1);
  }
  sent.push(...(await chain.tipMany(dep.contract, [A, A, A], 7n, 'backlog-many')).logs);
  const head0 = await chain.head();
  assert.ok(head0 - dep.blockNumber >= 20, `${head0 - dep.blockNumber} blocks to catch up`);

  const proxy = await new RpcProxy(ganache.wsUrl).start();
  const server = await startHerald(heraldConfig(proxy, dep.address, { start_block: dep.blockNumber, backfill_max_range: 3 }));
  const checkRanges = (ranges, from, to, what) => {
    assert.ok(ranges.length > 0, `${what}: no eth_getLogs`);
    for (const r of ranges) {
      assert.ok(Number.isInteger(r.from) && Number.isInteger(r.to), `${what}: numeric range ${JSON.stringify(r)}`);
      assert.ok(r.to >= r.from && r.to - r.from + 1 <= 3, `${what}: range ${r.from}..${r.to} is over 3 blocks`);
    }
    const sorted = [...ranges].sort((x, y) => x.from - y.from);
    assert.equal(sorted[0].from, from, `${what}: starts at block ${from}: ${JSON.stringify(sorted.map((r) => [r.from, r.to]))}`);
    let reach = sorted[0].from - 1;
    for (const r of sorted) {
      assert.ok(r.from <= reach + 1, `${what}: gap before ${r.from}: ${JSON.stringify(sorted.map((x) => [x.from, x.to]))}`);
      reach = Math.max(reach, r.to);
    }
    assert.ok(reach >= to, `${what}: reaches ${reach}, head ${to}`);
    // oldest first
    const asked = ranges.map((r) => r.from);
    assert.deepEqual(asked, [...asked].sort((x, y) => x - y), `${what}: oldest first`);
  };
  try {
    await waitSubscribed(server, proxy);
    await waitFor(async () => (await history(server, channel)).length >= sent.length, 60000, `${sent.length} backlog tips`);
    let events = await history(server, channel);
    assertExactlyOnceInOrder(events, sent, 'backfill');
    const first = proxy.getLogsRanges().filter((r) => r.blockHash === undefined);
    checkRanges(first, dep.blockNumber, head0, 'first backfill');

    // the node away again while 10 more blocks and 4 tips are made: the second backfill
    // starts from the stored cursor (not from start_block) and is chunked the same way
    const lastBefore = sent[sent.length - 1].blockNumber;
    await proxy.refuse();
    await waitFor(async () => (await sourceStats(server))?.connected === false, 10000, 'disconnected');
    const headDown = await chain.head();
    const cut = proxy.calls.length;
    for (let i = 0; i < 4; i++) {
      sent.push((await chain.tip(dep.contract, A, BigInt(100 + i), `gap-${i}`)).logs[0]);
      await chain.mine(2);
    }
    const head1 = await chain.head();
    await proxy.accept();
    await waitFor(async () => (await history(server, channel)).length >= sent.length, WAIT_BACK_MS, `${sent.length} tips`);
    await sleep(1000);
    events = await history(server, channel);
    assertExactlyOnceInOrder(events, sent, 'backfill after the reconnect');
    const ranges2 = proxy.getLogsRanges(cut).filter((r) => r.blockHash === undefined);
    assert.ok(ranges2.length > 0, 'eth_getLogs after the reconnect');
    const start2 = Math.min(...ranges2.map((r) => r.from));
    assert.ok(start2 >= lastBefore && start2 <= headDown,
      `second backfill starts at the cursor (${start2}, expected within ${lastBefore}..${headDown}), not at start_block ${dep.blockNumber}`);
    checkRanges(ranges2, start2, head1, 'second backfill');
  } catch (e) {
    console.error(server.logTail());
    throw e;
  } finally {
    await proxy.stop();
    await server.stop();
  }
});

// -- e. confirmations ---------------------------------------------------------------------------------

test('e. confirmations 2: a tip is published once two blocks follow it; a removed pending log is dropped', T, async () => {
  const dep = await chain.deploy();
  await withHerald(dep, { start_block: 'latest', confirmations: 2 }, async ({ proxy, server, track }) => {
    const A = randomCreator();
    const c = track(await subscribe(server, [`creator:${A.toLowerCase()}`]));
    const t1 = (await chain.tip(dep.contract, A, 5n, 'confirm-me')).logs[0];
    await sleep(1500);
    assert.equal(received(c).length, 0, 'not published with 0 blocks after it');
    assert.equal(await chain.mine(1), t1.blockNumber + 1);
    await sleep(1500);
    assert.equal(received(c).length, 0, 'not published with 1 block after it');
    assert.equal(await chain.mine(1), t1.blockNumber + 2);
    const [m1] = await waitReceived(c, 1, 10000);
    assert.deepEqual(m1.data, expectedTip(dep.address, t1, await chain.address(1), A, 5n, 'confirm-me'));

    // a log removed while it waits for its confirmations is dropped: neither it nor a retraction
    const t2 = (await chain.tip(dep.contract, A, 6n, 'reorged-away')).logs[0];
    await sleep(300);
    assert.equal(proxy.injectRemoved(await chain.rawLog(t2.blockHash, t2.logIndex)), 1);
    await sleep(300);
    await chain.mine(3);
    const t3 = (await chain.tip(dep.contract, A, 7n, 'after')).logs[0];
    await chain.mine(2);
    await waitReceived(c, 2, 10000);
    await sleep(1000);
    assert.deepEqual(received(c).map((m) => keyOf(m.data)), [t1, t3].map(keyOf), 'the removed pending tip is not published');
    assert.deepEqual(received(c, 'TIP_SENT:removed'), [], 'no retraction for a log never published');
  }, { heads: true });
});

// -- f. reorg removal -------------------------------------------------------------------------------------

test('f. removed: true for a published tip publishes TIP_SENT:removed once, on the same channel, with the original data', T, async () => {
  const dep = await chain.deploy();
  await withHerald(dep, { start_block: dep.blockNumber }, async ({ proxy, server, track }) => {
    const A = randomCreator();
    const c = track(await subscribe(server, [`creator:${A.toLowerCase()}`]));
    const t1 = (await chain.tip(dep.contract, A, 50000000000000000n, 'instant')).logs[0];
    const [orig] = await take(c, 1, 10000);
    const raw = await chain.rawLog(t1.blockHash, t1.logIndex);

    assert.equal(proxy.injectRemoved(raw), 1, 'injected into herald\'s logs subscription');
    const rm = await c.next((m) => m.type === 'TIP_SENT:removed', 10000);
    assert.equal(rm.channel, orig.channel);
    assert.deepEqual(rm.data, { ...orig.data, _chain: { ...orig.data._chain, removed: true } });
    assert.ok(rm.offset > orig.offset);

    // the same removal again, and a removal of a log herald never saw: nothing more
    assert.equal(proxy.injectRemoved(raw), 1);
    const unknown = { ...raw, blockHash: ethers.id('no-such-block'), transactionHash: ethers.id('no-such-tx') };
    assert.equal(proxy.injectRemoved(unknown), 1);
    await sleep(1500);
    assert.deepEqual(received(c, 'TIP_SENT:removed'), [], 'one retraction only');
    assert.deepEqual(received(c), [], 'no TIP_SENT republished');
    assert.equal((await sourceStats(server)).removed, 1, '/stats removed');

    // after a reconnect the backfill meets the (still mined) log again: not republished
    proxy.dropAll();
    await waitFor(() => proxy.subscribed().length > 0 && proxy.accepted >= 2, WAIT_BACK_MS, 'reconnected');
    const t2 = (await chain.tip(dep.contract, A, 2n, 'after-reorg')).logs[0];
    await waitReceived(c, 1, WAIT_BACK_MS);
    await sleep(1000);
    assert.deepEqual(received(c).map((m) => keyOf(m.data)), [keyOf(t2)]);
    assert.deepEqual(received(c, 'TIP_SENT:removed'), []);
    const h = await history(server, `creator:${A.toLowerCase()}`);
    assert.deepEqual(h.map((e) => [e.type ?? e.event, e.data._chain.tx_hash, e.data._chain.removed]),
      [['TIP_SENT', t1.txHash, false], ['TIP_SENT:removed', t1.txHash, true], ['TIP_SENT', t2.txHash, false]]);
  });
});

// -- g. observability ---------------------------------------------------------------------------------------

test('g. /metrics and /stats report the source: connected, block, events', T, async () => {
  const dep = await chain.deploy();
  await withHerald(dep, { start_block: dep.blockNumber }, async ({ proxy, server, track }) => {
    const A = randomCreator();
    const id = ethers.id('g-settle');
    const c = track(await subscribe(server, [`creator:${A.toLowerCase()}`, `settle:${id}`]));
    const logs = [];
    for (let i = 0; i < 3; i++) logs.push((await chain.tip(dep.contract, A, BigInt(i + 1), 'metrics')).logs[0]);
    logs.push((await chain.settle(dep.contract, { id, delta: 1n, ok: true, memo: '0x01', parts: [9] })).logs[0]);
    await waitReceived(c, 3, 10000);
    await waitReceived(c, 1, 10000, 'SETTLED');
    const last = logs[logs.length - 1].blockNumber;

    let text;
    await waitFor(async () => { text = await metrics(server); return metricValue(text, 'herald_source_events_total') === 4; },
      5000, 'herald_source_events_total 4');
    assert.equal(metricValue(text, 'herald_source_connected'), 1, text);
    const block = metricValue(text, 'herald_source_block');
    const head = await chain.head();
    assert.ok(block >= last && block <= head, `herald_source_block ${block}, last log in ${last}, head ${head}`);
    const s = await sourceStats(server);
    assert.equal(s.type, 'evm');
    assert.equal(s.connected, true);
    assert.equal(s.events, 4);
    assert.equal(s.removed, 0);
    assert.equal(typeof s.errors, 'number');
    assert.ok(s.block >= last && s.block <= head, `stats block ${s.block}`);

    await proxy.refuse();
    await waitFor(async () => metricValue(await metrics(server), 'herald_source_connected') === 0, 10000,
      'herald_source_connected 0 while the node is away');
    const health = await api(server, 'GET', '/health');
    assert.equal(health.status, 200, 'a source being down never fails /health');
    await proxy.accept();
    await waitFor(async () => metricValue(await metrics(server), 'herald_source_connected') === 1, WAIT_BACK_MS,
      'herald_source_connected 1 again');
    assert.equal(metricValue(await metrics(server), 'herald_source_events_total'), 4, 'nothing republished');
  });
});
