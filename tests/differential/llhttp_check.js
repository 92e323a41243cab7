// Reads the cases the differential test wrote (JSON lines) and sends each forwarded stream to
// a Node.js HTTP server (llhttp, strict mode) on loopback, as to an origin. Prints one JSON
// line per case: {id, verdict: "ok" | "rejected" | "mismatch", detail}. A mismatch is an
// origin that accepts what we sent and frames it otherwise than we did: a smuggling risk.
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');

const cases = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map(JSON.parse);
const byPort = new Map();

const server = http.createServer((req, res) => {
  const seen = byPort.get(req.socket.remotePort);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (seen) seen.requests.push([req.url, Buffer.concat(chunks)]);
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
});
server.on('clientError', (err, socket) => {
  const seen = byPort.get(socket.remotePort);
  if (seen) seen.error = err.code || String(err);
  socket.destroy();
});

function run(c, port) {
  return new Promise((resolve) => {
    const seen = { requests: [], error: null };
    const socket = net.connect(port, '127.0.0.1', () => {
      byPort.set(socket.localPort, seen);
      socket.end(Buffer.from(c.output, 'hex'));
    });
    socket.on('data', () => {});
    const done = () => resolve(seen);
    socket.on('close', done);
    socket.on('error', done);
    setTimeout(() => { socket.destroy(); }, 2000);
  });
}

server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  for (const c of cases) {
    if (c.ours === 'reject') {
      console.log(JSON.stringify({ id: c.id, verdict: 'ok' }));
      continue;
    }
    const seen = await run(c, port);
    // Let the server finish the requests it already read.
    await new Promise((r) => setImmediate(r));
    const body = Buffer.from(c.body, 'hex');
    const want = c.keep_alive ? 2 : 1;
    const result = { id: c.id };
    const first = seen.requests[0];
    if (!first) {
      result.verdict = 'rejected';
      result.detail = seen.error;
    } else if (first[0] !== c.path || !first[1].equals(body)) {
      result.verdict = 'mismatch';
      result.detail = `first request ${first[0]} with ${first[1].length} body bytes`;
    } else if (want === 2 && (seen.requests.length < 2 || seen.requests[1][0] !== '/second')) {
      result.verdict = 'mismatch';
      result.detail = `second request lost (${seen.requests.length} read, ${seen.error})`;
    } else {
      result.verdict = 'ok';
    }
    console.log(JSON.stringify(result));
  }
  server.close();
});
