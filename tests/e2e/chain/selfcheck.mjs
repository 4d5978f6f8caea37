// selfcheck.mjs: proves the node side of the evm end-to-end tests without herald.
//   node tests/e2e/chain/selfcheck.mjs
// ganache starts, Tipping compiles and deploys, tips emit logs, a JSON-RPC client
// through RpcProxy subscribes and gets them, the proxy records eth_getLogs ranges,
// injects removed:true, pings, refuses and accepts again, and a ganache restart
// keeps the chain. Exits 0 with "selfcheck: ok", or 1 with the failure.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ethers } from 'ethers';
import { Ganache, Chain, RpcProxy, compileTipping, SIGNATURES } from './evm.mjs';
import { sleep } from '../harness.mjs';

class RpcClient {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.nextId = 1;
    this.replies = new Map();
    this.notes = [];
    this.ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.method === 'eth_subscription') this.notes.push(m.params);
      else this.replies.set(m.id, m);
    });
  }
  opened() { return new Promise((res, rej) => { this.ws.once('open', res); this.ws.once('error', rej); }); }
  async call(method, params = [], timeoutMs = 5000) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    const deadline = Date.now() + timeoutMs;
    while (!this.replies.has(id)) {
      if (Date.now() > deadline) throw new Error(`${method}: no reply`);
      await sleep(10);
    }
    const r = this.replies.get(id);
    if (r.error) throw new Error(`${method}: ${JSON.stringify(r.error)}`);
    return r.result;
  }
  async note(pred, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.notes.findIndex(pred);
      if (i >= 0) return this.notes.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no notification; have ${JSON.stringify(this.notes)}`);
      await sleep(10);
    }
  }
  close() { this.ws.terminate(); }
}

const ganache = new Ganache();
let proxy; let chain; let client;
try {
  const t0 = Date.now();
  await ganache.start();
  console.log(`ganache up on ${ganache.port} in ${Date.now() - t0} ms`);
  const c = compileTipping();
  console.log(`compiled with ${c.solc}, ${c.bytecode.length / 2 - 1} bytes`);
  chain = new Chain(ganache);
  const dep = await chain.deploy();
  console.log(`deployed at ${dep.address} in block ${dep.blockNumber}`);

  // topic0 of the configured signatures matches what the contract emits
  const iface = dep.contract.interface;
  for (const [name, sig] of Object.entries(SIGNATURES)) {
    const canonical = iface.getEvent(name).format('sighash');
    assert.equal(ethers.id(canonical), iface.getEvent(name).topicHash, name);
    console.log(`${sig} -> ${canonical} ${iface.getEvent(name).topicHash}`);
  }

  proxy = await new RpcProxy(ganache.wsUrl).start();
  client = new RpcClient(proxy.url);
  await client.opened();
  assert.equal(Number(await client.call('eth_chainId')), 1337);
  const topic0 = iface.getEvent('TipSent').topicHash;
  const sub = await client.call('eth_subscribe', ['logs', { address: dep.address, topics: [[topic0]] }]);
  assert.equal(proxy.subscribed().length, 1);
  assert.equal(proxy.subscribed()[0].logsSub, sub);

  const creator = ethers.Wallet.createRandom().address;
  const t1 = Date.now();
  const tip = await chain.tip(dep.contract, creator, 50000000000000000n, 'instant');
  console.log(`tip mined in ${Date.now() - t1} ms: block ${tip.logs[0].blockNumber} log ${tip.logs[0].logIndex}`);
  const n1 = await client.note((p) => p.subscription === sub);
  assert.equal(n1.result.transactionHash, tip.logs[0].txHash);
  assert.equal(n1.result.removed, false);
  assert.equal(tip.logs[0].args.amount, 50000000000000000n);

  const raw = await chain.rawLog(tip.logs[0].blockHash, tip.logs[0].logIndex);
  assert.equal(proxy.injectRemoved(raw), 1);
  const n2 = await client.note((p) => p.subscription === sub && p.result.removed === true);
  assert.equal(n2.result.transactionHash, tip.logs[0].txHash);

  const head = await chain.mine(5);
  const logs = await client.call('eth_getLogs', [{ address: dep.address, fromBlock: ethers.toQuantity(dep.blockNumber), toBlock: ethers.toQuantity(head), topics: [[topic0]] }]);
  assert.equal(logs.length, 1);
  assert.deepEqual(proxy.getLogsRanges().map((r) => [r.from, r.to]), [[dep.blockNumber, head]]);

  const ping = await proxy.pingClients();
  assert.deepEqual(ping, { asked: 1, answered: 1 });

  const many = await chain.tipMany(dep.contract, [creator, ethers.Wallet.createRandom().address, creator], 10n ** 15n, 'live');
  assert.deepEqual(many.logs.map((l) => l.logIndex), [0, 1, 2]);
  const st = await chain.settle(dep.contract, { id: ethers.id('s1'), delta: -(2n ** 255n), ok: true, memo: '0xdeadbeef00', parts: [1, 2, 255] });
  assert.equal(st.logs[0].args.delta, -(2n ** 255n));
  const nt = await chain.note(dep.contract, { tag: 'hello', sel: '0x12345678', small: -128, pair: [65535, 0] });
  assert.equal(nt.logs[0].args.seq, 1n);

  // the node goes away: connections dropped and refused, then back
  await proxy.refuse();
  await sleep(100);
  assert.equal(client.ws.readyState === WebSocket.CLOSED || client.ws.readyState === WebSocket.CLOSING, true);
  const refused = await new Promise((res) => { const w = new WebSocket(proxy.url); w.on('open', () => { w.terminate(); res(false); }); w.on('error', (e) => res(e.code)); });
  assert.equal(refused, 'ECONNREFUSED');
  await proxy.accept();
  client = new RpcClient(proxy.url);
  await client.opened();
  assert.equal(Number(await client.call('eth_chainId')), 1337);

  // ganache restarted on the same port and database: the chain is kept, and the
  // proxied connection is closed with it
  const before = await chain.head();
  const t2 = Date.now();
  await ganache.restart();
  console.log(`ganache restarted in ${Date.now() - t2} ms`);
  await sleep(200);
  assert.notEqual(client.ws.readyState, WebSocket.OPEN);
  assert.equal(await chain.head(), before);
  assert.notEqual(await ganache.rpc('eth_getCode', [dep.address, 'latest']), '0x');
  const again = await chain.rawLog(tip.logs[0].blockHash, tip.logs[0].logIndex);
  assert.deepEqual(again, raw);
  const tip2 = await chain.tip(dep.contract, creator, 1n, 'after-restart');
  assert.equal(tip2.logs[0].blockNumber, before + 1);
  client = new RpcClient(proxy.url);
  await client.opened();
  assert.equal(Number(await client.call('eth_blockNumber')), before + 1);
  console.log('selfcheck: ok');
} catch (e) {
  console.error(e);
  console.error(ganache.logTail());
  process.exitCode = 1;
} finally {
  client?.close();
  await proxy?.stop();
  chain?.destroy();
  await ganache.stop();
  ganache.cleanup();
}
