#!/usr/bin/env node
// A control plane behind mutual TLS: an HTTPS server that accepts only
// clients whose certificate the given CA signed, and passes their requests
// on to the emulator's control plane.  Tests use it to check that the
// worker presents gdrive_control_plane_certificate.
//
//   node t/stack/tls-control-plane.js --target http://127.0.0.1:19100
//        --cert server.pem --key server.key --ca ca.pem [--port 0]
//
// Prints "tls-control-plane listening on https://HOST:PORT" once ready.
// GET /__tls/requests lists [{"url","client"}] (client: the certificate's CN).
//
// With --any-client it asks for no client certificate, and with
// --keep-host it passes the Host header on as the client sent it (a
// SigV4 signature covers it): a TLS front for the emulator or for S3.

'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const target = new URL(arg('target', 'http://127.0.0.1:19100'));
const log = [];

const anyClient = process.argv.includes('--any-client');
const keepHost = process.argv.includes('--keep-host');

const server = https.createServer({
  cert: fs.readFileSync(arg('cert')), key: fs.readFileSync(arg('key')), ca: fs.readFileSync(arg('ca')),
  requestCert: !anyClient, rejectUnauthorized: !anyClient,
}, (req, res) => {
  if (req.url === '/__tls/requests') {
    const b = JSON.stringify(log);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    return res.end(b);
  }
  const peer = req.socket.getPeerCertificate();
  log.push({ url: req.url, client: peer && peer.subject ? peer.subject.CN : null });
  const headers = keepHost ? req.headers : { ...req.headers, host: target.host };
  const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
    (ur) => { res.writeHead(ur.statusCode, ur.rawHeaders); ur.pipe(res); });
  up.on('error', () => res.destroy());
  req.pipe(up);
  return undefined;
});

server.listen(Number(arg('port', '0')), '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`tls-control-plane listening on https://${a.address}:${a.port}\n`);
});

for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
