'use strict';
// A Socket.IO 4 gateway of the kind herald replaces: clients emit `subscribe`
// (a channel name, or {"channel"} / {"room","id"}) to join a room, and
// POST /api/publish {"channel","event","data"} does io.to(channel).emit(event, data),
// which Socket.IO encodes once and writes to every socket in the room.
//
// usage: node bench/peers/socketio-server.js PORT     (listens on 127.0.0.1 only)

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');

const port = Number.parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
  console.error('usage: node socketio-server.js PORT');
  process.exit(2);
}

const MAX_BODY = 1 << 20;
const started = Date.now();
const offsets = new Map();
let published = 0;

function roomOf(arg) {
  if (typeof arg === 'string') return arg;
  if (arg && typeof arg.channel === 'string') return arg.channel;
  if (arg && typeof arg.room === 'string') return arg.id === undefined ? arg.room : `${arg.room}:${arg.id}`;
  return null;
}

function validChannel(ch) {
  return typeof ch === 'string' && ch.length > 0 && Buffer.byteLength(ch) <= 255 &&
    !ch.startsWith('$') && !/[\s\x00-\x1f]/.test(ch);
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
    const offset = (offsets.get(msg.channel) || 0) + 1;
    offsets.set(msg.channel, offset);
    published++;
    io.to(msg.channel).emit(msg.event, msg.data === undefined ? null : msg.data);
    respond(res, 200, { success: true, id: crypto.randomUUID(), offset });
  });
}

// Socket.IO handles /socket.io/ itself and passes every other request here.
const httpServer = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/api/publish') {
    if (req.method !== 'POST') return respond(res, 405, { error: 'method_not_allowed', message: 'POST only' });
    return handlePublish(req, res);
  }
  if (path === '/health' && req.method === 'GET') {
    return respond(res, 200, {
      status: 'ok', timestamp: new Date().toISOString(),
      uptime_s: Math.floor((Date.now() - started) / 1000), connections: io.engine.clientsCount,
    });
  }
  if (path === '/stats' && req.method === 'GET') {
    return respond(res, 200, {
      connections: { total: io.engine.clientsCount }, channels: io.of('/').adapter.rooms.size,
      messages: { published },
    });
  }
  respond(res, 404, { error: 'not_found', message: 'no such path' });
});
httpServer.keepAliveTimeout = 60000;

const io = new Server(httpServer, {
  serveClient: false,
  transports: ['websocket', 'polling'],
  perMessageDeflate: false,
  maxHttpBufferSize: 65536,
});

io.on('connection', (socket) => {
  socket.on('subscribe', (arg, ack) => {
    const room = roomOf(arg);
    const reply = typeof ack === 'function' ? ack : () => {};
    if (!validChannel(room)) return reply({ success: false, error: 'bad_request', message: 'invalid room' });
    socket.join(room);
    reply({ success: true, room });
  });
  socket.on('unsubscribe', (arg, ack) => {
    const room = roomOf(arg);
    if (room) socket.leave(room);
    if (typeof ack === 'function') ack({ success: true, room });
  });
  socket.on('getRooms', (ack) => {
    if (typeof ack === 'function') ack([...socket.rooms].filter((r) => r !== socket.id));
  });
  socket.on('ping', (ack) => {
    if (typeof ack === 'function') ack({ type: 'pong', timestamp: Date.now() });
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.error(JSON.stringify({ msg: 'socket.io peer listening', port }));
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
