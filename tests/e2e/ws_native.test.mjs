// End-to-end: herald's native WebSocket protocol with the npm `ws` client
// (SPEC section 3): connected, subscribe, events published over HTTP, several
// clients, unsubscribe, and the Origin check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, connect, publish, stats, waitFor, Client, sleep } from './harness.mjs';

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
let server;
const clients = [];
let n = 0;
const uniq = (p) => `${p}-${process.pid}-${++n}`;

async function client(opts) {
  const c = await connect(server, opts);
  clients.push(c);
  return c;
}

before(async () => { server = await startHerald({}); });
after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

test('connected message', async () => {
  const c = await client();
  assert.equal(c.hello.type, 'connected');
  assert.match(c.hello.data.connection_id, UUID4);
  assert.equal(c.hello.data.user, null);
  assert.deepEqual(c.hello.data.channels, []);
  assert.equal(typeof c.hello.data.epoch, 'string');
  assert.match(c.hello.timestamp, ISO_MS);
});

test('subscribe and receive events published over HTTP', async () => {
  const ch = uniq('jobs');
  const c = await client();
  const r = await c.request({ type: 'subscribe', id: 'sub-1', channels: [ch] });
  assert.equal(r.type, 'subscribed');
  assert.equal(r.id, 'sub-1');
  assert.deepEqual(r.data.channels, [ch]);
  assert.deepEqual(r.data.offsets, { [ch]: 0 });
  const pub = await publish(server, ch, 'job_created', { id: 1, title: 'Fix the sink' });
  const ev = await c.next((m) => m.type === 'job_created');
  assert.equal(ev.channel, ch);
  assert.deepEqual(ev.data, { id: 1, title: 'Fix the sink' });
  assert.equal(ev.offset, 1);
  assert.equal(ev.id, pub.id);
  assert.match(ev.timestamp, ISO_MS);
  const pub2 = await publish(server, ch, 'job_updated', [1, 2]);
  assert.equal(pub2.offset, 2);
  const ev2 = await c.next((m) => m.type === 'job_updated');
  assert.deepEqual(ev2.data, [1, 2]);
  assert.equal(ev2.offset, 2);
});

test('several clients each receive every event once', async () => {
  const ch = uniq('fanout');
  const cs = await Promise.all([1, 2, 3, 4, 5].map(() => client()));
  for (const c of cs) assert.equal((await c.request({ type: 'subscribe', channel: ch })).type, 'subscribed');
  for (let i = 1; i <= 20; i++) await publish(server, ch, 'tick', i);
  for (const c of cs) {
    const got = [];
    for (let i = 0; i < 20; i++) got.push((await c.next((m) => m.type === 'tick')).data);
    assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => i + 1));
    await sleep(50);
    assert.equal(c.queue.filter((m) => m.type === 'tick').length, 0, 'duplicate delivery');
  }
  const s = await stats(server);
  assert.equal(s.connections.by_channel[ch], 5);
});

test('unsubscribe stops delivery', async () => {
  const ch = uniq('unsub');
  const a = await client();
  const b = await client();
  await a.request({ type: 'subscribe', channels: [ch] });
  await b.request({ type: 'subscribe', channels: [ch] });
  const r = await a.request({ type: 'unsubscribe', id: 2, channels: [ch] });
  assert.deepEqual(r, { type: 'unsubscribed', id: 2, data: { channels: [ch] } });
  await publish(server, ch, 'late', {});
  await b.next((m) => m.type === 'late');
  await sleep(300);
  assert.equal(a.queue.filter((m) => m.type === 'late').length, 0);
  await waitFor(async () => (await stats(server)).connections.by_channel[ch] === 1, 3000, 'by_channel 1');
});

test('ping, and errors keep the connection open', async () => {
  const c = await client();
  const p = await c.request({ type: 'ping', id: 42 });
  assert.equal(p.type, 'pong');
  assert.equal(p.id, 42);
  c.ws.send('{oops');
  const e = await c.next((m) => m.type === 'error');
  assert.equal(e.data.code, 'bad_request');
  const e2 = await c.request({ type: 'subscribe', id: 3, channels: ['$all'] });
  assert.equal(e2.type, 'error');
  assert.equal(e2.data.code, 'bad_request');
  assert.equal(e2.id, 3);
  assert.equal((await c.request({ type: 'ping' })).type, 'pong');
});

test('binary frame closes with 1003', async () => {
  const c = await client();
  c.ws.send(Buffer.from([1, 2, 3]));
  await waitFor(() => c.closed, 3000, 'close');
  assert.equal(c.closed.code, 1003);
});

test('Origin check', async () => {
  const s2 = await startHerald({ allowed_origins: ['https://app.example'] });
  try {
    const bad = new Client(s2.wsUrl(), { origin: 'https://evil.example' });
    await assert.rejects(bad.opened(), (e) => e.status === 403);
    bad.close();
    const good = new Client(s2.wsUrl(), { origin: 'https://app.example' });
    await good.opened();
    assert.equal((await good.next((m) => m.type === 'connected')).type, 'connected');
    good.close();
  } finally {
    await s2.stop();
  }
});
