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
//   GET    /__proxy/requests  [{"method","url","status","fault","headers"}]
//                             in order (request headers, names lower-case)
//   DELETE /__proxy/requests  clears the log
//   POST   /__proxy/mode      {"no_list_bucket":true, "require_sse":"AES256",
//                             "sts_key":"the --key of t/stack/sts-emulator.js"}
//
// Modes model what AWS does and the S3 server behind does not:
// - no_list_bucket: a caller without s3:ListBucket. AWS documents (HeadObject,
//   GetObject) that a request for a key that does not exist then gets 403
//   AccessDenied instead of 404 NoSuchKey; ListObjectsV2 is refused with 403.
// - require_sse: a bucket policy that denies s3:PutObject without
//   x-amz-server-side-encryption (AWS's "Requiring server-side encryption"
//   example). PutObject and CreateMultipartUpload without the header, or with
//   it unsigned, get 403 AccessDenied; with it, the header is taken off and
//   the request signed again with the stack's keys (the S3 server behind
//   does not implement SSE), and the answer says x-amz-server-side-encryption
//   as AWS's does.
// - sts_key: S3 for a caller with temporary credentials from STS, which AWS
//   requires to send the session token in x-amz-security-token (AWS "Using
//   temporary credentials with AWS resources"; SigV4 signs it). A request
//   signed with an ASIA key must carry a signed token that the STS emulator
//   issued for that key and that has not expired (403 InvalidToken or
//   ExpiredToken otherwise, as S3 answers), and its signature must verify
//   with the key's secret (403 SignatureDoesNotMatch); it is then signed
//   again with the stack's keys, the token taken off, for the S3 server
//   behind. A long-lived key (not ASIA) is refused with 403
//   InvalidAccessKeyId: the test's "IAM" has only the role.

'use strict';

const http = require('http');
const crypto = require('crypto');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const target = new URL(arg('target', 'http://127.0.0.1:19000'));
const port = Number(arg('port', '0'));
const faults = [];
const log = [];
const mode = { no_list_bucket: false, require_sse: null, sts_key: null };

const KEY_ID = process.env.AWS_ACCESS_KEY_ID || '';
const SECRET = process.env.AWS_SECRET_ACCESS_KEY || '';

const hmac = (k, s) => crypto.createHmac('sha256', k).update(s).digest();
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

// SigV4 of a request whose path and query are sent encoded as AWS's
// canonical form wants them (the module's are)
function sign(method, url, headers, signed, keyId = KEY_ID, secret = SECRET) {
  const auth = headers.authorization || '';
  const m = /Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request/.exec(auth);
  if (!m) return null;
  const [, , day, region, service] = m;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1).split('&').filter(Boolean)
    .map((p) => (p.includes('=') ? p : `${p}=`)).sort().join('&');
  const canonHeaders = signed.map((h) => `${h}:${String(headers[h]).trim().replace(/\s+/g, ' ')}\n`).join('');
  const creq = [method, path, query, canonHeaders, signed.join(';'), headers['x-amz-content-sha256']].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const sts = ['AWS4-HMAC-SHA256', headers['x-amz-date'], scope, sha256(creq)].join('\n');
  let k = hmac(`AWS4${secret}`, day);
  for (const part of [region, service, 'aws4_request']) k = hmac(k, part);
  return `AWS4-HMAC-SHA256 Credential=${keyId}/${scope}, SignedHeaders=${signed.join(';')}, `
    + `Signature=${hmac(k, sts).toString('hex')}`;
}

// temporary credentials: what S3 would say of the request, or null when they
// hold (see the sts_key mode above and t/stack/sts-emulator.js)
function checkSession(req) {
  const mac = (x) => crypto.createHmac('sha256', mode.sts_key).update(x).digest('base64url');
  const akid = (/Credential=([^/]+)\//.exec(req.headers.authorization || '') || [])[1] || '';
  if (!akid.startsWith('ASIA')) return 'InvalidAccessKeyId';
  const token = String(req.headers['x-amz-security-token'] || '');
  const [body, tag] = token.split('.');
  if (!body || tag !== mac(`token\0${body}`) || !signedHeaders(req.headers).includes('x-amz-security-token')) {
    return 'InvalidToken';
  }
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
  if (claims.akid !== akid) return 'InvalidToken';
  if (claims.exp * 1000 <= Date.now()) return 'ExpiredToken';
  const secret = mac(`secret\0${akid}`).slice(0, 40);
  const want = sign(req.method, req.url, req.headers, signedHeaders(req.headers), akid, secret);
  const sig = (x) => (/Signature=([0-9a-f]+)/.exec(x || '') || [])[1];
  return sig(want) && sig(want) === sig(req.headers.authorization) ? null : 'SignatureDoesNotMatch';
}

const signedHeaders = (h) => ((/SignedHeaders=([^,\s]+)/.exec(h.authorization || '') || [])[1] || '').split(';');
const isBucketPath = (u) => /^\/[^/?]+\/?(\?|$)/.test(u);
const isPutObject = (req) => (req.method === 'PUT' && !/[?&]partNumber=/.test(req.url))
  || (req.method === 'POST' && /[?&]uploads(=|&|$)/.test(req.url));

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
  if (req.url === '/__proxy/mode' && req.method === 'POST') {
    Object.assign(mode, JSON.parse(body.toString() || '{}'));
    return send(200, mode);
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

  const entry = { method: req.method, url: req.url, status: null, headers: { ...req.headers } };
  log.push(entry);
  const fault = takeFault(req);

  const refuse = (status, code) => {
    const answer = () => {
      entry.status = status;
      const b = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code>`
        + '<Message>Access Denied</Message></Error>';
      res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(b) });
      res.end(req.method === 'HEAD' ? undefined : b);
    };
    if (req.complete) return answer();
    req.resume();
    req.on('end', answer);
    return undefined;
  };

  const forward = () => {
    let headers = req.headers, extra = null;
    if (mode.no_list_bucket && req.method === 'GET' && isBucketPath(req.url) && /[?&]list-type=/.test(req.url)) {
      return refuse(403, 'AccessDenied');
    }
    if (mode.sts_key) {
      const refused = checkSession(req);
      if (refused) return refuse(403, refused);
      headers = { ...req.headers };
      delete headers['x-amz-security-token'];
      headers.authorization = sign(req.method, req.url, headers,
        signedHeaders(req.headers).filter((h) => h !== 'x-amz-security-token'));
    }
    if (mode.require_sse && isPutObject(req)) {
      const sse = req.headers['x-amz-server-side-encryption'];
      if (sse !== mode.require_sse || !signedHeaders(req.headers).includes('x-amz-server-side-encryption')) {
        return refuse(403, 'AccessDenied');
      }
      headers = { ...headers };
      const keep = signedHeaders(req.headers).filter((h) => !h.startsWith('x-amz-server-side-encryption')
        && !(mode.sts_key && h === 'x-amz-security-token'));
      for (const h of Object.keys(headers)) if (h.startsWith('x-amz-server-side-encryption')) delete headers[h];
      headers.authorization = sign(req.method, req.url, headers, keep);
      extra = ['x-amz-server-side-encryption', sse];
    }
    const up = http.request({
      host: target.hostname, port: target.port, method: req.method, path: req.url,
      headers,
    }, (ur) => {
      let status = ur.statusCode;
      if (mode.no_list_bucket && status === 404 && (req.method === 'HEAD' || req.method === 'GET')) {
        ur.resume();
        return refuse(403, 'AccessDenied');
      }
      entry.status = status;
      res.writeHead(status, extra ? [...ur.rawHeaders, ...extra] : ur.rawHeaders);
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
