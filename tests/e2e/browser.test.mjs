// End-to-end: a real browser (Debian's headless Chromium, driven by playwright-core)
// opens a native WebSocket to herald, subscribes to "jobs" and writes events into
// the page; the event is published with the `herald publish` CLI. Also: a page
// from an origin not in allowed_origins cannot connect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { startHerald, runCli, freePort, HOST } from './harness.mjs';

const LAUNCH = {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30000,
};

function page(heraldPort) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>jobs</title></head><body>
<p id="status">connecting</p><ul id="events"></ul>
<script>
const status = document.getElementById('status');
const list = document.getElementById('events');
const ws = new WebSocket('ws://127.0.0.1:${heraldPort}/ws');
ws.onopen = () => { status.textContent = 'open'; };
ws.onclose = (e) => { status.textContent = 'closed ' + e.code + (status.dataset.opened ? ' after open' : ''); };
ws.onerror = () => { status.dataset.error = '1'; };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === 'connected') { status.dataset.opened = '1'; ws.send(JSON.stringify({type: 'subscribe', id: 1, channels: ['jobs']})); }
  else if (m.type === 'subscribed') { status.textContent = 'subscribed ' + m.data.channels.join(','); }
  else if ('offset' in m) {
    const li = document.createElement('li');
    li.className = 'event';
    li.textContent = m.channel + ' ' + m.type + ' ' + m.offset + ' ' + m.data.title;
    list.appendChild(li);
  }
};
</script></body></html>`;
}

async function servePage(html) {
  const port = await freePort();
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html);
  });
  await new Promise((r) => srv.listen(port, HOST, r));
  return { srv, origin: `http://${HOST}:${port}` };
}

let herald;
let good;
let bad;
let browser;

before(async () => {
  // two page servers: one origin is allowed, the other is not
  const goodPort = await freePort();
  herald = await startHerald({ allowed_origins: [`http://${HOST}:${goodPort}`] });
  const html = page(herald.port);
  good = { srv: http.createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }); res.end(html); }) };
  await new Promise((r) => good.srv.listen(goodPort, HOST, r));
  good.origin = `http://${HOST}:${goodPort}`;
  bad = await servePage(html);
  browser = await chromium.launch(LAUNCH);
});

after(async () => {
  if (browser) await browser.close();
  good?.srv.close();
  bad?.srv.close();
  if (herald) await herald.stop();
});

test('a browser page receives an event published with the CLI', async () => {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await p.goto(good.origin + '/', { timeout: 10000 });
    await p.waitForFunction(() => document.getElementById('status').textContent === 'subscribed jobs', null, { timeout: 10000 });
    const r = await runCli(['publish', '--url', herald.url(''), 'jobs', 'job_created', '{"id":1,"title":"Fix the sink"}']);
    assert.equal(r.code, 0, r.stderr);
    await p.waitForSelector('li.event', { timeout: 10000 });
    assert.equal(await p.textContent('li.event'), 'jobs job_created 1 Fix the sink');
    const r2 = await runCli(['publish', '--url', herald.url(''), 'jobs', 'job_created', '{"id":2,"title":"Paint the door"}']);
    assert.equal(r2.code, 0, r2.stderr);
    await p.waitForFunction(() => document.querySelectorAll('li.event').length === 2, null, { timeout: 10000 });
    assert.deepEqual(await p.$$eval('li.event', (els) => els.map((e) => e.textContent)),
      ['jobs job_created 1 Fix the sink', 'jobs job_created 2 Paint the door']);
  } finally {
    await ctx.close();
  }
});

test('a page from an origin not in allowed_origins cannot connect', async () => {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await p.goto(bad.origin + '/', { timeout: 10000 });
    await p.waitForFunction(() => document.getElementById('status').textContent.startsWith('closed'), null, { timeout: 10000 });
    // a refused handshake shows up in a browser as close 1006 without an open
    assert.equal(await p.textContent('#status'), 'closed 1006');
  } finally {
    await ctx.close();
  }
});
