#!/usr/bin/env node
// A transparent HTTP proxy that injects faults: tests put it between the
// module and the S3 server to make chosen requests fail.  Requests go
// through byte for byte with their own Host header, so signatures made for
// the proxy's address still verify at the server behind it.
//
//   node t/stack/fault-proxy.js --target http://127.0.0.1:19000 [--port 0]
//
// Prints "fault-proxy listening on http://HOST:PORT" once ready.
// Admin (JSON):
//   POST   /__proxy/faults    {"method":"PUT","match":"partNumber=2",
//                             "status":500,"times":1,"delay_ms":0}
//                             (status 0 with "reset":true drops the connection)
//   GET    /__proxy/requests  [{"method","url","status","fault"}] in order
//   DELETE /__proxy/requests  clears the log

'use strict';

const http = require('http');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const target = new URL(arg('target', 'http://127.0.0.1:19000'));
const port = Number(arg('port', '0'));
const faults = [];
const log = [];

function admin(req, res, body) {
  const send = (status, obj) => {
    const b = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
  };
  if (req.url === '/__proxy/faults' && req.method === 'POST') {
    const f = JSON.parse(body.toString() || '{}');
    for (const one of Array.isArray(f) ? f : [f]) {
      faults.push({ times: 1, ...one, re: new RegExp(one.match || '') });
    }
    return send(200, { pending: faults.length });
  }
  if (req.url === '/__proxy/requests' && req.method === 'GET') return send(200, log);
  if (req.url === '/__proxy/requests' && req.method === 'DELETE') {
    log.length = 0;
    return send(200, {});
  }
  return send(404, { error: 'not_found' });
}

function takeFault(req) {
  for (let i = 0; i < faults.length; i++) {
    const f = faults[i];
    if (f.method && f.method !== req.method) continue;
    if (!f.re.test(req.url)) continue;
    if (f.times > 0 && --f.times === 0) faults.splice(i, 1);
    return f;
  }
  return null;
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__proxy/')) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => admin(req, res, Buffer.concat(chunks)));
    return;
  }

  const entry = { method: req.method, url: req.url, status: null };
  log.push(entry);
  const fault = takeFault(req);

  const forward = () => {
    const up = http.request({
      host: target.hostname, port: target.port, method: req.method, path: req.url,
      headers: req.headers,
    }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode, ur.rawHeaders);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    // a client that goes in the middle of its body leaves the server's
    // request unfinished too, as a direct connection would
    req.on('close', () => { if (!req.complete) up.destroy(); });
    req.pipe(up);
  };

  if (!fault) return forward();

  entry.fault = true;
  const act = () => {
    if (fault.reset) {
      entry.status = 0;
      req.socket.destroy();
      return;
    }
    if (!fault.status) return forward();
    // the body is read and dropped, as a server that refuses it would
    req.resume();
    req.on('end', () => {
      entry.status = fault.status;
      const b = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code || 'InternalError'}</Code>`
        + `<Message>injected by the test</Message></Error>`;
      res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(b) });
      res.end(req.method === 'HEAD' ? undefined : b);
    });
  };
  if (fault.delay_ms) setTimeout(act, fault.delay_ms); else act();
});

server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`fault-proxy listening on http://${a.address}:${a.port}\n`);
});

for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
