// End-to-end: herald with `tls` configured, through Node's TLS stack and the npm
// `ws` client (SPEC section 5 `tls`): https and wss on one listener, a self-signed
// certificate (made here with the openssl CLI) trusted through `ca`, a JWT user
// over wss, events published over https, and a client without the CA refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { HERALD_BIN, HOST, freePort, sleep, Client } from './harness.mjs';

const JWT_SECRET = 'tls-test-secret-8d2f61';
let dir, ca, port, proc, exitPromise, logPath;
const clients = [];

function logTail() {
  try { return fs.readFileSync(logPath, 'utf8').split('\n').slice(-60).join('\n'); } catch { return '(no log)'; }
}

// One https request trusting our certificate; resolves { status, body }.
function request(method, p, body, { trust = true } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request({
      host: HOST, port, path: p, method, ca: trust ? ca : undefined, timeout: 5000, agent: false,
      headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {},
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = text; }
        resolve({ status: res.statusCode, body: json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function b64u(buf) { return Buffer.from(buf).toString('base64url'); }
function jwt(claims) {
  const input = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${crypto.createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-e2e-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore', timeout: 30000 });
  ca = fs.readFileSync(cert);
  const cfgPath = path.join(dir, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({
    shutdown_timeout_s: 5, tls: { cert_file: cert, key_file: key }, auth: { jwt: { secret: JWT_SECRET } },
  }));
  fs.mkdirSync(path.join(dir, 'data'));
  logPath = path.join(dir, 'herald.log');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HERALD_') && k !== 'HERALD_BIN') delete env[k];
  env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0';
  env.UBSAN_OPTIONS ??= 'print_stacktrace=1:halt_on_error=1';
  port = await freePort();
  const log = fs.openSync(logPath, 'a');
  proc = spawn(HERALD_BIN, ['serve', '--config', cfgPath, '--listen', `${HOST}:${port}`, '--data-dir',
    path.join(dir, 'data')], { stdio: ['ignore', log, log], env, cwd: dir });
  fs.closeSync(log);
  let exited = null;
  exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline && !exited) {
    try {
      const r = await request('GET', '/health');
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(50);
  }
  if (!exited) proc.kill('SIGKILL');
  throw new Error(`herald with tls did not answer https /health\n${logTail()}`);
});

after(async () => {
  for (const c of clients) c.close();
  if (!proc) return;
  proc.kill('SIGTERM');
  const res = await Promise.race([exitPromise, sleep(10000).then(() => null)]);
  if (!res) {
    proc.kill('SIGKILL'); // our own child
    throw new Error(`herald did not exit within 10 s of SIGTERM\n${logTail()}`);
  }
  assert.equal(res.code, 0, `herald exited with ${JSON.stringify(res)}\n${logTail()}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function wss(p, opts = {}) {
  const c = new Client(`wss://${HOST}:${port}${p}`, { ca, ...opts });
  clients.push(c);
  await c.opened();
  return c;
}

test('https health with the certificate as CA', async () => {
  const r = await request('GET', '/health');
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ok');
});

test('wss: a JWT user subscribes and receives an event published over https', async () => {
  const c = await wss(`/ws?token=${jwt({ sub: 'node-tls', exp: Math.floor(Date.now() / 1000) + 600 })}`);
  const hello = await c.next((m) => m.type === 'connected');
  assert.equal(hello.data.user, 'node-tls');
  assert.deepEqual(hello.data.channels, ['user:node-tls']);
  const ch = `tls-node-${process.pid}`;
  const sub = await c.request({ type: 'subscribe', id: 1, channels: [ch] });
  assert.equal(sub.type, 'subscribed');
  const pub = await request('POST', '/api/publish', { channel: ch, event: 'over_tls', data: { big: 'z'.repeat(200000) } });
  assert.equal(pub.status, 200, JSON.stringify(pub.body));
  const ev = await c.next((m) => m.type === 'over_tls', 5000);
  assert.equal(ev.id, pub.body.id);
  assert.equal(ev.data.big.length, 200000);
  const dm = await request('POST', '/api/publish', { channel: 'user:node-tls', event: 'dm', data: { hi: 1 } });
  assert.equal(dm.status, 200);
  const got = await c.next((m) => m.type === 'dm');
  assert.deepEqual(got.data, { hi: 1 });
});

test('wss: an invalid token gets error unauthorized, then close 4001', async () => {
  const c = await wss('/ws?token=not.a.jwt');
  const err = await c.next((m) => m.type === 'error');
  assert.equal(err.data.code, 'unauthorized');
  const deadline = Date.now() + 3000;
  while (!c.closed && Date.now() < deadline) await sleep(20);
  assert.equal(c.closed?.code, 4001);
});

test('a client without the CA refuses the self-signed certificate', async () => {
  const ws = new WebSocket(`wss://${HOST}:${port}/ws`);
  const outcome = await new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), 5000);
    ws.once('open', () => { clearTimeout(t); resolve('open'); });
    ws.once('error', (e) => { clearTimeout(t); resolve(e.code || e.message); });
  });
  ws.terminate();
  assert.notEqual(outcome, 'open');
  assert.notEqual(outcome, 'timeout');
  assert.match(String(outcome), /SELF_SIGNED|CERT|certificate/i);
  const r = await request('GET', '/health');
  assert.equal(r.status, 200);
});
