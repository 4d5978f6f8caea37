// harness.mjs: starts herald for the Node end-to-end tests and talks to it.
// startHerald() runs one server on a free 127.0.0.1 port with a temporary data dir
// and a generated JSON config; stop() sends SIGTERM and asserts exit status 0
// within the shutdown timeout (a sanitizer report makes it non-zero). Every wait
// is bounded; only the process started here is ever signalled.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

export const HERALD_BIN = process.env.HERALD_BIN || '/work/main/build/test/herald';
export const HOST = '127.0.0.1';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(pred, timeoutMs = 5000, what = 'condition', intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await pred();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(intervalMs);
  }
}

function logTail(file, lines = 60) {
  try {
    const text = fs.readFileSync(file, 'utf8').split('\n');
    return `--- herald log tail (${file}) ---\n` + text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// One herald process on a port and data dir of its own choosing, so that it can
// be stopped (SIGTERM: exit status 0 required), killed (SIGKILL: a crash) and
// started again on the same port and data dir. cleanup() removes its directory.
export class HeraldProcess {
  constructor(config, prefix = 'herald-e2e-proc-') {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.dataDir = path.join(this.dir, 'data');
    fs.mkdirSync(this.dataDir);
    this.config = { shutdown_timeout_s: 5, ...config };
    this.cfgPath = path.join(this.dir, 'config.json');
    fs.writeFileSync(this.cfgPath, JSON.stringify(this.config, null, 1));
    this.logPath = path.join(this.dir, 'herald.log');
    this.port = null;
    this.proc = null;
    this.exited = null;
  }

  url(p = '') { return `http://${HOST}:${this.port}${p}`; }
  wsUrl(p = '/ws') { return `ws://${HOST}:${this.port}${p}`; }
  logTail(lines = 60) { return logTail(this.logPath, lines); }

  // Resolves with this once /health answers 200 on port.
  async start(port) {
    this.port = port;
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('HERALD_') && k !== 'HERALD_BIN') delete env[k];
    env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0';
    env.UBSAN_OPTIONS ??= 'print_stacktrace=1:halt_on_error=1';
    const log = fs.openSync(this.logPath, 'a');
    const proc = spawn(HERALD_BIN, ['serve', '--config', this.cfgPath, '--listen', `${HOST}:${port}`,
      '--data-dir', this.dataDir], { stdio: ['ignore', log, log], env, cwd: this.dir });
    fs.closeSync(log);
    this.proc = proc;
    this.exited = null;
    this.exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      resolve(this.exited);
    }));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && !this.exited) {
      try {
        const r = await fetch(this.url('/health'), { signal: AbortSignal.timeout(1000) });
        await r.text();
        if (r.status === 200) return this;
      } catch { /* not listening yet */ }
      await sleep(25);
    }
    if (!this.exited) proc.kill('SIGKILL'); // our own child
    throw new Error(`herald did not start on port ${port}: ${JSON.stringify(this.exited)}\n${this.logTail()}`);
  }

  // SIGTERM; exit status 0 expected within the shutdown timeout.
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (this.exited) throw new Error(`herald had already exited: ${JSON.stringify(this.exited)}\n${this.logTail()}`);
    proc.kill('SIGTERM');
    const limit = (this.config.shutdown_timeout_s + 5) * 1000;
    const res = await Promise.race([this.exitPromise, sleep(limit).then(() => null)]);
    if (!res) {
      proc.kill('SIGKILL'); // our own child
      await Promise.race([this.exitPromise, sleep(5000)]);
      throw new Error(`herald did not exit within ${limit} ms of SIGTERM; killed\n${this.logTail()}`);
    }
    if (res.code !== 0) throw new Error(`herald exited with ${JSON.stringify(res)} (expected 0)\n${this.logTail()}`);
  }

  // A crash (or the end of a failed test): SIGKILL, no shutdown at all.
  async kill() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (!this.exited) proc.kill('SIGKILL'); // our own child
    await Promise.race([this.exitPromise, sleep(5000)]);
  }

  cleanup() { fs.rmSync(this.dir, { recursive: true, force: true }); }
}

export async function startHerald(config = {}) {
  const cfg = { shutdown_timeout_s: 5, ...config };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-e2e-node-'));
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const cfgPath = path.join(dir, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 1));
  const logPath = path.join(dir, 'herald.log');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HERALD_') && k !== 'HERALD_BIN') delete env[k];
  env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0';
  env.UBSAN_OPTIONS ??= 'print_stacktrace=1:halt_on_error=1';

  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const log = fs.openSync(logPath, 'a');
    const proc = spawn(HERALD_BIN, ['serve', '--config', cfgPath, '--listen', `${HOST}:${port}`, '--data-dir', dataDir],
      { stdio: ['ignore', log, log], env, cwd: dir });
    fs.closeSync(log);
    let exited = null;
    const exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
    const server = {
      port, proc, dir, logPath,
      url: (p = '') => `http://${HOST}:${port}${p}`,
      wsUrl: (p = '/ws') => `ws://${HOST}:${port}${p}`,
      logTail: () => logTail(logPath),
      async stop() {
        if (exited) throw new Error(`herald had already exited: ${JSON.stringify(exited)}\n${logTail(logPath)}`);
        proc.kill('SIGTERM');
        const limit = (cfg.shutdown_timeout_s + 5) * 1000;
        const res = await Promise.race([exitPromise, sleep(limit).then(() => null)]);
        if (!res) {
          proc.kill('SIGKILL'); // our own child
          await Promise.race([exitPromise, sleep(5000)]);
          throw new Error(`herald did not exit within ${limit} ms of SIGTERM; killed\n${logTail(logPath)}`);
        }
        if (res.code !== 0) throw new Error(`herald exited with ${JSON.stringify(res)} (expected 0)\n${logTail(logPath)}`);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
    const deadline = Date.now() + 15000;
    let ready = false;
    while (Date.now() < deadline && !exited) {
      try {
        const r = await fetch(server.url('/health'), { signal: AbortSignal.timeout(1000) });
        await r.text();
        if (r.status === 200) { ready = true; break; }
      } catch { /* not listening yet */ }
      await sleep(50);
    }
    if (ready) return server;
    if (exited) {
      const tail = logTail(logPath);
      lastErr = new Error(`herald exited during start: ${JSON.stringify(exited)}\n${tail}`);
      if (/in use/i.test(tail)) continue;
      throw lastErr;
    }
    proc.kill('SIGKILL');
    throw new Error(`herald did not answer /health within 15 s\n${logTail(logPath)}`);
  }
  throw lastErr;
}

export async function api(server, method, p, body, headers = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(5000) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(server.url(p), init);
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json };
}

export async function publish(server, channel, event, data) {
  const r = await api(server, 'POST', '/api/publish', { channel, event, data });
  if (r.status !== 200) throw new Error(`publish ${channel}/${event}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function stats(server) {
  const r = await api(server, 'GET', '/stats');
  return r.body;
}

export function runCli(args, { timeout = 10000, input } = {}) {
  return new Promise((resolve) => {
    const child = execFile(HERALD_BIN, args, { timeout, env: { ...process.env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

// A `ws` client with a message queue: next(pred) waits (bounded) for a matching message.
export class Client {
  constructor(url, opts = {}) {
    this.ws = new WebSocket(url, opts);
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.ws.on('message', (data, isBinary) => {
      const msg = isBinary ? { binary: true } : JSON.parse(data.toString('utf8'));
      this.queue.push(msg);
      this._wake();
    });
    this.ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; this._wake(); });
    this.ws.on('error', (err) => { this.error = err; this._wake(); });
  }

  _wake() { for (const w of this.waiters.splice(0)) w(); }

  opened(timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      const t = setTimeout(() => reject(new Error('open timed out')), timeoutMs);
      this.ws.once('open', () => { clearTimeout(t); resolve(); });
      this.ws.once('unexpected-response', (_req, res) => { clearTimeout(t); reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })); });
      this.ws.once('error', (e) => { clearTimeout(t); reject(e); });
    });
  }

  async next(pred = () => true, timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.queue.findIndex(pred);
      if (i >= 0) return this.queue.splice(i, 1)[0];
      if (this.closed) throw new Error(`connection closed (${this.closed.code}) while waiting for a message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching message within ${timeoutMs} ms; queue: ${JSON.stringify(this.queue.slice(-5))}`);
      await new Promise((r) => { const t = setTimeout(r, left); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }

  send(obj) { this.ws.send(JSON.stringify(obj)); }

  async request(obj, timeoutMs = 3000) {
    this.send(obj);
    return this.next((m) => !('offset' in m) && m.type !== 'connected', timeoutMs);
  }

  close() { try { this.ws.terminate(); } catch { /* already gone */ } }
}

export async function connect(server, opts = {}) {
  const c = new Client(server.wsUrl(), opts);
  await c.opened();
  c.hello = await c.next((m) => m.type === 'connected');
  return c;
}
