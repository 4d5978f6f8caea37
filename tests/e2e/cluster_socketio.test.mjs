// End-to-end: Socket.IO connection state recovery across the nodes of a cluster
// (SPEC section 8, redis.url). The unmodified npm socket.io-client talks to a small
// TCP switch of this test's own: every new connection goes to the switch's current
// target, so after the transport drops, the client's own reconnection lands on the
// other node, as behind a load balancer. A real redis-server is started on a free
// loopback port.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startHerald, publish, freePort, sleep, waitFor, HOST } from './harness.mjs';

const T = { timeout: 30000 };
let n = 0;
const uniq = (p) => `${p}-${process.pid}-${++n}`;

// -- redis-server, ours, stopped by PID ----------------------------------------------
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-e2e-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
    '--dir', dir], { stdio: 'ignore' });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  await waitFor(() => new Promise((resolve) => {
    if (exited) return resolve(false);
    const s = net.connect(port, HOST);
    s.once('connect', () => { s.write('PING\r\n'); });
    s.once('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
    s.once('error', () => resolve(false));
  }), 10000, 'redis-server to answer PING');
  return {
    url: `redis://${HOST}:${port}`,
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(5000)]);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// -- the switch: forwards each new connection to `target` ----------------------------
async function startSwitch(target) {
  const sockets = new Set();
  const sw = { target, port: 0 };
  const srv = net.createServer((client) => {
    const up = net.connect(sw.target, HOST);
    sockets.add(client).add(up);
    client.pipe(up).pipe(client);
    const end = () => { client.destroy(); up.destroy(); sockets.delete(client); sockets.delete(up); };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((resolve) => srv.listen(0, HOST, resolve));
  sw.port = srv.address().port;
  sw.close = () => new Promise((resolve) => { for (const s of sockets) s.destroy(); srv.close(resolve); });
  return sw;
}

// socket.io-client events as a list that tests wait on
function collect(socket) {
  const got = [];
  socket.onAny((event, ...args) => got.push({ event, args }));
  return {
    got,
    next: (event, pred = () => true, ms = 5000) =>
      waitFor(() => got.find((e) => e.event === event && pred(e.args[0])), ms, `event ${event}`),
  };
}

describe('Socket.IO connection state recovery through another node', () => {
  let redis, n1, n2, sw;
  before(async () => {
    redis = await startRedis();
    const cfg = { redis: { url: redis.url }, socketio: { recovery: true } };
    n1 = await startHerald(cfg);
    n2 = await startHerald(cfg);
    sw = await startSwitch(n1.port);
  });
  after(async () => {
    await sw?.close();
    await n1?.stop();
    await n2?.stop();
    await redis?.stop();
  });

  for (const transports of [['websocket'], ['polling']]) {
    test(`the client reconnects through the other node and recovers rooms and missed events (${transports})`, T, async () => {
      const ch = uniq('market');
      sw.target = n1.port;
      const socket = io(`http://${HOST}:${sw.port}`, {
        transports, reconnectionDelay: 1500, reconnectionDelayMax: 1500, randomizationFactor: 0, reconnectionAttempts: 6,
      });
      const ev = collect(socket);
      try {
        await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
        assert.equal(socket.recovered, false);
        const ack = await socket.timeout(5000).emitWithAck('subscribe', ch);
        assert.deepEqual(ack, { success: true, room: ch });
        const first = await publish(n1, ch, 'trade', { n: 1 });
        await ev.next('trade', (d) => d.n === 1);
        const firstId = socket.id;

        const dropped = new Promise((resolve) => socket.once('disconnect', resolve));
        const back = new Promise((resolve) => socket.once('connect', () => resolve(Date.now())));
        socket.io.engine.close();   // the transport dies (its close packet still reaches the first node)
        await dropped;
        // the first node saw the session end (and kept it in Redis); the balancer
        // now sends the client elsewhere
        await waitFor(async () => (await (await fetch(`http://${HOST}:${n1.port}/stats`)).json())
          .connections.by_protocol.socketio === 0, 5000, 'the session to end on the first node');
        sw.target = n2.port;
        const missed = [await publish(n1, ch, 'trade', { n: 2 }), await publish(n2, ch, 'trade', { n: 3 })];
        const publishedAt = Date.now();
        const at = await Promise.race([back, sleep(8000).then(() => null)]);
        assert.ok(at, 'no reconnection within 8 s');
        assert.ok(at >= publishedAt, 'reconnected before the missed events were published: inconclusive');
        assert.equal(socket.recovered, true, 'socket.recovered after reconnecting through the other node');
        assert.equal(socket.id, firstId, 'a recovered socket keeps its id');
        await ev.next('trade', (d) => d.n === 3);
        const live = await publish(n1, ch, 'trade', { n: 4 });
        await ev.next('trade', (d) => d.n === 4);
        await sleep(200);
        // every event once, in order, with offsets one sequence across both nodes
        assert.deepEqual(ev.got.filter((e) => e.event === 'trade').map((e) => e.args[0].n), [1, 2, 3, 4]);
        assert.deepEqual([first, ...missed, live].map((r) => r.offset), [1, 2, 3, 4]);
        assert.deepEqual(await socket.timeout(5000).emitWithAck('getRooms'), [ch]);
        const st = await (await fetch(`http://${HOST}:${n2.port}/stats`)).json();
        assert.ok(st.connections.by_protocol.socketio >= 1, 'the recovered session is on the second node');
      } finally {
        socket.io.reconnection(false);
        socket.close();
      }
    });
  }

  test('an unknown pid on the other node: a fresh session, recovered false', T, async () => {
    sw.target = n2.port;
    const socket = io(`http://${HOST}:${sw.port}`, { transports: ['websocket'], reconnection: false });
    try {
      await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
      assert.equal(socket.recovered, false);
    } finally {
      socket.close();
    }
  });
});
