'use strict';
// A hand-written Node gateway of the kind herald replaces: npm `ws` for the
// WebSocket side, Node's http for the publish API, speaking the subset of herald's
// native protocol that the benchmark uses (connected, subscribe/subscribed,
// unsubscribe, ping/pong, the event envelope) and POST /api/publish.
// Written the way a careful Node developer would: one channel -> sockets index,
// each event serialized and UTF-8 encoded once per publish, then sent to every
// subscriber; slow consumers are cut off instead of buffering without bound.
//
// usage: node bench/peers/ws-server.js PORT     (listens on 127.0.0.1 only)

const http = require('http');
const crypto = require('crypto');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number.parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
  console.error('usage: node ws-server.js PORT');
  process.exit(2);
}

const MAX_BODY = 1 << 20;
const SEND_QUEUE_LIMIT = 1 << 20; // bytes buffered per socket before it is dropped (4008)
const EPOCH = crypto.randomBytes(4).toString('hex');
const started = Date.now();

const channels = new Map(); // channel -> Set<WebSocket>
const offsets = new Map(); // channel -> last offset
let published = 0;
let delivered = 0;

function validChannel(ch) {
  return typeof ch === 'string' && ch.length > 0 && Buffer.byteLength(ch) <= 255 &&
    !ch.startsWith('$') && !/[\s\x00-\x1f]/.test(ch);
}

function sendJson(ws, obj) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function subscribe(ws, list) {
  for (const ch of list) {
    let set = channels.get(ch);
    if (!set) channels.set(ch, (set = new Set()));
    set.add(ws);
    ws.channels.add(ch);
  }
}

function unsubscribe(ws, list) {
  for (const ch of list) {
    const set = channels.get(ch);
    if (set) {
      set.delete(ws);
      if (set.size === 0) channels.delete(ch);
    }
    ws.channels.delete(ch);
  }
}

function onClientMessage(ws, raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return sendJson(ws, { type: 'error', data: { code: 'bad_request', message: 'invalid JSON' } });
  }
  const id = msg && msg.id;
  const reply = (obj) => sendJson(ws, id === undefined ? obj : { ...obj, id });
  switch (msg && msg.type) {
    case 'subscribe':
    case 'unsubscribe': {
      const list = Array.isArray(msg.channels) ? msg.channels : [msg.channel];
      const bad = list.find((ch) => !validChannel(ch));
      if (list.length === 0 || bad !== undefined) {
        return reply({ type: 'error', data: { code: 'bad_request', message: 'invalid channel', channel: bad } });
      }
      if (msg.type === 'unsubscribe') {
        unsubscribe(ws, list);
        return reply({ type: 'unsubscribed', data: { channels: list } });
      }
      subscribe(ws, list);
      const offs = {};
      const epochs = {};
      for (const ch of list) {
        offs[ch] = offsets.get(ch) || 0;
        epochs[ch] = EPOCH;
      }
      return reply({ type: 'subscribed', data: { channels: list, offsets: offs, epochs } });
    }
    case 'ping':
      return reply({ type: 'pong', timestamp: new Date().toISOString() });
    default:
      return reply({ type: 'error', data: { code: 'bad_request', message: 'unknown type' } });
  }
}

function publish(channel, event, data) {
  const offset = (offsets.get(channel) || 0) + 1;
  offsets.set(channel, offset);
  const id = crypto.randomUUID();
  published++;
  const subs = channels.get(channel);
  if (subs && subs.size > 0) {
    // Serialize and encode once; every subscriber gets the same Buffer.
    const frame = Buffer.from(JSON.stringify({
      type: event, channel, data, id, offset, timestamp: new Date().toISOString(),
    }));
    for (const ws of subs) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      if (ws.bufferedAmount > SEND_QUEUE_LIMIT) {
        ws.close(4008, 'slow consumer');
        continue;
      }
      ws.send(frame, { binary: false });
      delivered++;
    }
  }
  return { id, offset };
}

function respond(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function handlePublish(req, res) {
  const parts = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) tooBig = true;
    else parts.push(chunk);
  });
  req.on('end', () => {
    if (tooBig) return respond(res, 413, { error: 'too_large', message: 'body over limit' });
    let msg;
    try {
      msg = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      return respond(res, 400, { error: 'bad_request', message: 'invalid JSON' });
    }
    if (!msg || !validChannel(msg.channel) || typeof msg.event !== 'string' || msg.event === '') {
      return respond(res, 400, { error: 'bad_request', message: 'channel and event are required' });
    }
    const { id, offset } = publish(msg.channel, msg.event, msg.data === undefined ? null : msg.data);
    respond(res, 200, { success: true, id, offset });
  });
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/api/publish') {
    if (req.method !== 'POST') return respond(res, 405, { error: 'method_not_allowed', message: 'POST only' });
    return handlePublish(req, res);
  }
  if (path === '/health' && req.method === 'GET') {
    return respond(res, 200, {
      status: 'ok', timestamp: new Date().toISOString(),
      uptime_s: Math.floor((Date.now() - started) / 1000), connections: wss.clients.size,
    });
  }
  if (path === '/stats' && req.method === 'GET') {
    return respond(res, 200, {
      connections: { total: wss.clients.size }, channels: channels.size,
      messages: { published, delivered, dropped: 0 },
    });
  }
  respond(res, 404, { error: 'not_found', message: 'no such path' });
});
server.keepAliveTimeout = 60000;

const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 65536, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.channels = new Set();
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('message', (raw, isBinary) => {
    ws.isAlive = true;
    if (isBinary) return ws.close(1003, 'binary frames are not accepted');
    onClientMessage(ws, raw.toString('utf8'));
  });
  ws.on('close', () => unsubscribe(ws, [...ws.channels]));
  ws.on('error', () => {});
  sendJson(ws, {
    type: 'connected',
    data: { connection_id: crypto.randomUUID(), user: null, channels: [], epoch: EPOCH },
    timestamp: new Date().toISOString(),
  });
});

// Heartbeat: ping every 30 s, drop a socket that did not answer the previous ping.
const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, 30000);

server.listen(port, '127.0.0.1', () => {
  console.error(JSON.stringify({ msg: 'ws peer listening', port }));
});

function shutdown() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'shutdown');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
