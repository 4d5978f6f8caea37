// End-to-end: a real browser's EventSource (Debian's headless Chromium, driven by
// playwright-core) against herald's Server-Sent Events at /events. The page is
// served from another loopback origin that allowed_origins lists, so the stream
// is a CORS EventSource. herald is stopped (SIGTERM) and started again on the same
// port and data dir while the page stays open: the EventSource reconnects by
// itself with Last-Event-ID, and events published while it was away must arrive
// through recovery, each exactly once and in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { HOST, HeraldProcess, freePort, runCli, sleep, waitFor } from './harness.mjs';

const LAUNCH = {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30000,
};
const TEST_DEADLINE_MS = 55000;

// -- one herald process on a fixed port and data dir, so it can be restarted --------
class Herald extends HeraldProcess {
  constructor(config) { super(config, 'herald-e2e-sse-browser-'); }

  async restart() {
    const port = this.port;
    await this.stop();
    await this.start(port);
  }

  async sseCount() {
    const r = await fetch(this.url('/stats'), { signal: AbortSignal.timeout(3000) });
    const body = await r.json();
    return body.connections.by_protocol.sse;
  }

  async publish(channel, event, data) {
    const r = await fetch(this.url('/api/publish'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, event, data }), signal: AbortSignal.timeout(5000),
    });
    const body = await r.json();
    if (r.status !== 200) throw new Error(`publish ${channel}: ${r.status} ${JSON.stringify(body)}`);
    return body;
  }
}

// -- the page ---------------------------------------------------------------------
// ?channel=NAME opens an EventSource on it; every `job` event is kept in
// window.got with the lastEventId the browser saw, opens/errors are counted.
function pageHtml(heraldPort) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>sse</title></head><body>
<p id="status">connecting</p><ul id="events"></ul>
<script>
const channel = new URLSearchParams(location.search).get('channel');
window.got = []; window.opens = 0; window.errors = 0; window.unnamed = 0;
const es = new EventSource('http://127.0.0.1:${heraldPort}/events?channel=' + encodeURIComponent(channel));
es.onopen = () => { window.opens++; document.getElementById('status').textContent = 'open ' + window.opens; };
es.onerror = () => { window.errors++; };
es.onmessage = () => { window.unnamed++; };
es.addEventListener('job', (e) => {
  const m = JSON.parse(e.data);
  window.got.push({ channel: m.channel, type: m.type, offset: m.offset, n: m.data.n, lastEventId: e.lastEventId });
  const li = document.createElement('li');
  li.className = 'event';
  li.textContent = m.channel + ' ' + m.offset + ' ' + m.data.n;
  document.getElementById('events').appendChild(li);
});
</script></body></html>`;
}

let herald;
let pageSrv;
let pageOrigin;
let browser;

before(async () => {
  const pagePort = await freePort();
  pageOrigin = `http://${HOST}:${pagePort}`;
  herald = new Herald({ allowed_origins: [pageOrigin] });
  await herald.start(await freePort());
  const html = pageHtml(herald.port);
  pageSrv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(html);
  });
  await new Promise((r) => pageSrv.listen(pagePort, HOST, r));
  browser = await chromium.launch(LAUNCH);
});

after(async () => {
  if (browser) await browser.close();
  pageSrv?.close();
  if (herald) {
    try {
      await herald.stop();
      herald.cleanup();
    } catch (e) {
      await herald.kill();
      throw e;
    }
  }
});

const got = (p) => p.evaluate(() => window.got);
const opens = (p) => p.evaluate(() => window.opens);

async function openPage(ctx, channel) {
  const p = await ctx.newPage();
  await p.goto(`${pageOrigin}/?channel=${encodeURIComponent(channel)}`, { timeout: 10000 });
  await p.waitForFunction(() => window.opens === 1, null, { timeout: 10000 });
  return p;
}

async function cli(channel, n) {
  const r = await runCli(['publish', '--url', herald.url(''), channel, 'job', JSON.stringify({ n })]);
  assert.equal(r.code, 0, `herald publish: ${r.stderr}`);
}

// Restarts herald and publishes while the page's EventSource is still away,
// checking through /stats that it has not reconnected before the last publish.
// (EventSource retries about 3 s after losing the stream and a restart takes well
// under that; should the browser be back already, the restart is done again.)
async function publishDuringOutage(channel, ns) {
  for (let attempt = 1; ; attempt++) {
    await herald.restart();
    if ((await herald.sseCount()) === 0) break;
    if (attempt === 3) assert.fail('the browser reconnected before anything could be published, 3 times');
  }
  for (const n of ns) await herald.publish(channel, 'job', { n });
  assert.equal(await herald.sseCount(), 0,
    'the browser reconnected while the outage events were being published: they did not test recovery');
}

test('EventSource gets every event exactly once across two herald restarts', { timeout: TEST_DEADLINE_MS }, async () => {
  const ctx = await browser.newContext();
  try {
    const p = await openPage(ctx, 'jobs');
    await waitFor(async () => (await herald.sseCount()) === 1, 5000, 'the stream counted');
    for (const n of [1, 2, 3]) await cli('jobs', n);
    await waitFor(async () => (await got(p)).length === 3, 10000, '3 live events');

    // outage 1: events 4 and 5 are published before the browser is back
    await publishDuringOutage('jobs', [4, 5]);
    await waitFor(async () => (await got(p)).length >= 5, 15000, 'events 4 and 5 after the reconnect');
    await cli('jobs', 6);
    await waitFor(async () => (await got(p)).length >= 6, 10000, 'event 6, live after the reconnect');

    // outage 2: nothing missed; the reconnect must replay nothing, then event 7 live
    await herald.restart();
    await waitFor(async () => (await herald.sseCount()) === 1, 15000, 'the browser back after the second restart');
    await cli('jobs', 7);
    await waitFor(async () => (await got(p)).length >= 7, 10000, 'event 7');
    await sleep(300);   // anything duplicated would arrive meanwhile

    const events = await got(p);
    assert.deepEqual(events.map((e) => e.n), [1, 2, 3, 4, 5, 6, 7], JSON.stringify(events));
    assert.deepEqual(events.map((e) => e.offset), [1, 2, 3, 4, 5, 6, 7]);
    for (const e of events) {
      assert.equal(e.channel, 'jobs');
      assert.equal(e.type, 'job');
      assert.equal(e.lastEventId, `jobs=${e.offset}`);
    }
    assert.equal(await p.evaluate(() => window.unnamed), 0);
    assert.equal(await p.locator('li.event').count(), 7);
  } finally {
    await ctx.close();
  }
});

test('EventSource that saw no event yet recovers what was published during an outage', { timeout: TEST_DEADLINE_MS }, async () => {
  // The stream's first `id:` is the position as of connecting; an EventSource
  // commits it only when its block ends with a blank line.
  const ctx = await browser.newContext();
  try {
    await herald.publish('early', 'job', { n: 0 });   // the stream starts at early=1
    const p = await openPage(ctx, 'early');
    await waitFor(async () => (await herald.sseCount()) === 1, 5000, 'the stream counted');
    await publishDuringOutage('early', [1, 2]);
    await waitFor(async () => (await herald.sseCount()) === 1, 15000, 'the browser back after the restart');
    await waitFor(async () => (await got(p)).length >= 2, 3000, 'the 2 events published during the outage')
      .catch(async (e) => {
        throw new Error(`${e.message}; page got ${JSON.stringify(await got(p))}`);
      });
    const events = await got(p);
    assert.deepEqual(events.map((e) => [e.n, e.offset, e.lastEventId]), [[1, 2, 'early=2'], [2, 3, 'early=3']]);
  } finally {
    await ctx.close();
  }
});
