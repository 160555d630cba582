#!/usr/bin/env node
// An emulator of AWS STS AssumeRoleWithWebIdentity, for the module's web
// identity credentials (IAM roles for service accounts on Kubernetes).
//
//   node t/stack/sts-emulator.js --key SECRET [--port 0]
//
// Prints "sts-emulator listening on http://HOST:PORT" once ready.
//
// What AWS documents (STS API Reference, AssumeRoleWithWebIdentity) and this
// does: the call is not signed; its parameters come in the query string or
// as a form body (Action=AssumeRoleWithWebIdentity, Version=2011-06-15,
// RoleArn, RoleSessionName, WebIdentityToken, DurationSeconds 900 to 43200,
// default 3600); the answer is XML with Credentials (AccessKeyId starting
// with ASIA, SecretAccessKey, SessionToken, Expiration in ISO 8601) and
// AssumedRoleUser; errors are an ErrorResponse with a Code: InvalidIdentityToken
// (a token the identity provider did not issue), ExpiredTokenException,
// AccessDenied (the role's trust policy does not admit the token),
// ValidationError (a parameter's syntax), with HTTP 400 or 403.
//
// The temporary credentials verify without shared state: the secret key is
// an HMAC of the access key id under --key, and the session token carries
// the key id and expiry under an HMAC, so that t/stack/fault-proxy.js (mode
// "sts_key") can check what S3 would.
//
// Admin (JSON):
//   POST /__sts/mode      {"tokens": ["jwt", ...] | "*",   accepted tokens
//                          "role": "arn:aws:iam::...:role/x",  the only role
//                          "duration": seconds (issued credentials' life,
//                                      overrides DurationSeconds),
//                          "down": true (answers 503 ServiceUnavailable)}
//   GET  /__sts/requests  [{"time", "token", "role", "session", "status"}]

'use strict';

const http = require('http');
const crypto = require('crypto');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const KEY = arg('key', process.env.STS_EMULATOR_KEY || '');
const port = Number(arg('port', '0'));
const mode = { tokens: '*', role: null, duration: null, down: false };
const log = [];
const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

if (!KEY) {
  process.stderr.write('sts-emulator: --key is required\n');
  process.exit(2);
}

const mac = (s) => crypto.createHmac('sha256', KEY).update(s).digest('base64url');
const xml = (s) => String(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

// the credentials' secret key, as fault-proxy.js derives it
const secretFor = (akid) => mac(`secret\0${akid}`).slice(0, 40);

function issue(role, session, seconds) {
  const akid = 'ASIA' + crypto.randomBytes(10).toString('hex').toUpperCase().slice(0, 16);
  const exp = Math.floor(Date.now() / 1000) + seconds;
  const body = Buffer.from(JSON.stringify({ akid, exp, role, session })).toString('base64url');
  return { akid, secret: secretFor(akid), token: `${body}.${mac(`token\0${body}`)}`, exp };
}

function error(res, status, code, message) {
  const id = crypto.randomUUID();
  const b = `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code>`
    + `<Message>${xml(message)}</Message></Error><RequestId>${id}</RequestId></ErrorResponse>`;
  res.writeHead(status, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(b), 'x-amzn-requestid': id });
  res.end(b);
  return status;
}

function assume(p, res) {
  if (mode.down) return error(res, 503, 'ServiceUnavailable', 'Service is unavailable');
  if (p.get('Action') !== 'AssumeRoleWithWebIdentity') {
    return error(res, 400, 'InvalidAction', `Could not find operation ${p.get('Action')} for version ${p.get('Version')}`);
  }
  if (p.get('Version') !== '2011-06-15') return error(res, 400, 'InvalidAction', 'Unknown version');
  const role = p.get('RoleArn') || '', session = p.get('RoleSessionName') || '', token = p.get('WebIdentityToken') || '';
  if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/.test(role)) {
    return error(res, 400, 'ValidationError', `RoleArn ${role} is invalid`);
  }
  if (!/^[\w+=,.@-]{2,64}$/.test(session)) {
    return error(res, 400, 'ValidationError', 'RoleSessionName must satisfy [\\w+=,.@-]{2,64}');
  }
  if (token.length < 4 || token.length > 20000) {
    return error(res, 400, 'ValidationError', 'WebIdentityToken must be 4 to 20000 characters');
  }
  const duration = p.has('DurationSeconds') ? Number(p.get('DurationSeconds')) : 3600;
  if (!Number.isInteger(duration) || duration < 900 || duration > 43200) {
    return error(res, 400, 'ValidationError', 'DurationSeconds must be between 900 and 43200');
  }
  if (mode.tokens !== '*' && !mode.tokens.includes(token)) {
    return error(res, 400, 'InvalidIdentityToken', 'Couldn\'t verify the identity token');
  }
  if (mode.role && mode.role !== role) {
    return error(res, 403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
  }
  const c = issue(role, session, mode.duration || duration);
  const [, account, name] = /::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(role);
  const id = crypto.randomUUID();
  const b = `<AssumeRoleWithWebIdentityResponse xmlns="${NS}"><AssumeRoleWithWebIdentityResult>`
    + `<SubjectFromWebIdentityToken>system:serviceaccount:default:gdrive</SubjectFromWebIdentityToken>`
    + `<Audience>sts.amazonaws.com</Audience><AssumedRoleUser>`
    + `<Arn>arn:aws:sts::${account}:assumed-role/${xml(name)}/${xml(session)}</Arn>`
    + `<AssumedRoleId>AROA${account}:${xml(session)}</AssumedRoleId></AssumedRoleUser>`
    + `<Credentials><SessionToken>${c.token}</SessionToken><SecretAccessKey>${c.secret}</SecretAccessKey>`
    + `<Expiration>${new Date(c.exp * 1000).toISOString().replace(/\.\d+Z$/, 'Z')}</Expiration>`
    + `<AccessKeyId>${c.akid}</AccessKeyId></Credentials>`
    + `<Provider>arn:aws:iam::${account}:oidc-provider/emulator</Provider>`
    + `</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>${id}</RequestId></ResponseMetadata>`
    + `</AssumeRoleWithWebIdentityResponse>`;
  res.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(b), 'x-amzn-requestid': id });
  res.end(b);
  return 200;
}

function admin(req, res, body) {
  const send = (status, obj) => {
    const b = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
  };
  if (req.url === '/__sts/mode' && req.method === 'POST') {
    Object.assign(mode, JSON.parse(body.toString() || '{}'));
    return send(200, mode);
  }
  if (req.url === '/__sts/requests' && req.method === 'GET') return send(200, log);
  if (req.url === '/__sts/requests' && req.method === 'DELETE') {
    log.length = 0;
    return send(200, {});
  }
  return send(404, { error: 'not_found' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.url.startsWith('/__sts/')) return admin(req, res, body);
    const url = new URL(req.url, 'http://sts');
    const p = new URLSearchParams(url.search);
    if (req.method === 'POST') {
      for (const [k, v] of new URLSearchParams(body.toString())) p.set(k, v);
    }
    const entry = { time: Date.now(), token: p.get('WebIdentityToken'), role: p.get('RoleArn'),
      session: p.get('RoleSessionName'), signed: !!req.headers.authorization, status: null };
    log.push(entry);
    entry.status = assume(p, res);
    return undefined;
  });
});

server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`sts-emulator listening on http://${a.address}:${a.port}\n`);
});

for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
