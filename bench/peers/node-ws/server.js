// Minimal broadcast server on plain `ws`: the peer that bench/fanout.py measures Switchboard against.
//
// It speaks the same JSON shapes as Switchboard's /ws, minimally, so one load generator drives both:
//   {"id":N,"subscribe":{"channel":C}}          -> joins the one room; reply {"id":N,"subscribe":{...}}
//   {"id":N,"publish":{"channel":C,"data":D}}   -> broadcast {"pub":{"channel","offset","epoch","data"}}
//                                                  to the room; reply {"id":N,"publish":{"epoch","offset"}}
//   {"pong":{}}                                  -> ignored (this server sends no pings)
//   GET /sse?channel=C                          -> an SSE stream: `event: subscribed`, then each
//                                                  broadcast as `data: {"pub":...}` (the Node SSE peer)
// Fair by construction: no compression (perMessageDeflate: false), the broadcast frame's text is
// serialized once per publication into one Buffer that every send shares.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

const EPOCH = 'nodepeer';
const PROTOCOL = 'switchboard.v1.json';
const port = Number(process.env.PORT || 0);

// SSE subscribers: plain `http` responses kept open, one `write` of a shared Buffer each.
const sseRoom = new Set();
const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || !req.url.startsWith('/sse')) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(`event: subscribed\ndata: {"epoch":"${EPOCH}","offset":${offset}}\n\n`);
  sseRoom.add(res);
  req.on('close', () => sseRoom.delete(res));
});
const wss = new WebSocketServer({
  server,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 128 * 1024,
  handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
});

const room = new Set();
let offset = 0;

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('close', () => room.delete(ws));
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      ws.close(3500, 'bad request');
      return;
    }
    if (msg.publish) {
      offset += 1;
      const text = JSON.stringify({
        pub: { channel: msg.publish.channel, offset, epoch: EPOCH, data: msg.publish.data },
      });
      const frame = Buffer.from(text); // once per publication, shared by every send
      for (const peer of room) {
        peer.send(frame, { binary: false });
      }
      if (sseRoom.size) {
        const event = Buffer.from(`data: ${text}\nid: ${offset}\n\n`);
        for (const res of sseRoom) res.write(event);
      }
      if (msg.id) ws.send(JSON.stringify({ id: msg.id, publish: { epoch: EPOCH, offset } }));
    } else if (msg.subscribe) {
      room.add(ws);
      ws.send(JSON.stringify({
        id: msg.id,
        subscribe: { channel: msg.subscribe.channel, epoch: EPOCH, offset, recovered: true, replayed: 0 },
      }));
    } else if (msg.id && !msg.pong) {
      ws.send(JSON.stringify({ id: msg.id, error: { code: 104, message: 'method not found' } }));
    }
  });
});

server.listen(port, '127.0.0.1', 1024, () => {
  console.log(`node-ws listening on http://127.0.0.1:${server.address().port}`);
});

process.on('SIGTERM', () => process.exit(0));
