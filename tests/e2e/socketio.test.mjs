// End-to-end: herald's Socket.IO v4 endpoint (SPEC sections 4, 5 `socketio`, 9.11,
// 9.14) with the unmodified npm socket.io-client 4.x, plus raw Engine.IO requests
// where the wire itself is the point (the upgrade's queued packets, a polling
// session that never polls, CORS). Apps modelled: a dashboard that sends
// join-user-room with its wallet, stream and marketplace rooms, a backend that
// POSTs /broadcast, a NestJS-style gateway with auth.token and a `connected` event.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { startHerald, api, publish, stats, waitFor, sleep, connect as nativeConnect } from './harness.mjs';

const SECRET = 'herald-socketio-e2e-secret';
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const T = { timeout: 20000 };
let n = 0;
const uniq = (p) => `${p}-${process.pid}-${++n}`;

// HS256 by hand: header.payload signed with HMAC-SHA256, all base64url.
function jwt(claims, secret = SECRET) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const body = enc({ iat: now, exp: now + 3600, ...claims });
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// The default rules (SPEC 5) with one access-token rule for overlay tokens.
const CHANNELS = [
  { pattern: 'user:{sub}', subscribe: 'owner' },
  { pattern: 'user:*', subscribe: 'deny' },
  { pattern: 'creator:*', subscribe: 'access_token' },
  { pattern: '*', subscribe: 'any' },
];

const MAIN_CONFIG = {
  auth: { jwt: { secret: SECRET } },
  channels: CHANNELS,
  socketio: {
    namespaces: ['/admin'],
    connected_event: 'connected',
    join_events: { 'join-user-room': 'user:{0}', 'join-stream-room': 'stream:{0}', 'join-marketplace': 'marketplace' },
    leave_events: { 'leave-stream-room': 'stream:{0}', 'leave-marketplace': 'marketplace' },
    recovery: true,   // connection state recovery: events carry the offset as a trailing argument
  },
};

// -- a queue that test code waits on, bounded ----------------------------------------
class Queue {
  constructor() { this.items = []; this.waiters = []; this.failure = null; }
  push(x) { this.items.push(x); this.wake(); }
  wake() { for (const w of this.waiters.splice(0)) w(); }
  async next(pred, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.items.findIndex(pred);
      if (i >= 0) return this.items.splice(i, 1)[0];
      if (this.failure) throw new Error(`${this.failure} while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; last seen: ${JSON.stringify(this.items.slice(-5))}`);
      await new Promise((r) => { const t = setTimeout(r, left); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }
}

// -- a socket.io-client socket that records what it receives --------------------------
const sockets = [];

class Sio {
  // forceNew: each Sio is its own Engine.IO session; `socket` instead: another
  // namespace on an existing Manager (multiplexed on one session)
  constructor(server, nsp = '/', opts = {}, socket = null) {
    this.q = new Queue();
    this.disconnects = [];
    this.socket = socket ||
      io(server.url(nsp), { reconnection: false, autoConnect: false, timeout: 5000, forceNew: true, ...opts });
    this.socket.onAny((event, ...args) => this.q.push({ event, args }));
    this.socket.on('disconnect', (reason) => { this.disconnects.push(reason); this.q.wake(); });
    sockets.push(this);
  }

  // Resolves on `connect`; rejects with the connect_error.
  connect(timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { cleanup(); reject(new Error(`no connect within ${timeoutMs} ms`)); }, timeoutMs);
      const ok = () => { cleanup(); resolve(this); };
      const bad = (err) => { cleanup(); reject(err); };
      const cleanup = () => { clearTimeout(t); this.socket.off('connect', ok); this.socket.off('connect_error', bad); };
      this.socket.on('connect', ok);
      this.socket.on('connect_error', bad);
      this.socket.connect();
    });
  }

  // The connect_error the server answers (and fails if it connects instead).
  connectError(timeoutMs = 5000) {
    return this.connect(timeoutMs).then(
      () => { throw new Error('connected, expected connect_error'); },
      (err) => err,
    );
  }

  ack(event, ...args) { return this.socket.timeout(3000).emitWithAck(event, ...args); }
  next(event, pred = () => true, timeoutMs = 3000) {
    return this.q.next((m) => m.event === event && pred(...m.args), timeoutMs, `event ${event}`);
  }
  received(event) { return this.q.items.filter((m) => m.event === event); }
  get transport() { return this.socket.io.engine?.transport?.name; }
  close() {
    const engine = this.socket.io.engine;
    // an engine in the middle of an upgrade closes only once the upgrade ends:
    // the close packet goes out on the polling transport now instead
    if (engine?.upgrading && engine.transport?.name === 'polling') engine.transport.close();
    this.socket.disconnect();
    engine?.close();
  }
}

async function sioConnect(server, nsp = '/', opts = {}) {
  return new Sio(server, nsp, opts).connect();
}

// The data of a published event is the first argument, whole (an array stays one
// argument). A trailing string is the connection-state-recovery offset that
// socket.io-client keeps; nothing else may follow.
function assertOneData(args, want) {
  assert.deepEqual(args[0], want);
  assert.ok(args.length === 1 || (args.length === 2 && typeof args[1] === 'string'),
    `event arguments: ${JSON.stringify(args)}`);
}

// -- raw Engine.IO over HTTP -----------------------------------------------------------
function rawHttp(server, method, path, { body, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(server.url(path), { method, headers: { ...headers }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body); else req.end();
  });
}

const EIO = '/socket.io/?EIO=4&transport=polling';

async function eioOpen(server, query = '', headers = {}) {
  const r = await rawHttp(server, 'GET', `${EIO}${query}`, { headers });
  assert.equal(r.status, 200, `handshake: ${r.status} ${r.text}`);
  assert.equal(r.text[0], '0', `open packet: ${r.text}`);
  return { ...JSON.parse(r.text.slice(1)), res: r };
}
const eioPost = (server, sid, body, headers = {}) =>
  rawHttp(server, 'POST', `${EIO}&sid=${sid}`, { body, headers: { 'Content-Type': 'text/plain;charset=UTF-8', ...headers } });
const eioGet = (server, sid, timeoutMs = 5000) => rawHttp(server, 'GET', `${EIO}&sid=${sid}`, { timeoutMs });
const records = (text) => text.split('\x1e');

// Polls until a record matching pred arrives (answering pings); returns it.
async function eioPollFor(server, sid, pred, what, timeoutMs = 4000) {
  const deadline = Date.now() + timeoutMs;
  const seen = [];
  while (Date.now() < deadline) {
    const r = await eioGet(server, sid, deadline - Date.now() + 500);
    assert.equal(r.status, 200, `poll: ${r.status} ${r.text}`);
    for (const rec of records(r.text)) {
      if (rec === '2') await eioPost(server, sid, '3');
      if (pred(rec)) return rec;
      seen.push(rec);
    }
  }
  throw new Error(`no ${what} within ${timeoutMs} ms; seen ${JSON.stringify(seen)}`);
}

// -- Server-Sent Events reader ---------------------------------------------------------
function openSSE(server, channels) {
  return new Promise((resolve, reject) => {
    const qs = channels.map((c) => `channel=${encodeURIComponent(c)}`).join('&');
    const req = http.get(server.url(`/events?${qs}`), { agent: false }, (res) => {
      const s = { req, res, q: new Queue(), buf: '' };
      res.setEncoding('utf8');
      res.on('data', (d) => {
        s.buf += d;
        let i;
        while ((i = s.buf.indexOf('\n\n')) >= 0) {
          const block = {};
          for (const line of s.buf.slice(0, i).split('\n')) {
            const c = line.indexOf(':');
            if (c > 0) block[line.slice(0, c)] = line.slice(c + 1).replace(/^ /, '');
          }
          s.buf = s.buf.slice(i + 2);
          s.q.push(block);
        }
      });
      res.on('end', () => { s.q.failure = 'stream ended'; s.q.wake(); });
      resolve(s);
    });
    req.setTimeout(5000, () => req.destroy(new Error('SSE: no response head within 5 s')));
    req.on('error', reject);
  });
}

// -- the main server -------------------------------------------------------------------
let server;

before(async () => { server = await startHerald(MAIN_CONFIG); });
afterEach(() => { for (const s of sockets.splice(0)) s.close(); });
after(async () => {
  for (const s of sockets) s.close();
  await server.stop();
});

describe('transports', () => {
  test('websocket only: connects on websocket, acks and events arrive', T, async () => {
    const ch = uniq('jobs');
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    assert.equal(s.transport, 'websocket');
    assert.match(s.socket.id, /^[A-Za-z0-9_-]{20}$/);
    assert.deepEqual(await s.ack('subscribe', ch), { success: true, room: ch });
    await publish(server, ch, 'job_created', { id: 7, title: 'Fix the sink' });
    const ev = await s.next('job_created');
    assertOneData(ev.args, { id: 7, title: 'Fix the sink' });
  });

  test('polling only: stays on polling, acks and events arrive', T, async () => {
    const ch = uniq('jobs');
    const s = await sioConnect(server, '/', { transports: ['polling'] });
    assert.equal(s.transport, 'polling');
    assert.deepEqual(await s.ack('subscribe', ch), { success: true, room: ch });
    await publish(server, ch, 'job_created', { id: 8 });
    assertOneData((await s.next('job_created')).args, { id: 8 });
    await sleep(300);
    assert.equal(s.transport, 'polling');
  });

  test('default transports: opens on polling, upgrades to websocket, rooms survive the upgrade', T, async () => {
    const ch = uniq('upgrade');
    const s = new Sio(server);
    const firstTransport = new Promise((resolve) => s.socket.io.once('open', () => resolve(s.socket.io.engine.transport.name)));
    const upgraded = new Promise((resolve) => s.socket.io.once('open', () => s.socket.io.engine.once('upgrade', (t) => resolve(t.name))));
    await s.connect();
    // joined right away: on polling, or during the probe
    assert.deepEqual(await s.ack('subscribe', ch), { success: true, room: ch });
    assert.equal(await firstTransport, 'polling');
    const name = await Promise.race([upgraded, sleep(5000).then(() => 'no upgrade within 5 s')]);
    assert.equal(name, 'websocket', 'a stalled probe? see the 3probe test');
    assert.equal(s.transport, 'websocket');
    assert.deepEqual(await s.ack('getRooms'), [ch]);
    await publish(server, ch, 'after_upgrade', { ok: true });
    assertOneData((await s.next('after_upgrade')).args, { ok: true });
    assert.equal(s.disconnects.length, 0);
  });

  test('raw upgrade: the pending GET ends with noop, packets queued before "5" arrive on the WebSocket in order', T, async () => {
    const ch = uniq('rawup');
    const open = await eioOpen(server);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.equal(typeof open.pingInterval, 'number');
    assert.equal(typeof open.pingTimeout, 'number');
    assert.equal(typeof open.maxPayload, 'number');
    const sid = open.sid;
    assert.equal((await eioPost(server, sid, '40')).text, 'ok');
    const connect = await eioPollFor(server, sid, (r) => r.startsWith('40'), 'CONNECT reply');
    assert.match(connect, /^40\{"sid":"[A-Za-z0-9_-]+"/);
    await eioPost(server, sid, `421["subscribe","${ch}"]`);
    assert.equal(await eioPollFor(server, sid, (r) => r.startsWith('431'), 'ack 1'), `431[{"success":true,"room":"${ch}"}]`);
    await publish(server, ch, 'e1', { n: 1 });
    assert.match(await eioPollFor(server, sid, (r) => r.startsWith('42'), 'e1'), /^42\["e1",\{"n":1\}/);

    const pending = eioGet(server, sid, 5000);   // the client's GET in flight during the probe
    await sleep(100);
    const ws = new WebSocket(server.wsUrl(`/socket.io/?EIO=4&transport=websocket&sid=${sid}`));
    const frames = new Queue();
    ws.on('message', (d) => frames.push(d.toString()));
    ws.on('close', () => { frames.failure = 'websocket closed'; frames.wake(); });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send('2probe');
    await frames.next((f) => f === '3probe', 3000, '3probe');
    const held = await pending;
    assert.equal(held.status, 200);
    assert.equal(held.text, '6', 'the pending GET ends with a noop once the probe is answered');
    // published while paused: queued on the polling session, then carried over
    await publish(server, ch, 'e2', { n: 2 });
    await publish(server, ch, 'e3', { n: 3 });
    ws.send('5');
    const e2 = await frames.next((f) => f.startsWith('42'), 3000, 'e2 over the WebSocket');
    const e3 = await frames.next((f) => f.startsWith('42'), 3000, 'e3 over the WebSocket');
    assert.match(e2, /^42\["e2",\{"n":2\}/);
    assert.match(e3, /^42\["e3",\{"n":3\}/);
    ws.send('421["getRooms"]');
    assert.equal(await frames.next((f) => f.startsWith('431'), 3000, 'getRooms ack'), `431[["${ch}"]]`);
    const late = await eioGet(server, sid);
    assert.equal(late.status, 400, 'polling after the upgrade is refused');
    ws.terminate();
  });
});

describe('namespaces', () => {
  test('a configured namespace "/admin" connects and gets events with its namespace', T, async () => {
    const ch = uniq('adm');
    const s = await sioConnect(server, '/admin', { transports: ['websocket'] });
    assert.ok(s.socket.connected);
    assert.deepEqual(await s.ack('subscribe', { channel: ch }), { success: true, room: ch });
    await publish(server, ch, 'audit', { who: 'ops' });
    assertOneData((await s.next('audit')).args, { who: 'ops' });
  });

  test('"/" and "/admin" on one connection share rooms', T, async () => {
    const ch = uniq('shared');
    const root = await sioConnect(server, '/', { transports: ['polling'] });
    const admin = await new Sio(server, '/admin', {}, root.socket.io.socket('/admin')).connect();
    assert.equal(admin.socket.io, root.socket.io, 'one Manager, one Engine.IO session');
    assert.deepEqual(await root.ack('subscribe', ch), { success: true, room: ch });
    assert.deepEqual(await admin.ack('getRooms'), [ch]);
    admin.socket.disconnect();
    assert.deepEqual(await root.ack('getRooms'), [ch], 'leaving /admin keeps the session\'s rooms');
  });

  test('multiplexed "/" and "/admin": a room joined through /admin delivers its events to the /admin socket', T, async () => {
    // a page with its main socket and an admin panel socket, as io(url) and
    // io(url + "/admin") give by default (one Manager)
    const ch = uniq('admin-audit');
    const root = await sioConnect(server, '/', { transports: ['websocket'] });
    const admin = await new Sio(server, '/admin', {}, root.socket.io.socket('/admin')).connect();
    assert.deepEqual(await admin.ack('subscribe', ch), { success: true, room: ch });
    await publish(server, ch, 'audit', { who: 'ops' });
    const ev = await admin.next('audit').catch((e) => {
      throw new Error(`${e.message}; the "/" socket got: ${JSON.stringify(root.received('audit'))}`);
    });
    assertOneData(ev.args, { who: 'ops' });
  });

  test('an unknown namespace gets connect_error', T, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const err = await new Sio(server, '/nope', { transports }).connectError();
      assert.match(err.message, /namespace/i, `${transports}: ${err.message}`);
    }
  });
});

describe('authentication', () => {
  test('auth.token JWT: auto-joins user:{sub}, joins its own room by subscribe and join-user-room, not bob\'s', T, async () => {
    const s = new Sio(server, '/', { auth: { token: jwt({ sub: 'alice' }) }, transports: ['websocket'] });
    await s.connect();
    const hello = await s.next('connected');
    assert.deepEqual(hello.args[0], { message: 'connected', rooms: ['user:alice'] });
    assert.deepEqual(await s.ack('unsubscribe', 'user:alice'), { success: true, room: 'user:alice' });
    assert.deepEqual(await s.ack('getRooms'), []);
    assert.deepEqual(await s.ack('subscribe', { room: 'user', id: 'alice' }), { success: true, room: 'user:alice' });
    assert.deepEqual(await s.ack('leave-stream-room', 'none'), { success: true, room: 'stream:none' });
    await s.ack('unsubscribe', { channel: 'user:alice' });
    assert.deepEqual(await s.ack('join-user-room', 'alice'), { success: true, room: 'user:alice' });
    assert.deepEqual(await s.ack('getRooms'), ['user:alice']);
    const bob = await s.ack('subscribe', 'user:bob');
    assert.equal(bob.success, false);
    assert.equal(bob.error, 'forbidden');
    assert.equal(typeof bob.message, 'string');
    const bob2 = await s.ack('join-user-room', 'bob');
    assert.deepEqual([bob2.success, bob2.error], [false, 'forbidden']);
    assert.deepEqual(await s.ack('getRooms'), ['user:alice']);
    await publish(server, 'user:alice', 'notification', { title: 'Stream created' });
    assertOneData((await s.next('notification')).args, { title: 'Stream created' });
  });

  test('?token= in the query authenticates on both transports', T, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = new Sio(server, '/', { query: { token: jwt({ sub: 'carol' }) }, transports });
      await s.connect();
      assert.deepEqual((await s.next('connected')).args[0], { message: 'connected', rooms: ['user:carol'] }, `${transports}`);
      assert.equal((await s.ack('subscribe', 'user:carol')).success, true);
      s.close();
    }
  });

  test('a bad token gets connect_error "Authentication failed" (auth and query, both transports)', T, async () => {
    const bad = [
      { auth: { token: 'garbage' } },
      { auth: { token: jwt({ sub: 'alice' }, 'another-secret') } },
      { auth: { token: jwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 3600 }) } },
      { query: { token: 'garbage' } },
    ];
    for (const transports of [['websocket'], ['polling']]) {
      for (const opts of bad) {
        const err = await new Sio(server, '/', { ...opts, transports }).connectError();
        assert.equal(err.message, 'Authentication failed', `${transports} ${JSON.stringify(opts)}`);
      }
    }
  });

  test('an htk_ access token in auth.token joins its scoped room only', T, async () => {
    const creator = uniq('creator:abc');
    const r = await api(server, 'POST', '/api/tokens', { channels: [creator], label: 'obs' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.match(r.body.token, /^htk_/);
    const s = await sioConnect(server, '/', { auth: { token: r.body.token }, transports: ['websocket'] });
    assert.deepEqual(await s.ack('subscribe', creator), { success: true, room: creator });
    const other = await s.ack('subscribe', 'creator:someone-else');
    assert.deepEqual([other.success, other.error], [false, 'forbidden']);
    const anon = await sioConnect(server, '/', { transports: ['websocket'] });
    assert.equal((await anon.ack('subscribe', creator)).success, false);
  });
});

describe('built-in and configured events', () => {
  test('subscribe: every form, with its ack', T, async () => {
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    const m = uniq('m');
    assert.deepEqual(await s.ack('subscribe', { room: 'market', id: m }), { success: true, room: `market:${m}` });
    assert.deepEqual(await s.ack('subscribe', { room: 'market', id: 42 }), { success: true, room: 'market:42' });
    assert.deepEqual(await s.ack('subscribe', { channel: `balance:${m}` }), { success: true, room: `balance:${m}` });
    assert.deepEqual(await s.ack('subscribe', `plain-${m}`), { success: true, room: `plain-${m}` });
    assert.deepEqual(await s.ack('subscribe', { room: `global-${m}` }), { success: true, room: `global-${m}` });
    for (const bad of [{}, 5, '', 'has space', '$all', { channel: '$all' }]) {
      const a = await s.ack('subscribe', bad);
      assert.equal(a.success, false, JSON.stringify(bad));
      assert.equal(a.error, 'bad_request', JSON.stringify(bad));
      assert.equal(typeof a.message, 'string');
    }
    const rooms = await s.ack('getRooms');
    assert.deepEqual([...rooms].sort(), [`balance:${m}`, `global-${m}`, 'market:42', `market:${m}`, `plain-${m}`].sort());
    await publish(server, `market:${m}`, 'market:trade', { price: '0.5' });
    assertOneData((await s.next('market:trade')).args, { price: '0.5' });
  });

  test('subscribe without an ack callback still joins', T, async () => {
    const ch = uniq('noack');
    const s = await sioConnect(server, '/', { transports: ['polling'] });
    s.socket.emit('subscribe', { channel: ch });
    await waitFor(async () => (await s.ack('getRooms')).includes(ch), 3000, 'room joined');
    await publish(server, ch, 'tick', 1);
    assertOneData((await s.next('tick')).args, 1);
  });

  test('unsubscribe stops events', T, async () => {
    const ch = uniq('unsub');
    const marker = uniq('marker');
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    await s.ack('subscribe', ch);
    await s.ack('subscribe', marker);
    await publish(server, ch, 'before', 1);
    await s.next('before');
    assert.deepEqual(await s.ack('unsubscribe', ch), { success: true, room: ch });
    await publish(server, ch, 'after', 2);
    await publish(server, marker, 'marker', 3);
    await s.next('marker');   // later than `after` on the server: `after` would be here by now
    await sleep(100);
    assert.equal(s.received('after').length, 0, 'event delivered after unsubscribe');
    assert.deepEqual(await s.ack('getRooms'), [marker]);
  });

  test('getRooms lists joined rooms only: no socket id, no $all', T, async () => {
    const s = await sioConnect(server, '/', { auth: { token: jwt({ sub: 'dave' }) }, transports: ['polling'] });
    const a = uniq('a');
    assert.deepEqual(await s.ack('getRooms'), ['user:dave']);
    await s.ack('subscribe', a);
    const rooms = await s.ack('getRooms');
    assert.ok(Array.isArray(rooms));
    assert.deepEqual([...rooms].sort(), [a, 'user:dave'].sort());
    assert.ok(!rooms.includes(s.socket.id) && !rooms.includes('$all'));
  });

  test('ping acks pong with a timestamp', T, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = await sioConnect(server, '/', { transports });
      const before = Date.now();
      const p = await s.ack('ping');
      assert.equal(p.type, 'pong');
      assert.match(p.timestamp, ISO_MS);
      assert.ok(Math.abs(Date.parse(p.timestamp) - before) < 10000);
    }
  });

  test('join and leave events, with and without an ack callback', T, async () => {
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    const id = uniq('s');
    assert.deepEqual(await s.ack('join-stream-room', id), { success: true, room: `stream:${id}` });
    assert.deepEqual(await s.ack('join-stream-room', 123), { success: true, room: 'stream:123' });
    s.socket.emit('join-marketplace');   // no argument, no ack: the dashboard's way
    await waitFor(async () => (await s.ack('getRooms')).includes('marketplace'), 3000, 'marketplace joined');
    s.socket.emit('leave-stream-room', 123);
    await waitFor(async () => !(await s.ack('getRooms')).includes('stream:123'), 3000, 'stream:123 left');
    await publish(server, `stream:${id}`, 'stream:withdrawal', { amount: '10' });
    assertOneData((await s.next('stream:withdrawal')).args, { amount: '10' });
    assert.deepEqual(await s.ack('leave-stream-room', id), { success: true, room: `stream:${id}` });
    const noArg = await s.ack('join-user-room');
    assert.deepEqual([noArg.success, noArg.error], [false, 'bad_request']);
    assert.deepEqual(await s.ack('leave-marketplace'), { success: true, room: 'marketplace' });
    assert.deepEqual(await s.ack('getRooms'), []);
    // an event no one handles: ignored, the connection stays
    s.socket.emit('something-else', { x: 1 });
    assert.equal((await s.ack('ping')).type, 'pong');
  });

  test('connected_event lists the auto-joined rooms (none for an anonymous client)', T, async () => {
    const anon = new Sio(server, '/', { transports: ['polling'] });
    await anon.connect();
    assert.deepEqual((await anon.next('connected')).args, [{ message: 'connected', rooms: [] }]);
    const eve = new Sio(server, '/', { auth: { token: jwt({ sub: 'eve' }) }, transports: ['websocket'] });
    await eve.connect();
    assert.deepEqual((await eve.next('connected')).args, [{ message: 'connected', rooms: ['user:eve'] }]);
  });

  test('binary emit gets an error ack and the connection stays usable', T, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = await sioConnect(server, '/', { transports });
      const a = await s.ack('x', Buffer.from('hi'));
      assert.equal(a.success, false, `${transports}`);
      assert.equal(a.error, 'bad_request');
      const a2 = await s.ack('subscribe', { room: 'market', id: Buffer.from('m1') });
      assert.equal(a2.success, false);
      assert.equal((await s.ack('ping')).type, 'pong');
      const ch = uniq('afterbin');
      await s.ack('subscribe', ch);
      await publish(server, ch, 'still', true);
      assertOneData((await s.next('still')).args, true);
      assert.ok(s.socket.connected);
    }
  });
});

describe('delivery', () => {
  test('/broadcast, both compatibility shapes and global, reach the right sockets', T, async () => {
    const alice = new Sio(server, '/', { auth: { token: jwt({ sub: 'alice' }) }, transports: ['websocket'] });
    await alice.connect();
    const bob = new Sio(server, '/', { auth: { token: jwt({ sub: 'bob' }) }, transports: ['polling'] });
    await bob.connect();
    const jobs = uniq('jobs');
    await bob.ack('subscribe', jobs);
    await bob.ack('join-marketplace');

    const stream = { streamId: '123', sender: 'SP1ABC', recipient: 'SP2DEF', amount: '1000000' };
    let r = await api(server, 'POST', '/broadcast', { type: 'user', target: 'alice', event: 'stream:created', payload: stream });
    assert.deepEqual([r.status, r.body], [200, { success: true }]);
    assertOneData((await alice.next('stream:created')).args, stream);

    r = await api(server, 'POST', '/broadcast', { type: 'job_created', data: { id: 9, title: 'Paint' }, channel: jobs });
    assert.deepEqual([r.status, r.body], [200, { success: true }]);
    assertOneData((await bob.next('job_created')).args, { id: 9, title: 'Paint' });

    r = await api(server, 'POST', '/broadcast', { type: 'marketplace', event: 'market:listing', payload: { id: 'l1' } });
    assert.equal(r.status, 200);
    assertOneData((await bob.next('market:listing')).args, { id: 'l1' });

    r = await api(server, 'POST', '/broadcast', { type: 'global', event: 'system:announcement', payload: { text: 'maintenance' } });
    assert.equal(r.status, 200);
    assertOneData((await alice.next('system:announcement')).args, { text: 'maintenance' });
    assertOneData((await bob.next('system:announcement')).args, { text: 'maintenance' });

    await sleep(100);
    assert.equal(bob.received('stream:created').length, 0, 'bob got alice\'s event');
    assert.equal(alice.received('job_created').length + alice.received('market:listing').length, 0);
    // the second shape without a channel: $all, the event is the type
    r = await api(server, 'POST', '/broadcast', { type: 'system:maintenance', data: { at: '02:00' } });
    assert.equal(r.status, 200);
    assertOneData((await alice.next('system:maintenance')).args, { at: '02:00' });
    assertOneData((await bob.next('system:maintenance')).args, { at: '02:00' });
  });

  test('/api/publish with array data arrives as one argument', T, async () => {
    const ch = uniq('arr');
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    const p = await sioConnect(server, '/', { transports: ['polling'] });
    await s.ack('subscribe', ch);
    await p.ack('subscribe', ch);
    for (const data of [[1, 2, 3], [], [{ a: 1 }, 'x'], 'text', 0, null]) {
      await publish(server, ch, 'arr', data);
      assertOneData((await s.next('arr')).args, data);
      assertOneData((await p.next('arr')).args, data);
    }
  });

  test('a native /ws client, an SSE client and a Socket.IO client receive the same publish', T, async () => {
    const ch = uniq('x3');
    const native = await nativeConnect(server);
    const sse = await openSSE(server, [ch]);
    const s = await sioConnect(server, '/', { transports: ['websocket'] });
    const p = await sioConnect(server, '/', { transports: ['polling'] });
    try {
      assert.equal((await native.request({ type: 'subscribe', channels: [ch] })).type, 'subscribed');
      await s.ack('subscribe', ch);
      await p.ack('subscribe', ch);
      const data = { type: 'TIP_SENT', creatorId: 'abc', amountEth: '0.05', message: 'gm ✓' };
      const pub = await publish(server, ch, 'TIP_SENT', data);
      const nev = await native.next((m) => m.type === 'TIP_SENT');
      assert.deepEqual([nev.channel, nev.data, nev.id, nev.offset], [ch, data, pub.id, pub.offset]);
      const block = await sse.q.next((b) => b.event === 'TIP_SENT', 3000, 'SSE event');
      const env = JSON.parse(block.data);
      assert.deepEqual([env.channel, env.data, env.id, env.offset], [ch, data, pub.id, pub.offset]);
      assertOneData((await s.next('TIP_SENT')).args, data);
      assertOneData((await p.next('TIP_SENT')).args, data);
    } finally {
      native.close();
      sse.req.destroy();
    }
  });

  test('200 quick publishes arrive over polling complete and in order, batched', T, async () => {
    const ch = uniq('burst');
    const s = await sioConnect(server, '/', { transports: ['polling'] });
    let polls = 0;
    s.socket.io.engine.transport.on('pollComplete', () => { polls++; });
    await s.ack('subscribe', ch);
    const offsetOf = new Map();
    for (let burst = 0; burst < 10; burst++) {
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => {
        const k = burst * 20 + i;
        return publish(server, ch, 'seq', { k, pad: 'x'.repeat(k % 7 * 50) }).then((r) => [k, r.offset]);
      }));
      for (const [k, off] of rs) offsetOf.set(k, off);
    }
    const want = [...offsetOf.keys()].sort((a, b) => offsetOf.get(a) - offsetOf.get(b));
    await waitFor(() => s.received('seq').length >= 200, 10000, '200 events');
    await sleep(100);
    const got = s.received('seq').map((m) => m.args[0].k);
    assert.equal(got.length, 200, 'duplicates');
    assert.deepEqual(got, want, 'not in offset order');
    assert.ok(polls < 200, `one poll per event (${polls} polls): the polling responses carry one packet each`);
  });
});

describe('observability and CORS', () => {
  // its own server: counts start at 0 whatever earlier tests left behind
  let server;
  before(async () => { server = await startHerald(MAIN_CONFIG); });
  after(async () => { await server.stop(); });
  const byProto = async () => (await stats(server)).connections.by_protocol.socketio;

  test('/stats counts a Socket.IO connection once per session (polling, websocket, upgraded), 0 after disconnect', T, async () => {
    const p = await sioConnect(server, '/', { transports: ['polling'] });
    await waitFor(async () => (await byProto()) === 1, 3000, 'socketio 1 (polling)');
    const w = await sioConnect(server, '/', { transports: ['websocket'] });
    await waitFor(async () => (await byProto()) === 2, 3000, 'socketio 2');
    const u = new Sio(server);
    const upgraded = new Promise((resolve) => u.socket.io.once('open', () => u.socket.io.engine.once('upgrade', resolve)));
    await u.connect();
    await Promise.race([upgraded, sleep(5000)]);
    assert.equal(u.transport, 'websocket', 'no upgrade within 5 s (a stalled probe: see the 3probe test)');
    await waitFor(async () => (await byProto()) === 3, 3000, 'socketio 3 after an upgrade');
    const ch = uniq('counted');
    await p.ack('subscribe', ch);
    await u.ack('subscribe', ch);
    await waitFor(async () => (await stats(server)).connections.by_channel[ch] === 2, 3000, 'by_channel 2');
    p.close();
    w.close();
    u.close();
    await waitFor(async () => (await byProto()) === 0, 5000, 'socketio 0 after disconnect');
    const st = await stats(server);
    assert.equal(st.connections.by_channel[ch], undefined);
  });

  test('a raw polling session counts as one connection and ends on a close packet', T, async () => {
    // sessions of the previous test close asynchronously: let them go first
    await waitFor(async () => (await byProto()) === 0, 5000, 'socketio 0 before').catch(() => {});
    const base = await byProto();
    const open = await eioOpen(server);
    await waitFor(async () => (await byProto()) === base + 1, 3000, `socketio ${base + 1}`);
    const r = await eioPost(server, open.sid, '1');
    assert.equal(r.status, 200);
    await waitFor(async () => (await byProto()) === base, 3000, `socketio back to ${base}`);
    const late = await eioGet(server, open.sid);
    assert.equal(late.status, 400);
    assert.equal(JSON.parse(late.text).code, 1);
  });

  test('CORS: the polling handshake and POST echo the Origin; OPTIONS preflight is 204', T, async () => {
    const origin = 'http://localhost:3000';
    const open = await eioOpen(server, '', { Origin: origin });
    assert.equal(open.res.headers['access-control-allow-origin'], origin);
    assert.equal(open.res.headers['access-control-allow-credentials'], 'true');
    const post = await eioPost(server, open.sid, '40', { Origin: origin });
    assert.equal(post.status, 200);
    assert.equal(post.headers['access-control-allow-origin'], origin);
    const pre = await rawHttp(server, 'OPTIONS', `${EIO}&sid=${open.sid}`, {
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], origin);
    assert.match(pre.headers['access-control-allow-methods'] || '', /POST/);
    assert.match(pre.headers['access-control-allow-headers'] || '', /content-type/i);
    await eioPost(server, open.sid, '1');
  });

  test('Engine.IO errors: wrong EIO version, unknown transport, unknown sid', T, async () => {
    let r = await rawHttp(server, 'GET', '/socket.io/?EIO=3&transport=polling');
    assert.deepEqual([r.status, JSON.parse(r.text).code], [400, 5]);
    r = await rawHttp(server, 'GET', '/socket.io/?EIO=4&transport=carrier-pigeon');
    assert.deepEqual([r.status, JSON.parse(r.text).code], [400, 0]);
    r = await eioGet(server, 'AAAAAAAAAAAAAAAAAAAA');
    assert.deepEqual([r.status, JSON.parse(r.text).code], [400, 1]);
  });

  test('upgrade: a GET that arrives after 3probe is answered at once with a noop', T, async () => {
    // socket.io-client pauses polling when the probe answers: it waits for the GET
    // in flight to end. When that GET reaches the server only after 3probe was
    // sent, it must be answered at once ("6"), or the upgrade stalls until the
    // next ping (pingInterval, 25 s by default) and the client cannot even close.
    const open = await eioOpen(server);
    await eioPost(server, open.sid, '40');
    await eioPollFor(server, open.sid, (r) => r.startsWith('40'), 'CONNECT reply');
    const ws = new WebSocket(server.wsUrl(`/socket.io/?EIO=4&transport=websocket&sid=${open.sid}`));
    const frames = new Queue();
    ws.on('message', (d) => frames.push(d.toString()));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      ws.send('2probe');
      await frames.next((f) => f === '3probe', 3000, '3probe');
      const t0 = Date.now();
      const r = await eioGet(server, open.sid, 2000).catch((e) => ({ status: 'none', text: e.message }));
      assert.deepEqual([r.status, r.text], [200, '6'], `GET after 3probe (${Date.now() - t0} ms)`);
    } finally {
      ws.send('5');
      ws.terminate();
    }
  });

  test('a session in the middle of its upgrade probe counts once in /stats', T, async () => {
    await waitFor(async () => (await byProto()) === 0, 5000, 'socketio 0 before');
    const open = await eioOpen(server);
    const ws = new WebSocket(server.wsUrl(`/socket.io/?EIO=4&transport=websocket&sid=${open.sid}`));
    const frames = new Queue();
    ws.on('message', (d) => frames.push(d.toString()));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      ws.send('2probe');
      await frames.next((f) => f === '3probe', 3000, '3probe');
      const st = await stats(server);
      assert.equal(st.connections.by_protocol.socketio, 1, 'the probe WebSocket is counted as another connection');
      assert.equal(st.connections.total, 1);
    } finally {
      ws.terminate();
      await eioPost(server, open.sid, '1');
    }
  });
});

// connection state recovery (socketio.recovery, on in MAIN_CONFIG)
describe('connection state recovery', () => {
  for (const transports of [['websocket'], ['polling']]) {
    test(`after an abrupt transport close the client recovers: rooms and missed events (${transports})`, T, async () => {
      const ch = uniq('csr');
      const s = new Sio(server, '/', {
        transports, reconnection: true, reconnectionDelay: 800, reconnectionDelayMax: 800, randomizationFactor: 0,
        reconnectionAttempts: 5,
      });
      await s.connect();
      assert.equal(s.socket.recovered, false);
      await s.ack('subscribe', ch);
      await publish(server, ch, 'before', 1);
      assertOneData((await s.next('before')).args, 1);
      const firstId = s.socket.id;

      const dropped = new Promise((resolve) => s.socket.once('disconnect', resolve));
      const reconnected = new Promise((resolve) => s.socket.once('connect', () => resolve(Date.now())));
      s.socket.io.engine.close();   // the transport dies; the Manager reconnects by itself
      const reason = await dropped;
      await publish(server, ch, 'missed', 2);
      await publish(server, ch, 'missed', 3);
      const publishedAt = Date.now();
      const at = await Promise.race([reconnected, sleep(5000).then(() => null)]);
      assert.ok(at, `no reconnection within 5 s (disconnect reason ${reason})`);
      assert.ok(at >= publishedAt, 'reconnected before the missed events were published: inconclusive');
      assert.equal(s.socket.recovered, true, 'socket.recovered after reconnecting');
      const m1 = await s.next('missed', (d) => d === 2);
      const m2 = await s.next('missed', (d) => d === 3);
      assertOneData(m1.args, 2);
      assertOneData(m2.args, 3);
      await publish(server, ch, 'after', 4);
      await s.next('after');
      assert.equal(s.received('before').length, 0, 'an event received before the drop came again');
      assert.deepEqual(await s.ack('getRooms'), [ch]);
      s.socket.io.reconnection(false);
      // Socket.IO restores the socket's id with its state
      assert.equal(s.socket.id, firstId, 'a recovered socket keeps its id');
    });
  }

  // A raw WebSocket session: the frames after the open packet, in a queue.
  async function rawSio(srv, query = '') {
    const ws = new WebSocket(srv.wsUrl(`/socket.io/?EIO=4&transport=websocket${query}`));
    const frames = new Queue();
    ws.on('message', (d) => { const f = d.toString(); if (f === '2') ws.send('3'); else frames.push(f); });
    ws.on('close', () => { frames.failure = 'websocket closed'; frames.wake(); });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    await frames.next((f) => f[0] === '0', 3000, 'open packet');
    return { ws, frames };
  }

  test('a pid taken by another identity recovers nothing: no rooms of the first user, no missed events', T, async () => {
    const ch = uniq('csr-pub');
    const a = await rawSio(server, `&token=${jwt({ sub: 'alice' })}`);
    a.ws.send('40');
    const { pid } = JSON.parse((await a.frames.next((f) => f.startsWith('40'), 3000, 'CONNECT reply')).slice(2));
    assert.match(pid || '', /^[A-Za-z0-9_-]+$/, 'the CONNECT reply carries a pid');
    a.ws.send(`421["subscribe","${ch}"]`);
    await a.frames.next((f) => f.startsWith('431'), 3000, 'subscribe ack');
    await publish(server, 'user:alice', 'private', { n: 1 });
    const first = await a.frames.next((f) => f.startsWith('42["private"'), 3000, 'private event');
    const offset = JSON.parse(first.slice(2)).at(-1);
    assert.equal(typeof offset, 'string', `the event carries an offset: ${first}`);
    a.ws.terminate();
    await waitFor(async () => (await stats(server)).connections.by_channel['user:alice'] === undefined, 3000, 'alice gone');
    await publish(server, 'user:alice', 'private', { n: 2 });

    const m = await rawSio(server);   // anonymous, with alice's pid and offset
    m.ws.send(`40${JSON.stringify({ pid, offset })}`);
    const reply = JSON.parse((await m.frames.next((f) => f.startsWith('40'), 3000, 'CONNECT reply')).slice(2));
    assert.notEqual(reply.pid, pid, 'recovered another user\'s session');
    m.ws.send('421["getRooms"]');
    assert.equal(await m.frames.next((f) => f.startsWith('431'), 3000, 'getRooms ack'), '431[[]]');
    await sleep(200);
    assert.deepEqual(m.frames.items.filter((f) => f.startsWith('42["private"')), [], 'events of user:alice delivered');
    m.ws.terminate();
  });

  test('an unknown pid: a fresh session, recovered false', T, async () => {
    const r = await rawSio(server);
    r.ws.send('40{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"1"}');
    const reply = JSON.parse((await r.frames.next((f) => f.startsWith('40'), 3000, 'CONNECT reply')).slice(2));
    assert.notEqual(reply.pid, 'AAAAAAAAAAAAAAAAAAAA');
    assert.match(reply.sid, /^[A-Za-z0-9_-]+$/);
    r.ws.terminate();
  });
});

describe('heartbeat and anonymous: false', () => {
  let hb;
  before(async () => {
    hb = await startHerald({
      auth: { jwt: { secret: SECRET }, anonymous: false },
      socketio: { ping_interval_ms: 300, ping_timeout_ms: 300 },
    });
  });
  after(async () => { await hb.stop(); });

  test('without a token: connect_error; with one: connected', T, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const err = await new Sio(hb, '/', { transports }).connectError();
      assert.equal(err.message, 'Authentication failed', `${transports}`);
      const ok = await sioConnect(hb, '/', { transports, auth: { token: jwt({ sub: 'frank' }) } });
      assert.deepEqual(await ok.ack('getRooms'), ['user:frank']);
      ok.close();
    }
  });

  test('clients answer 300 ms pings and stay connected for 2 s on each transport', T, async () => {
    const clients = [];
    for (const transports of [['websocket'], ['polling'], undefined]) {
      const s = await sioConnect(hb, '/', { ...(transports ? { transports } : {}), auth: { token: jwt({ sub: 'gina' }) } });
      s.pings = 0;
      s.socket.io.engine.on('ping', () => { s.pings++; });
      clients.push(s);
    }
    await sleep(2000);
    for (const s of clients) {
      assert.deepEqual(s.disconnects, [], `${s.transport} disconnected`);
      assert.ok(s.socket.connected);
      assert.ok(s.pings >= 3, `${s.transport}: ${s.pings} pings in 2 s at a 300 ms interval`);
      assert.equal((await s.ack('ping')).type, 'pong');
      s.close();
    }
  });

  test('a polling session that never polls nor pongs is closed: its sid gets 400 code 1', T, async () => {
    const open = await eioOpen(hb, `&token=${jwt({ sub: 'hank' })}`);
    assert.equal(open.pingInterval, 300);
    assert.equal(open.pingTimeout, 300);
    await sleep(1500);   // interval + timeout is 600 ms
    const r = await eioGet(hb, open.sid, 3000);
    assert.equal(r.status, 400, `after 1.5 s silent: ${r.status} ${r.text}`);
    assert.equal(JSON.parse(r.text).code, 1);
    await waitFor(async () => (await stats(hb)).connections.by_protocol.socketio === 0, 3000, 'session gone from /stats');
  });

  test('a raw WebSocket session that never pongs is closed', T, async () => {
    const ws = new WebSocket(hb.wsUrl(`/socket.io/?EIO=4&transport=websocket&token=${jwt({ sub: 'ivy' })}`));
    const frames = new Queue();
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (d) => frames.push(d.toString()));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const open = JSON.parse((await frames.next((f) => f[0] === '0', 3000, 'open packet')).slice(1));
    assert.equal(open.pingInterval, 300);
    assert.deepEqual(open.upgrades, []);
    ws.send('40');
    await frames.next((f) => f.startsWith('40'), 3000, 'CONNECT reply');
    await frames.next((f) => f === '2', 3000, 'a ping');
    const code = await Promise.race([closed, sleep(3000).then(() => 'still open after 3 s')]);
    assert.notEqual(code, 'still open after 3 s');
  });
});

describe('shutdown', () => {
  // Sessions in every state: websocket, polling (socket.io-client), an upgraded
  // one, one in the middle of its probe, one with a GET held open.
  test('SIGTERM with Socket.IO sessions in every state: exit 0, clients see the disconnect', T, async () => {
    const srv = await startHerald({ auth: { jwt: { secret: SECRET } } });
    let stopping = false;
    try {
      const ch = uniq('bye');
      const cs = [];
      for (const transports of [['websocket'], ['polling']]) {
        const s = await sioConnect(srv, '/', { transports, auth: { token: jwt({ sub: 'judy' }) } });
        await s.ack('subscribe', ch);
        cs.push(s);
      }
      const probe = async (sid) => {
        const ws = new WebSocket(srv.wsUrl(`/socket.io/?EIO=4&transport=websocket&sid=${sid}`));
        const frames = new Queue();
        ws.on('message', (d) => frames.push(d.toString()));
        const closed = new Promise((resolve) => ws.on('close', resolve));
        await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
        ws.send('2probe');
        await frames.next((f) => f === '3probe', 3000, '3probe');
        return { ws, frames, closed };
      };
      const up = await eioOpen(srv);   // upgraded by hand, no GET in flight
      await eioPost(srv, up.sid, '40');
      await eioPollFor(srv, up.sid, (r) => r.startsWith('40'), 'CONNECT reply');
      const upgraded = await probe(up.sid);
      upgraded.ws.send('5');
      upgraded.ws.send(`421["subscribe","${ch}"]`);
      await upgraded.frames.next((f) => f.startsWith('431'), 3000, 'subscribe ack on the upgraded session');
      const mid = await eioOpen(srv);
      await eioPost(srv, mid.sid, '40');
      await eioPollFor(srv, mid.sid, (r) => r.startsWith('40'), 'CONNECT reply');
      const midProbe = await probe(mid.sid);
      const raw = await eioOpen(srv);
      const held = eioGet(srv, raw.sid, 10000).catch((e) => e);
      await sleep(100);
      await publish(srv, ch, 'last', 1);
      for (const s of cs) await s.next('last');
      await upgraded.frames.next((f) => f.startsWith('42["last"'), 3000, 'event on the upgraded session');
      stopping = true;
      await srv.stop();   // asserts exit status 0: no leak, no sanitizer report
      for (const s of cs) await waitFor(() => s.disconnects.length > 0, 5000, `${s.transport} disconnect`);
      for (const w of [upgraded, midProbe]) {
        const code = await Promise.race([w.closed, sleep(3000).then(() => 'open')]);
        assert.notEqual(code, 'open', 'a WebSocket still open after the exit');
      }
      const h = await held;
      assert.ok(h instanceof Error || h.status === 200, `held GET: ${JSON.stringify(h)}`);
    } finally {
      if (!stopping) await srv.stop().catch(() => {});
    }
  });
});
