// evm.mjs: a real local Ethereum node for the end-to-end tests of herald's `evm`
// source, and a JSON-RPC WebSocket proxy to put between herald and it.
//
// - Ganache: the npm `ganache` 7 node as a child process on a free 127.0.0.1 port,
//   deterministic accounts, chain id 1337, instamine, its chain kept in a database
//   directory so a stop and start (same port, same directory) keeps every block.
//   Stopped by its PID (SIGTERM, then SIGKILL after a bounded wait).
// - Chain: Tipping.sol compiled by the npm `solc` (bundled soljson, no download)
//   and driven with npm `ethers` 6 over HTTP: deploy, tip, settle, note, mine
//   empty blocks (evm_mine), the head block, a log as the node itself encodes it.
// - RpcProxy: a WebSocket server (npm `ws`) that opens one upstream connection to
//   the node per client connection and forwards frames both ways. It records the
//   calls (eth_getLogs ranges among them), remembers the id of each connection's
//   logs subscription, injects `removed: true` notifications (no npm node emits a
//   reorg), pings its clients, and drops every connection while refusing new ones
//   (the node going away).
// Every wait is bounded; only processes started here are ever signalled.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import solc from 'solc';
import { ethers } from 'ethers';
import { freePort, sleep, HOST } from '../harness.mjs';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const GANACHE_CLI = path.join(path.dirname(require.resolve('ganache/package.json')), 'dist', 'node', 'cli.js');
export const CHAIN_ID = 1337;

// -- the node ---------------------------------------------------------------------

export async function rpcHttp(url, method, params = [], timeoutMs = 5000) {
  const r = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await r.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

export class Ganache {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-e2e-ganache-'));
    this.dbPath = path.join(this.dir, 'db');
    this.logPath = path.join(this.dir, 'ganache.log');
    this.port = null;
    this.proc = null;
    this.exited = null;
  }

  get url() { return `http://${HOST}:${this.port}`; }
  get wsUrl() { return `ws://${HOST}:${this.port}`; }
  rpc(method, params = []) { return rpcHttp(this.url, method, params); }

  logTail(lines = 30) {
    try {
      return `--- ganache log tail (${this.logPath}) ---\n` + fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no ganache log)';
    }
  }

  // Starts the node (on the port it had before, if any) and waits until it answers.
  async start(timeoutMs = 30000) {
    if (this.proc) throw new Error('ganache is already running');
    if (!this.port) this.port = await freePort();
    fs.mkdirSync(this.dbPath, { recursive: true });
    const log = fs.openSync(this.logPath, 'a');
    const proc = spawn(process.execPath, [GANACHE_CLI,
      '--server.host', HOST, '--server.port', String(this.port),
      '--wallet.deterministic', '--wallet.totalAccounts', '10', '--wallet.defaultBalance', '100000',
      '--chain.chainId', String(CHAIN_ID), '--chain.hardfork', 'shanghai',
      '--miner.instamine', 'eager', '--database.dbPath', this.dbPath],
    { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc = proc;
    this.exited = null;
    this.exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      resolve(this.exited);
    }));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.exited) {
      try {
        const id = await rpcHttp(this.url, 'eth_chainId', [], 1000);
        if (Number(id) === CHAIN_ID) return this;
      } catch { /* not up yet */ }
      await sleep(100);
    }
    if (!this.exited) proc.kill('SIGKILL'); // our own child
    this.proc = null;
    throw new Error(`ganache did not answer on port ${this.port} within ${timeoutMs} ms: ${JSON.stringify(this.exited)}\n${this.logTail()}`);
  }

  // SIGTERM (ganache closes its database and exits), SIGKILL after 10 s.
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (!this.exited) {
      proc.kill('SIGTERM');
      const res = await Promise.race([this.exitPromise, sleep(10000).then(() => null)]);
      if (!res) {
        proc.kill('SIGKILL'); // our own child
        await Promise.race([this.exitPromise, sleep(5000)]);
      }
    }
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  cleanup() { fs.rmSync(this.dir, { recursive: true, force: true }); }
}

// -- the contract -------------------------------------------------------------------

let compiled = null;

// Tipping.sol with the bundled solc-js; EVM version shanghai, which ganache 7.9 runs.
export function compileTipping() {
  if (compiled) return compiled;
  const source = fs.readFileSync(path.join(HERE, 'Tipping.sol'), 'utf8');
  const input = {
    language: 'Solidity',
    sources: { 'Tipping.sol': { content: source } },
    settings: {
      evmVersion: 'shanghai',
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { '*': { Tipping: ['abi', 'evm.bytecode.object'] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(`solc: ${errors.map((e) => e.formattedMessage).join('\n')}`);
  const c = out.contracts['Tipping.sol'].Tipping;
  compiled = { abi: c.abi, bytecode: '0x' + c.evm.bytecode.object, solc: solc.version() };
  return compiled;
}

export const SIGNATURES = {
  TipSent: 'TipSent(address indexed tipper, address indexed creator, uint256 amount, string tipMode)',
  Settled: 'Settled(bytes32 indexed id, int256 delta, bool ok, bytes memo, uint8[] parts)',
  Noted: 'Noted(string indexed tag, address who, bytes4 sel, uint64 seq, int8 small, uint16[2] pair)',
};

// One log as the tests compare it with what herald publishes.
function logInfo(log, iface) {
  const parsed = iface.parseLog({ topics: log.topics, data: log.data });
  return {
    name: parsed?.name,
    args: parsed?.args,
    address: log.address.toLowerCase(),
    blockNumber: log.blockNumber,
    blockHash: log.blockHash.toLowerCase(),
    txHash: log.transactionHash.toLowerCase(),
    logIndex: log.index,
  };
}

// Ethers over HTTP to the node (not through the proxy): deploys and drives Tipping.
export class Chain {
  constructor(ganache) {
    this.ganache = ganache;
    this.provider = new ethers.JsonRpcProvider(ganache.url, CHAIN_ID, { staticNetwork: true, cacheTimeout: -1, pollingInterval: 100 });
    this.iface = null;
  }

  async signer(i = 0) { return this.provider.getSigner(i); }

  // Deploys a new Tipping; returns { address (lowercase), blockNumber, contract }.
  async deploy() {
    const { abi, bytecode } = compileTipping();
    this.iface = new ethers.Interface(abi);
    const factory = new ethers.ContractFactory(abi, bytecode, await this.signer(0));
    const contract = await factory.deploy();
    const receipt = await contract.deploymentTransaction().wait();
    return { address: (await contract.getAddress()).toLowerCase(), blockNumber: receipt.blockNumber, contract };
  }

  async _send(contract, from, fn, args, overrides = {}) {
    const c = contract.connect(await this.signer(from));
    const tx = await c[fn](...args, overrides);
    const receipt = await tx.wait();
    if (receipt.status !== 1) throw new Error(`${fn}: transaction failed`);
    const iface = contract.interface;
    return { receipt, logs: receipt.logs.map((l) => logInfo(l, iface)) };
  }

  tip(contract, creator, amountWei, tipMode, from = 1) {
    return this._send(contract, from, 'tip', [creator, tipMode], { value: amountWei });
  }

  tipMany(contract, creators, eachWei, tipMode, from = 1) {
    return this._send(contract, from, 'tipMany', [creators, tipMode], { value: eachWei * BigInt(creators.length) });
  }

  settle(contract, { id, delta, ok, memo, parts }, from = 2) {
    return this._send(contract, from, 'settle', [id, delta, ok, memo, parts]);
  }

  note(contract, { tag, sel, small, pair }, from = 3) {
    return this._send(contract, from, 'note', [tag, sel, small, pair]);
  }

  async address(i) { return (await (await this.signer(i)).getAddress()).toLowerCase(); }

  // Mines n empty blocks; returns the new head.
  async mine(n = 1) {
    await this.ganache.rpc('evm_mine', [{ blocks: n }]);
    return this.head();
  }

  async head() { return Number(await this.ganache.rpc('eth_blockNumber')); }

  // The log as the node encodes it in JSON-RPC (hex quantities), for injection.
  async rawLog(blockHash, logIndex) {
    const logs = await this.ganache.rpc('eth_getLogs', [{ blockHash }]);
    const log = logs.find((l) => Number(l.logIndex) === logIndex);
    if (!log) throw new Error(`no log ${logIndex} in block ${blockHash}`);
    return log;
  }

  destroy() { this.provider.destroy(); }
}

// -- the proxy ----------------------------------------------------------------------

// Between herald and the node. For each client connection one upstream connection;
// frames from the client wait until the upstream is open. Either side closing
// closes the other.
export class RpcProxy {
  constructor(upstreamUrl) {
    this.upstreamUrl = upstreamUrl;
    this.port = null;
    this.conns = new Set();
    this.calls = [];          // { at, method, params, conn }
    this.accepted = 0;        // client connections accepted
    this.refusing = false;
    // decoy(request, reply) -> a reply body ({result} or {error}) or null: sent to
    // herald just before the node's reply, under an id herald never used, to show
    // that replies are matched by id and not taken in arrival order.
    this.decoy = null;
    this.decoysSent = 0;
    this.wss = new WebSocketServer({ noServer: true });
    this.server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
    this.server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => {});
      this.wss.handleUpgrade(req, socket, head, (ws) => this._accept(ws));
    });
    this.sockets = new Set();
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
  }

  get url() { return `ws://${HOST}:${this.port}`; }

  async start() {
    if (!this.port) this.port = await freePort();
    await this._listen();
    return this;
  }

  _listen() {
    return new Promise((resolve, reject) => {
      const onErr = (e) => reject(e);
      this.server.once('error', onErr);
      this.server.listen(this.port, HOST, () => { this.server.off('error', onErr); resolve(); });
    });
  }

  _accept(client) {
    if (this.refusing) { client.terminate(); return; }
    this.accepted++;
    const conn = { client, upstream: null, pending: new Map(), logsSub: null, headsSub: null, queue: [], id: this.accepted,
      notifications: 0, pongs: 0 };
    this.conns.add(conn);
    const upstream = new WebSocket(this.upstreamUrl, { perMessageDeflate: false });
    conn.upstream = upstream;
    upstream.on('open', () => { for (const [d, b] of conn.queue.splice(0)) upstream.send(d, { binary: b }); });
    upstream.on('message', (data, isBinary) => {
      const decoys = this._fromNode(conn, data, isBinary);
      if (client.readyState !== WebSocket.OPEN) return;
      for (const d of decoys) { client.send(JSON.stringify(d)); this.decoysSent++; }
      client.send(data, { binary: isBinary });
    });
    const end = () => this._end(conn);
    upstream.on('close', end);
    upstream.on('error', end);
    client.on('message', (data, isBinary) => {
      this._fromClient(conn, data);
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
      else if (upstream.readyState === WebSocket.CONNECTING) conn.queue.push([data, isBinary]);
    });
    client.on('pong', () => { conn.pongs++; });
    client.on('close', end);
    client.on('error', end);
  }

  _end(conn) {
    if (!this.conns.has(conn)) return;
    this.conns.delete(conn);
    try { conn.client.terminate(); } catch { /* gone */ }
    try { conn.upstream.terminate(); } catch { /* gone */ }
  }

  _fromClient(conn, data) {
    let msg;
    try { msg = JSON.parse(data.toString('utf8')); } catch { return; }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (!m || typeof m.method !== 'string') continue;
      this.calls.push({ at: Date.now(), method: m.method, params: m.params, conn: conn.id });
      if (m.id !== undefined && m.id !== null) conn.pending.set(JSON.stringify(m.id), m);
    }
  }

  // Records subscriptions; returns the decoy replies to send ahead of this message.
  _fromNode(conn, data) {
    let msg;
    const decoys = [];
    try { msg = JSON.parse(data.toString('utf8')); } catch { return decoys; }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (!m) continue;
      if (m.method === 'eth_subscription') { conn.notifications++; continue; }
      if (m.id === undefined) continue;
      const key = JSON.stringify(m.id);
      const req = conn.pending.get(key);
      conn.pending.delete(key);
      if (req?.method === 'eth_subscribe' && typeof m.result === 'string') {
        const kind = Array.isArray(req.params) ? req.params[0] : null;
        if (kind === 'logs') conn.logsSub = m.result;
        if (kind === 'newHeads') conn.headsSub = m.result;
      }
      const body = req && this.decoy ? this.decoy(req, m) : null;
      if (body && typeof req.id === 'number') {
        // a stale reply (an id before this one) and one from the future
        decoys.push({ jsonrpc: '2.0', id: req.id + 1000000, ...body });
        if (req.id > 1) decoys.push({ jsonrpc: '2.0', id: req.id - 1, ...body });
      }
    }
    return decoys;
  }

  // Connections whose logs subscription the node has confirmed.
  subscribed() { return [...this.conns].filter((c) => c.logsSub); }
  headsSubscribed() { return [...this.conns].filter((c) => c.headsSub); }

  callsOf(method) { return this.calls.filter((c) => c.method === method); }

  // The eth_getLogs ranges asked for (from the fromCall-th call on), as numbers:
  // [{from, to, blockHash, conn, at}].
  getLogsRanges(fromCall = 0) {
    return this.calls.slice(fromCall).filter((c) => c.method === 'eth_getLogs').map((c) => {
      const f = (Array.isArray(c.params) && c.params[0]) || {};
      const num = (v) => (typeof v === 'string' && v.startsWith('0x') ? Number(BigInt(v)) : v);
      return { from: num(f.fromBlock), to: num(f.toBlock), blockHash: f.blockHash, conn: c.conn, at: c.at };
    });
  }

  // Sends `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":<id>,
  // "result":{...log, "removed":true}}}` to every connection with a logs subscription.
  // Returns how many it was sent to.
  injectRemoved(log) {
    let n = 0;
    for (const conn of this.subscribed()) {
      const note = { jsonrpc: '2.0', method: 'eth_subscription',
        params: { subscription: conn.logsSub, result: { ...log, removed: true } } };
      if (conn.client.readyState === WebSocket.OPEN) { conn.client.send(JSON.stringify(note)); n++; }
    }
    return n;
  }

  // Pings every client (as a node does); resolves with how many answered within timeoutMs.
  async pingClients(timeoutMs = 3000) {
    const conns = [...this.conns];
    const before = conns.map((c) => c.pongs);
    for (const c of conns) c.client.ping(Buffer.from('node-ping'));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (conns.every((c, i) => c.pongs > before[i])) break;
      await sleep(25);
    }
    return { asked: conns.length, answered: conns.filter((c, i) => c.pongs > before[i]).length };
  }

  // Closes every connection, both sides, as a node going away does (TCP reset).
  dropAll() { for (const c of [...this.conns]) this._end(c); }

  // The node is gone: every connection dropped and the port closed (connections are
  // refused) until accept().
  async refuse() {
    this.refusing = true;
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 2000);
      this.server.close(() => { clearTimeout(t); resolve(); });
      this.dropAll();
      for (const s of this.sockets) s.destroy();
    });
  }

  async accept() {
    this.refusing = false;
    for (let i = 0; i < 20; i++) {
      try { await this._listen(); return; } catch (e) {
        if (e.code !== 'EADDRINUSE' && e.code !== 'ERR_SERVER_ALREADY_LISTEN') throw e;
        await sleep(100);
      }
    }
    throw new Error(`proxy could not listen again on ${this.port}`);
  }

  async stop() {
    this.refusing = true;
    this.dropAll();
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => { const t = setTimeout(resolve, 2000); this.server.close(() => { clearTimeout(t); resolve(); }); });
    this.wss.close();
  }
}
