#!/usr/bin/env node
// A DNS server for tests, over UDP (RFC 1035): it answers A queries for the
// names it is given, AAAA queries for them with no address (NOERROR), and
// any other name with NXDOMAIN (RCODE 3). Standard library only.
//
//   node dns-server.js --answer NAME=IPV4 [--answer ...] [--ttl 1] [--port 0]
//
// It prints "dns-server listening on 127.0.0.1:PORT" once it listens.

'use strict';

const dgram = require('dgram');

const answers = new Map();
let ttl = 1;
let port = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--answer') {
    const [name, ip] = argv[++i].split('=');
    answers.set(name.toLowerCase(), ip.split('.').map(Number));
  } else if (argv[i] === '--ttl') {
    ttl = Number(argv[++i]);
  } else if (argv[i] === '--port') {
    port = Number(argv[++i]);
  } else {
    process.stderr.write(`dns-server: unknown argument ${argv[i]}\n`);
    process.exit(2);
  }
}

// the question's name, type and where the question ends
function question(msg) {
  const labels = [];
  let p = 12;
  while (p < msg.length && msg[p] !== 0) {
    const n = msg[p];
    if (n > 63 || p + 1 + n > msg.length) return null;
    labels.push(msg.toString('latin1', p + 1, p + 1 + n));
    p += 1 + n;
  }
  if (p + 5 > msg.length) return null;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(p + 1), end: p + 5 };
}

const server = dgram.createSocket('udp4');
server.on('message', (msg, peer) => {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return;
  const q = question(msg);
  if (!q) return;
  const ip = answers.get(q.name);
  const head = Buffer.alloc(12);
  msg.copy(head, 0, 0, 2);                                 // the query's id
  // QR, the query's RD, RA; RCODE 3 (NXDOMAIN) for names it does not know
  head.writeUInt16BE(0x8180 | (msg.readUInt16BE(2) & 0x0100) | (ip ? 0 : 3), 2);
  head.writeUInt16BE(1, 4);                                // QDCOUNT
  const a = ip && q.type === 1;
  head.writeUInt16BE(a ? 1 : 0, 6);                        // ANCOUNT
  const parts = [head, msg.subarray(12, q.end)];
  if (a) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0);                           // the question's name
    rr.writeUInt16BE(1, 2);                                // TYPE A
    rr.writeUInt16BE(1, 4);                                // CLASS IN
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(4, 10);
    Buffer.from(ip).copy(rr, 12);
    parts.push(rr);
  }
  server.send(Buffer.concat(parts), peer.port, peer.address);
});
server.bind(port, '127.0.0.1', () => {
  process.stdout.write(`dns-server listening on 127.0.0.1:${server.address().port}\n`);
});
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
