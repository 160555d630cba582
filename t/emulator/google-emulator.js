#!/usr/bin/env node
// Emulator for Google's OAuth token endpoint, the Drive v3 subset the module
// uses and the integration control plane, plus an admin API (/__admin) that
// seeds data, injects faults and exposes a request log. Standard library only.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');

// ---------------------------------------------------------------- options

function die(msg) {
  process.stderr.write(`google-emulator: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    port: '19100', host: '127.0.0.1',
    'client-id': 'emulator-client-id.apps.googleusercontent.com',
    'client-secret': 'emulator-client-secret',
    'refresh-token': '1//emulator-refresh-token',
    integration: 'default', fixtures: '', verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m || !(m[1] in o)) die(`unknown argument: ${argv[i]}`);
    if (typeof o[m[1]] === 'boolean') o[m[1]] = true;
    else if ((o[m[1]] = m[2] ?? argv[++i]) === undefined) die(`missing value for --${m[1]}`);
  }
  o.port = Number(o.port);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) die('invalid --port');
  return o;
}

const OPTS = parseArgs(process.argv.slice(2));
let FIXTURES = null;
if (OPTS.fixtures) {
  try { FIXTURES = JSON.parse(fs.readFileSync(OPTS.fixtures, 'utf8')); } catch (e) { die(`cannot load fixtures: ${e.message}`); }
}

// -------------------------------------------------------------- constants

const GA = 'application/vnd.google-apps.';
const FOLDER = GA + 'folder';
const SHORTCUT = GA + 'shortcut';
const OOXML = 'application/vnd.openxmlformats-officedocument.';
const DOCX = OOXML + 'wordprocessingml.document';
const XLSX = OOXML + 'spreadsheetml.sheet';
const PPTX = OOXML + 'presentationml.presentation';
// Drive's documented "Export MIME types" for each Docs editors type.
const EXPORTS = {
  [GA + 'document']: ['application/pdf', DOCX, 'text/plain', 'text/html', 'application/zip', 'application/rtf',
    'application/vnd.oasis.opendocument.text', 'application/epub+zip', 'text/markdown'],
  [GA + 'spreadsheet']: [XLSX, 'text/csv', 'application/pdf', 'application/x-vnd.oasis.opendocument.spreadsheet',
    'application/vnd.oasis.opendocument.spreadsheet', 'application/zip', 'text/tab-separated-values'],
  [GA + 'presentation']: [PPTX, 'application/pdf', 'application/vnd.oasis.opendocument.presentation', 'text/plain',
    'image/jpeg', 'image/png', 'image/svg+xml'],
  [GA + 'drawing']: ['image/png', 'application/pdf', 'image/jpeg', 'image/svg+xml'],
};
// Leading bytes make exports recognisable by type sniffers; the rest is filler.
const MAGIC = {
  'application/pdf': '%PDF-1.4\n', 'image/png': '\x89PNG\r\n\x1a\n', 'text/html': '<!DOCTYPE html>\n',
  [DOCX]: 'PK\x03\x04', [XLSX]: 'PK\x03\x04', [PPTX]: 'PK\x03\x04', 'application/zip': 'PK\x03\x04',
  'application/epub+zip': 'PK\x03\x04', 'application/rtf': '{\\rtf1', 'image/jpeg': '\xff\xd8\xff',
  'application/vnd.oasis.opendocument.text': 'PK\x03\x04',
  'application/vnd.oasis.opendocument.spreadsheet': 'PK\x03\x04',
  'application/x-vnd.oasis.opendocument.spreadsheet': 'PK\x03\x04',
  'application/vnd.oasis.opendocument.presentation': 'PK\x03\x04',
};
const TEXT = Buffer.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,');

const DEFAULT_CONFIG = { token_ttl: 3599, export_limit: 10485760, export_content_length: false, incomplete_search: false,
  cp_token: null };
const MAX_LOG = 100000;
const ENDPOINTS = ['token', 'files.get', 'files.media', 'files.export', 'files.exportLink', 'files.exportContent',
  'files.list', 'changes.startPageToken', 'changes.list', 'cp.credentials', 'cp.reauthorize'];
const JSON_TYPE = 'application/json; charset=UTF-8';
const AUTH_MSG = 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie '
  + 'or other valid authentication credential.';

// The request log's times are wall-clock times, as the tests' own "since"
// is: performance.timeOrigin is fixed when the process starts, so a step
// of the system clock afterwards (a virtual machine's clock catching up)
// would leave every later time that far off the tests' clock.
const now = () => Date.now();
const iso = () => new Date().toISOString();
const isBinary = (f) => !f.mimeType.startsWith(GA);
const hash = (alg, s) => crypto.createHash(alg).update(s).digest();

// ------------------------------------------------------------------ state

let S;

function resetState() {
  S = {
    config: { ...DEFAULT_CONFIG },
    files: new Map(),
    changes: [],              // change log; position of entry i is i + 1
    latest: new Map(),        // fileId -> position of its newest change
    changePages: new Map(),   // issued changes nextPageToken -> page index
    faults: [], faultSeq: 0,
    requests: [], connections: 0,
    clients: new Map([[OPTS['client-id'], OPTS['client-secret']]]),
    refreshTokens: new Map(), accessTokens: new Map(), integrations: new Map(),
    serviceAccounts: new Map(),
    reauthorizations: [],
    idSeq: 0,
    open: new Map(),          // integration -> { now, max }: requests at once
  };
  registerRefreshToken({ refresh_token: OPTS['refresh-token'], integration_id: OPTS.integration });
  if (FIXTURES) applyFixtures(FIXTURES);
}

function applyFixtures(fx) {
  const spec = Array.isArray(fx) ? { files: fx } : fx;
  if (spec.config) setConfig(spec.config);
  for (const rt of spec.refresh_tokens || []) registerRefreshToken(rt);
  for (const f of spec.files || []) upsertFile(f);
}

class AdminError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

class ApiError extends Error {
  constructor(code, reason, message, extra = {}) { super(message); Object.assign(this, { code, reason, extra }); }
}

const invalidValue = (location) => new ApiError(400, 'invalid', 'Invalid Value', { location });

function toSize(v, what = 'size') {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (!Number.isSafeInteger(n) || n < 0) throw new AdminError(400, `${what} must be a non-negative integer`);
  return n;
}

function setConfig(c) {
  for (const [k, v] of Object.entries(c || {})) {
    if (k === 'export_content_length') S.config[k] = !!v;
    else if (k === 'cp_token') S.config[k] = v == null || v === '' ? null : String(v);
    else if (k === 'incomplete_search') {
      if (![true, false, 'always'].includes(v)) throw new AdminError(400, 'incomplete_search must be true, false or "always"');
      S.config[k] = v;
    }
    else if (k === 'token_ttl' || k === 'export_limit') S.config[k] = toSize(v, k);
    else throw new AdminError(400, `unknown config key: ${k}`);
  }
  return S.config;
}

function registerRefreshToken(b) {
  if (!b || !b.refresh_token || !b.integration_id) throw new AdminError(400, 'refresh_token and integration_id are required');
  const clientId = String(b.client_id || OPTS['client-id']);
  if (b.client_secret != null) S.clients.set(clientId, String(b.client_secret));
  else if (!S.clients.has(clientId)) throw new AdminError(400, 'client_secret is required for a new client_id');
  const rt = String(b.refresh_token), integ = String(b.integration_id);
  S.refreshTokens.set(rt, { integration: integ, client_id: clientId, revoked: false });
  S.integrations.set(integ, { integration_id: integ, client_id: clientId, client_secret: S.clients.get(clientId), refresh_token: rt,
    refresh_token_only: !!b.refresh_token_only,
    // with a service account, the user the integration acts as
    ...(b.subject != null ? { subject: String(b.subject) } : {}) });
  return S.integrations.get(integ);
}

// Drive-like ids, derived from a counter so a reset run reproduces them.
const newId = () => '1' + hash('sha256', `emulator-file-${++S.idSeq}`).toString('base64url').slice(0, 32);

function setContentKey(f) {
  const key = hash('sha256', `content\0${f.id}\0${f.size}\0${f.seed}`);
  f.key = key.subarray(0, 16);
  f.keyHex = key.toString('hex');
  f.headRevisionId = '0B' + hash('sha256', `rev\0${f.keyHex}`).toString('base64url').slice(0, 40);
}

function recordChange(id, driveId, removed) {
  const pos = S.changes.length + 1;
  S.changes.push({ pos, time: iso(), fileId: id, removed, driveId });
  S.latest.set(id, pos);
}

const FILE_SPEC_KEYS = new Set(['id', 'name', 'mimeType', 'size', 'parents', 'driveId', 'seed', 'abusive', 'exportSize',
  'shortcutTarget', 'shortcutTargetMimeType', 'trashed', 'canDownload', 'md5Checksum', 'sha256Checksum',
  'createdTime', 'modifiedTime', 'resourceKey', 'exportLinksBase']);

function upsertFile(spec) {
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new AdminError(400, 'file spec must be an object');
  for (const k of Object.keys(spec)) if (!FILE_SPEC_KEYS.has(k)) throw new AdminError(400, `unknown file field: ${k}`);
  if (spec.parents != null && !Array.isArray(spec.parents)) throw new AdminError(400, 'parents must be an array');
  const id = spec.id != null ? String(spec.id) : newId();
  const old = S.files.get(id);
  const t = iso();
  const f = {
    id, name: spec.name != null ? String(spec.name) : id,
    mimeType: String(spec.mimeType || 'application/octet-stream'),
    parents: (spec.parents || []).map(String),
    driveId: spec.driveId ? String(spec.driveId) : undefined,
    seed: String(spec.seed ?? ''),
    abusive: !!spec.abusive, trashed: !!spec.trashed, canDownload: spec.canDownload !== false,
    exportSize: toSize(spec.exportSize ?? 4096, 'exportSize'),
    shortcutTarget: spec.shortcutTarget != null ? String(spec.shortcutTarget) : undefined,
    shortcutTargetMimeType: spec.shortcutTargetMimeType,
    md5Checksum: spec.md5Checksum, sha256Checksum: spec.sha256Checksum,
    resourceKey: spec.resourceKey != null ? String(spec.resourceKey) : undefined,
    exportLinksBase: spec.exportLinksBase != null ? String(spec.exportLinksBase) : undefined,
    version: old ? old.version + 1 : 1,
    createdTime: spec.createdTime || (old && old.createdTime) || t,
    modifiedTime: spec.modifiedTime || t,
  };
  if (isBinary(f)) {
    f.size = toSize(spec.size ?? 1024);
    setContentKey(f);
  }
  S.files.set(id, f);
  recordChange(id, f.driveId, false);
  return f;
}

function patchFile(f, b) {
  const allowed = new Set(['name', 'content_seed', 'size', 'trashed', 'parents', 'abusive', 'exportSize', 'modifiedTime']);
  for (const k of Object.keys(b)) if (!allowed.has(k)) throw new AdminError(400, `unknown patch field: ${k}`);
  if ('name' in b) f.name = String(b.name);
  if ('trashed' in b) f.trashed = !!b.trashed;
  if ('abusive' in b) f.abusive = !!b.abusive;
  if ('exportSize' in b) f.exportSize = toSize(b.exportSize, 'exportSize');
  if ('parents' in b) {
    if (!Array.isArray(b.parents)) throw new AdminError(400, 'parents must be an array');
    f.parents = b.parents.map(String);
  }
  if (isBinary(f) && ('content_seed' in b || 'size' in b)) {
    if ('content_seed' in b) f.seed = String(b.content_seed);
    if ('size' in b) f.size = toSize(b.size);
    setContentKey(f);
    f.md5Checksum = f.sha256Checksum = undefined;
  }
  f.version++;
  f.modifiedTime = b.modifiedTime || iso();
  recordChange(f.id, f.driveId, false);
  return f;
}

// ---------------------------------------------------------------- content
// File bytes are an AES-128-CTR keystream keyed by (id, size, seed): fast,
// deterministic, and any offset can be produced without generating the prefix.

const CHUNK = 64 * 1024;
const ZERO = Buffer.alloc(CHUNK + 16);

function* keystream(key, start, end, shape) {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(start / 16)), 8);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, iv);
  let skip = start % 16;
  for (let pos = start; pos < end;) {
    const n = Math.min(CHUNK, end - pos);
    let b = cipher.update(ZERO.subarray(0, n + skip));
    if (skip) { b = b.subarray(skip); skip = 0; }
    if (shape) shape(b, pos);
    yield b;
    pos += n;
  }
}

function exportChunks(f, mt) {
  const key = hash('sha256', `export\0${f.id}\0${f.version}\0${mt}`).subarray(0, 16);
  const magic = Buffer.from(MAGIC[mt] || '', 'latin1');
  const text = mt.startsWith('text/');
  return keystream(key, 0, f.exportSize, (b, pos) => {
    if (text) for (let i = 0; i < b.length; i++) b[i] = (pos + i) % 64 === 63 ? 10 : TEXT[b[i] & 63];
    if (pos < magic.length) magic.copy(b, 0, pos);
  });
}

// Content never changes for a given key, so the cache survives resets.
const sumCache = new Map();

async function computeSums(key, size) {
  const hs = ['md5', 'sha1', 'sha256'].map((a) => crypto.createHash(a));
  let n = 0;
  for (const b of keystream(key, 0, size)) {
    for (const h of hs) h.update(b);
    // Yield now and then so a multi-GiB checksum does not starve other clients.
    if (++n % 16 === 0) await new Promise(setImmediate);
  }
  const [md5, sha1, sha256] = hs.map((h) => h.digest('hex'));
  return { md5, sha1, sha256 };
}

function ensureSums(f) {
  if (!isBinary(f)) return null;
  const { keyHex } = f;
  let e = sumCache.get(keyHex);
  if (!e) {
    e = computeSums(f.key, f.size).then((v) => { sumCache.set(keyHex, v); return v; });
    sumCache.set(keyHex, e);
  }
  return e;
}

function fileMeta(f, base) {
  const m = { kind: 'drive#file', id: f.id, name: f.name, mimeType: f.mimeType, parents: [...f.parents] };
  if (f.driveId) m.driveId = f.driveId;
  if (f.resourceKey) m.resourceKey = f.resourceKey;
  Object.assign(m, { trashed: f.trashed, version: String(f.version), createdTime: f.createdTime, modifiedTime: f.modifiedTime });
  if (isBinary(f)) {
    const c = sumCache.get(f.keyHex);
    const sums = c && !(c instanceof Promise) ? c : {};
    Object.assign(m, {
      size: String(f.size), headRevisionId: f.headRevisionId,
      md5Checksum: f.md5Checksum ?? sums.md5, sha1Checksum: sums.sha1,
      sha256Checksum: f.sha256Checksum ?? sums.sha256,
    });
  }
  if (f.mimeType === SHORTCUT && f.shortcutTarget) {
    const t = S.files.get(f.shortcutTarget);
    m.shortcutDetails = { targetId: f.shortcutTarget, targetMimeType: t ? t.mimeType : f.shortcutTargetMimeType || 'application/octet-stream' };
  }
  const targets = EXPORTS[f.mimeType];
  if (targets) {
    m.exportLinks = Object.fromEntries(targets.map((t) =>
      [t, `${f.exportLinksBase || base}/export-links/${encodeURIComponent(f.id)}?mimeType=${encodeURIComponent(t)}`]));
  }
  m.capabilities = { canDownload: f.canDownload, canListChildren: f.mimeType === FOLDER };
  return m;
}

// ------------------------------------------------------- partial responses

const FILE_FIELDS = Object.fromEntries(('kind driveId fileExtension copyRequiresWriterPermission md5Checksum contentHints '
  + 'writersCanShare viewedByMe mimeType exportLinks parents thumbnailLink iconLink shared lastModifyingUser owners '
  + 'headRevisionId sharingUser webViewLink webContentLink size viewersCanCopyContent permissions hasThumbnail spaces '
  + 'folderColorRgb id name description starred trashed explicitlyTrashed createdTime modifiedTime modifiedByMeTime '
  + 'viewedByMeTime sharedWithMeTime quotaBytesUsed version originalFilename ownedByMe fullFileExtension properties '
  + 'appProperties isAppAuthorized teamDriveId capabilities hasAugmentedPermissions trashingUser thumbnailVersion '
  + 'trashedTime modifiedByMe permissionIds imageMediaMetadata videoMediaMetadata shortcutDetails contentRestrictions '
  + 'resourceKey linkShareMetadata labelInfo sha1Checksum sha256Checksum inheritedPermissionsDisabled downloadRestrictions')
  .split(' ').map((k) => [k, null]));
const SCHEMAS = {
  file: FILE_FIELDS,
  list: { kind: null, nextPageToken: null, incompleteSearch: null, files: FILE_FIELDS },
  changes: {
    kind: null, nextPageToken: null, newStartPageToken: null,
    changes: { kind: null, changeType: null, time: null, removed: null, fileId: null, file: FILE_FIELDS,
      driveId: null, drive: null, teamDriveId: null, teamDrive: null, type: null },
  },
  start: { kind: null, startPageToken: null },
};
const DEFAULT_FIELDS = {
  file: 'kind,id,name,mimeType',
  list: 'kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)',
  changes: 'kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,file(kind,id,name,mimeType))',
  start: '*',
};

// A mask is a Map from field name to sub-mask, where null selects the whole value.
function parseFields(src) {
  const s = src.replace(/\s+/g, '');
  const bad = () => new ApiError(400, 'invalidParameter', `Invalid field selection ${src}`, { location: 'fields' });
  let i = 0;
  const insert = (tree, parts, sub) => {
    const [head, ...rest] = parts;
    let leaf = sub;
    if (rest.length) { leaf = new Map(); insert(leaf, rest, sub); }
    const cur = tree.get(head);
    if (cur === undefined) tree.set(head, leaf);
    else if (cur === null || leaf === null) tree.set(head, null);
    else for (const [k, v] of leaf) insert(cur, [k], v);
  };
  const list = () => {
    const tree = new Map();
    for (;;) {
      const m = /^(?:\*|[A-Za-z_]\w*)(?:\/(?:\*|[A-Za-z_]\w*))*/.exec(s.slice(i));
      if (!m) throw bad();
      i += m[0].length;
      let sub = null;
      if (s[i] === '(') {
        i++;
        sub = list();
        if (s[i++] !== ')') throw bad();
      }
      insert(tree, m[0].split('/'), sub);
      if (s[i] !== ',') return tree;
      i++;
    }
  };
  const tree = list();
  if (i !== s.length) throw bad();
  return tree;
}

function validateMask(tree, schema, prefix = '') {
  if (!tree || !schema) return;
  for (const [k, sub] of tree) {
    if (k === '*') continue;
    if (!(k in schema)) throw new ApiError(400, 'invalidParameter', `Invalid field selection ${prefix}${k}`, { location: 'fields' });
    validateMask(sub, schema[k], `${prefix}${k}/`);
  }
}

function applyMask(v, tree) {
  if (tree === null || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => applyMask(x, tree));
  if (tree.has('*')) return v;
  const out = {};
  for (const k of Object.keys(v)) if (tree.has(k) && v[k] !== undefined) out[k] = applyMask(v[k], tree.get(k));
  return out;
}

// undefined: field not selected; null: selected entirely.
const subMask = (t, k) => (t === undefined ? undefined : t === null || t.has('*') ? null : t.get(k));
const wantsSums = (t) => t !== undefined && ['md5Checksum', 'sha1Checksum', 'sha256Checksum'].some((k) => subMask(t, k) !== undefined);

function fieldsParam(ctx, kind) {
  const tree = parseFields(ctx.query.get('fields') || DEFAULT_FIELDS[kind]);
  validateMask(tree, SCHEMAS[kind]);
  return tree;
}

// ------------------------------------------------------------ search (q)

function parseQuery(src) {
  const bad = () => invalidValue('q');
  const toks = [];
  const re = /\s*(?:'((?:[^'\\]|\\.)*)'|(!=|<=|>=|=|<|>|\(|\))|([A-Za-z_][\w.]*))/y;
  let m;
  while (re.lastIndex < src.length && !/^\s*$/.test(src.slice(re.lastIndex))) {
    if (!(m = re.exec(src))) throw bad();
    if (m[1] !== undefined) toks.push({ t: 'str', v: m[1].replace(/\\(.)/g, '$1') });
    else if (m[2]) toks.push({ t: 'op', v: m[2] });
    else toks.push({ t: 'id', v: m[3] });
  }
  let p = 0;
  const kw = (w) => toks[p] && toks[p].t === 'id' && toks[p].v.toLowerCase() === w;
  const isOp = (v) => toks[p] && toks[p].t === 'op' && toks[p].v === v;
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const OPS = { '=': (c) => c === 0, '!=': (c) => c !== 0, '<': (c) => c < 0, '<=': (c) => c <= 0, '>': (c) => c > 0, '>=': (c) => c >= 0 };

  function term() {
    const a = toks[p++];
    if (!a) throw bad();
    if (a.t === 'str') {
      if (!kw('in')) throw bad();
      p++;
      const coll = toks[p++];
      if (!coll || coll.t !== 'id') throw bad();
      if (coll.v === 'parents') return (f) => f.parents.includes(a.v);
      if (['owners', 'writers', 'readers'].includes(coll.v)) return () => true;
      throw bad();
    }
    if (a.t !== 'id') throw bad();
    const opTok = toks[p++], val = toks[p++];
    if (!opTok || !val) throw bad();
    const op = opTok.t === 'id' ? opTok.v.toLowerCase() : opTok.v;
    const field = a.v;
    if (['trashed', 'starred', 'sharedWithMe'].includes(field)) {
      if (val.t !== 'id' || !/^(true|false)$/i.test(val.v) || !(op === '=' || op === '!=')) throw bad();
      const want = val.v.toLowerCase() === 'true';
      const get = field === 'trashed' ? (f) => f.trashed : () => false;
      return op === '=' ? (f) => get(f) === want : (f) => get(f) !== want;
    }
    if (val.t !== 'str') throw bad();
    if (['name', 'mimeType', 'fullText'].includes(field)) {
      const get = field === 'mimeType' ? (f) => f.mimeType : (f) => f.name;
      if (op === 'contains') { const v = val.v.toLowerCase(); return (f) => get(f).toLowerCase().includes(v); }
      if (field === 'fullText' || !(op === '=' || op === '!=')) throw bad();
      return (f) => OPS[op](cmp(get(f), val.v));
    }
    if (['modifiedTime', 'createdTime'].includes(field)) {
      const t = Date.parse(val.v);
      if (Number.isNaN(t) || !OPS[op]) throw bad();
      return (f) => OPS[op](cmp(Date.parse(f[field]), t));
    }
    throw bad();
  }
  function unary() {
    if (kw('not')) { p++; const a = unary(); return (f) => !a(f); }
    if (isOp('(')) {
      p++;
      const e = orExpr();
      if (!isOp(')')) throw bad();
      p++;
      return e;
    }
    return term();
  }
  function andExpr() {
    let l = unary();
    while (kw('and')) { p++; const a = l, b = unary(); l = (f) => a(f) && b(f); }
    return l;
  }
  function orExpr() {
    let l = andExpr();
    while (kw('or')) { p++; const a = l, b = andExpr(); l = (f) => a(f) || b(f); }
    return l;
  }
  if (!toks.length) return () => true;
  const pred = orExpr();
  if (p !== toks.length) throw bad();
  return pred;
}

function parseOrder(spec) {
  const keys = {
    name: (f) => f.name, name_natural: (f) => f.name, folder: (f) => (f.mimeType === FOLDER ? 0 : 1),
    modifiedTime: (f) => f.modifiedTime, recency: (f) => f.modifiedTime, createdTime: (f) => f.createdTime,
    quotaBytesUsed: (f) => f.size || 0, starred: () => 0, viewedByMeTime: () => 0,
    modifiedByMeTime: () => 0, sharedWithMeTime: () => 0,
  };
  const parts = (spec || '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const [k, dir, extra] = s.split(/\s+/);
    if (!keys[k] || extra || (dir && dir.toLowerCase() !== 'desc')) throw invalidValue('orderBy');
    return [keys[k], dir ? -1 : 1];
  });
  parts.push([keys.name, 1], [(f) => f.id, 1]);
  return (a, b) => {
    for (const [get, dir] of parts) {
      const x = get(a), y = get(b);
      if (x !== y) return (x < y ? -1 : 1) * dir;
    }
    return 0;
  };
}

const encodeListToken = (o) => 'EMU' + Buffer.from(JSON.stringify(o)).toString('base64url');
function decodeListToken(s) {
  if (!s || !s.startsWith('EMU')) return undefined;
  try {
    const o = JSON.parse(Buffer.from(s.slice(3), 'base64url').toString());
    return Number.isSafeInteger(o.o) && o.o >= 0 && Number.isSafeInteger(o.p) && o.p >= 0 ? o : undefined;
  } catch { return undefined; }
}

// ------------------------------------------------------------ HTTP output

function send(ctx, status, headers, body) {
  if (ctx.entry) ctx.entry.status = status;
  if (typeof body === 'string') body = Buffer.from(body);
  if (Buffer.isBuffer(body)) { headers['Content-Length'] = body.length; body = [body]; }
  ctx.res.writeHead(status, headers);
  if (ctx.req.method === 'HEAD') return ctx.res.end();
  return pump(ctx, body);
}

const drained = (res) => new Promise((resolve) => {
  const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
  res.on('drain', done);
  res.on('close', done);
});

async function pump(ctx, body) {
  const { res, cut } = ctx;
  let sent = 0;
  for (let chunk of body) {
    if (ctx.closed) return;
    if (cut && sent + chunk.length > cut.bytes) {
      chunk = chunk.subarray(0, cut.bytes - sent);
      if (chunk.length) res.write(chunk); else res.flushHeaders();
      // A stall leaves the connection open with the body incomplete until the client gives up.
      const sock = res.socket;
      if (cut.mode === 'truncate' && sock) {
        sock.end();
        sock.once('finish', () => sock.destroy());
      }
      return;
    }
    sent += chunk.length;
    if (!res.write(chunk)) await drained(res);
  }
  // a stall at the very end: every byte, but the response does not end
  if (cut && cut.mode === 'stall' && sent >= cut.bytes) return;
  if (!ctx.closed) res.end();
}

function sendJson(ctx, status, obj, headers = {}) {
  const text = ctx.pretty ? JSON.stringify(obj, null, 2) + '\n' : JSON.stringify(obj);
  return send(ctx, status, { 'Content-Type': JSON_TYPE, ...headers }, text);
}

function gerr(ctx, code, reason, message, extra = {}) {
  const item = { message, domain: extra.domain || 'global', reason };
  if (extra.location) Object.assign(item, { location: extra.location, locationType: extra.locationType || 'parameter' });
  const error = { code, message, errors: [item] };
  if (extra.status) error.status = extra.status;
  return sendJson(ctx, code, { error }, extra.headers);
}

const authError = (headers = {}) => new ApiError(401, 'authError', AUTH_MSG, {
  location: 'Authorization', locationType: 'header', status: 'UNAUTHENTICATED', domain: 'global',
  // RFC 6750 section 3.1, as Google sends it for an expired or revoked token
  headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"', ...headers },
});

function oauthError(ctx, status, error, description, headers = {}) {
  return sendJson(ctx, status, { error, error_description: description }, { 'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate', ...headers });
}

// --------------------------------------------------------------- OAuth

function parseForm(ctx) {
  const raw = ctx.rawBody.toString();
  let p = {};
  if (/json/i.test(ctx.req.headers['content-type'] || '')) {
    try { p = JSON.parse(raw) || {}; } catch { p = {}; }
  } else {
    p = Object.fromEntries(new URLSearchParams(raw));
  }
  const basic = /^Basic\s+(\S+)/i.exec(ctx.req.headers.authorization || '');
  if (basic) {
    const [id, secret] = Buffer.from(basic[1], 'base64').toString().split(':').map(decodeURIComponent);
    p.client_id ??= id;
    p.client_secret ??= secret;
  }
  return p;
}

function handleToken(ctx) {
  if (ctx.req.method !== 'POST') return oauthError(ctx, 405, 'invalid_request', `Method ${ctx.req.method} not allowed; use POST.`);
  const p = ctx.form;
  if (!p.grant_type) return oauthError(ctx, 400, 'invalid_request', 'Missing required parameter: grant_type');
  if (p.grant_type === JWT_BEARER) return handleJwtBearer(ctx, p);
  if (p.grant_type !== 'refresh_token') return oauthError(ctx, 400, 'unsupported_grant_type', `Invalid grant_type: ${p.grant_type}`);
  if (!p.client_id) return oauthError(ctx, 400, 'invalid_request', 'Missing required parameter: client_id');
  if (!S.clients.has(p.client_id)) return oauthError(ctx, 401, 'invalid_client', 'The OAuth client was not found.');
  if (S.clients.get(p.client_id) !== p.client_secret) return oauthError(ctx, 401, 'invalid_client', 'Unauthorized');
  if (!p.refresh_token) return oauthError(ctx, 400, 'invalid_request', 'Missing required parameter: refresh_token');
  const rt = S.refreshTokens.get(p.refresh_token);
  if (!rt || rt.revoked) return oauthError(ctx, 400, 'invalid_grant', 'Token has been expired or revoked.');
  if (rt.client_id !== p.client_id) return oauthError(ctx, 401, 'unauthorized_client', 'Unauthorized');

  return issueToken(ctx, { integration: rt.integration }, DRIVE_READONLY);
}

function issueToken(ctx, who, scope) {
  if (S.accessTokens.size > 100000) {
    const t = Date.now();
    for (const [k, v] of S.accessTokens) if (v.expires < t - 3600e3) S.accessTokens.delete(k);
  }
  const token = 'ya29.' + crypto.randomBytes(96).toString('base64url');
  const ttl = S.config.token_ttl;
  S.accessTokens.set(token, { ...who, expires: Date.now() + ttl * 1000 });
  return sendJson(ctx, 200, {
    access_token: token, expires_in: ttl, scope, token_type: 'Bearer',
  }, { 'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate', Pragma: 'no-cache', Expires: 'Mon, 01 Jan 1990 00:00:00 GMT' });
}

// ------------------------------------------------------ service accounts
//
// Google's "Using OAuth 2.0 for Server to Server Applications": the token
// endpoint takes grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and
// assertion=<JWT>, the JWT signed with RS256 by the service account's private
// key, its claims iss (the account's client_email), scope (space-delimited),
// aud (the token URI; Google also accepts its own), iat and exp (exp at most
// an hour after iat), and sub, the user to impersonate when a Workspace
// administrator granted the account domain-wide delegation for the scopes.
// The answers for a bad assertion follow what Google's endpoint returns:
// invalid_grant for a bad signature, an unknown account or a token outside
// its time frame, invalid_scope for a missing scope, and 401
// unauthorized_client when delegation is not granted for sub or the scopes.

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DRIVE_READONLY = 'https://www.googleapis.com/auth/drive.readonly';
const GOOGLE_TOKEN_AUD = 'https://oauth2.googleapis.com/token';
const JWT_SKEW_S = 300;

function jwtPart(s) {
  try { return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')); } catch { return null; }
}

// the claims of an assertion, unverified (for the request log)
function jwtClaims(assertion) {
  const parts = String(assertion || '').split('.');
  return parts.length === 3 ? jwtPart(parts[1]) : null;
}

function registerServiceAccount(ctx, b) {
  if (!b || !b.client_email || !/^[^@\s]+@[^@\s]+$/.test(String(b.client_email))) {
    throw new AdminError(400, 'client_email (an e-mail address) is required');
  }
  const email = String(b.client_email);
  let sa = S.serviceAccounts.get(email);
  if (!sa || b.new_key) {
    const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    sa = { ...(sa || {}), email, publicKey, privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      keyId: crypto.randomBytes(20).toString('hex'), clientId: String(100000000000000000000n + BigInt(S.serviceAccounts.size + 1)) };
  }
  // delegation: the subjects the account may impersonate ("*": any), and
  // the scopes granted to it in the Admin console
  sa.delegated = b.delegated === '*' ? '*' : new Set((b.delegated || []).map(String));
  sa.scopes = new Set((b.scopes || [DRIVE_READONLY]).map(String));
  sa.disabled = !!b.disabled;
  S.serviceAccounts.set(email, sa);
  const tokenUri = `${baseUrl(ctx)}/token`;
  // the JSON key file Google issues for the account
  return {
    type: 'service_account', project_id: 'emulator-project', private_key_id: sa.keyId,
    private_key: sa.privateKey, client_email: email, client_id: sa.clientId,
    auth_uri: 'https://accounts.google.com/o/oauth2/auth', token_uri: tokenUri,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
    universe_domain: 'googleapis.com',
  };
}

function handleJwtBearer(ctx, p) {
  const bad = (desc) => oauthError(ctx, 400, 'invalid_grant', desc);
  const parts = String(p.assertion || '').split('.');
  if (!p.assertion) return oauthError(ctx, 400, 'invalid_request', 'Missing required parameter: assertion');
  if (parts.length !== 3) return bad('Invalid JWT: the assertion is not three base64url parts.');
  const header = jwtPart(parts[0]), claims = jwtPart(parts[1]);
  if (!header || !claims) return bad('Invalid JWT: the header or the claims are not JSON.');
  const sa = S.serviceAccounts.get(String(claims.iss || ''));
  if (!sa) return bad('Invalid grant: account not found');
  if (header.alg !== 'RS256') return bad('Invalid JWT Signature.');
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  let ok = false;
  try { ok = crypto.verify('RSA-SHA256', signed, sa.publicKey, Buffer.from(parts[2], 'base64url')); } catch { ok = false; }
  if (!ok) return bad('Invalid JWT Signature.');
  if (sa.disabled) return bad('Invalid grant: account disabled');
  const aud = String(claims.aud || '');
  if (aud !== GOOGLE_TOKEN_AUD && aud !== `${baseUrl(ctx)}${ctx.url.pathname}`) {
    return bad('Invalid JWT: the audience (aud) is not the token URI.');
  }
  const t = Math.floor(Date.now() / 1000);
  if (!Number.isInteger(claims.iat) || !Number.isInteger(claims.exp) || claims.exp <= claims.iat
      || claims.exp - claims.iat > 3600 || claims.exp <= t - JWT_SKEW_S || claims.iat > t + JWT_SKEW_S) {
    return bad('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. '
      + 'Check your iat and exp values in the JWT claim.');
  }
  const scopes = String(claims.scope || '').split(/\s+/).filter(Boolean);
  if (!scopes.length) return oauthError(ctx, 400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
  const sub = claims.sub == null ? null : String(claims.sub);
  if (sub !== null && ((sa.delegated !== '*' && !sa.delegated.has(sub)) || !scopes.every((x) => sa.scopes.has(x)))) {
    return oauthError(ctx, 401, 'unauthorized_client',
      'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
  }
  return issueToken(ctx, { integration: `sa:${sa.email}`, subject: sub }, scopes.join(' '));
}

// --------------------------------------------------------------- Drive

function requireAuth(ctx) {
  const t = ctx.token && S.accessTokens.get(ctx.token);
  if (!t || t.expires <= Date.now()) throw authError();
}

const flag = (q, ...names) => names.some((n) => (q.get(n) || '').toLowerCase() === 'true');
const baseUrl = (ctx) => `http://${ctx.req.headers.host || `${OPTS.host}:${PORT}`}`;

function lookup(ctx, needsAllDrives) {
  const f = S.files.get(ctx.fileId);
  if (!f || (needsAllDrives && f.driveId && !flag(ctx.query, 'supportsAllDrives', 'supportsTeamDrives'))) {
    throw new ApiError(404, 'notFound', `File not found: ${ctx.fileId}.`, { location: 'fileId' });
  }
  return f;
}

// Files shared by link behind a resource key: Drive answers 404 to a content
// request without X-Goog-Drive-Resource-Keys: {fileId}/{resourceKey}
// (Drive API "Access link-shared files using resource keys").
function requireResourceKey(ctx, f) {
  if (!f.resourceKey) return;
  const want = `${f.id}/${f.resourceKey}`;
  const given = String(ctx.req.headers['x-goog-drive-resource-keys'] || '').split(',').map((x) => x.trim());
  if (!given.includes(want)) throw new ApiError(404, 'notFound', `File not found: ${f.id}.`, { location: 'fileId' });
}

function intParam(q, name, dflt, min, max) {
  if (!q.has(name)) return dflt;
  const v = q.get(name), n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw new ApiError(400, 'invalidParameter', `Invalid value '${v}'. Values must be within the range: [${min}, ${max}]`, { location: name });
  }
  return n;
}

async function filesGet(ctx) {
  requireAuth(ctx);
  const f = lookup(ctx, true);
  const alt = ctx.query.get('alt') || 'json';
  if (alt === 'media') return media(ctx, f);
  if (alt !== 'json') throw invalidValue('alt');
  const tree = fieldsParam(ctx, 'file');
  if (wantsSums(tree)) await ensureSums(f);
  return sendJson(ctx, 200, applyMask(fileMeta(f, baseUrl(ctx)), tree));
}

function media(ctx, f) {
  requireResourceKey(ctx, f);
  if (!isBinary(f)) {
    throw new ApiError(403, 'fileNotDownloadable', 'Only files with binary content can be downloaded. Use Export with Docs Editors files.', { location: 'alt' });
  }
  if (f.abusive && !flag(ctx.query, 'acknowledgeAbuse')) {
    throw new ApiError(403, 'cannotDownloadAbusiveFile', 'This file has been identified as malware or spam and cannot be downloaded.', { location: 'acknowledgeAbuse' });
  }
  return serveBinary(ctx, f);
}

// undefined: no usable range (serve everything); null: unsatisfiable.
function parseRange(h, size) {
  const m = h && /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(h);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    return n === 0 || size === 0 ? null : [Math.max(0, size - n), size - 1];
  }
  const a = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < a) return undefined;
  if (a >= size) return null;
  return [a, m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
}

function serveBinary(ctx, f) {
  const r = parseRange(ctx.req.headers.range, f.size);
  if (r === null) {
    throw new ApiError(416, 'requestedRangeNotSatisfiable', 'Request range not satisfiable', { headers: { 'Content-Range': `bytes */${f.size}` } });
  }
  const h = { 'Content-Type': f.mimeType, 'Accept-Ranges': 'bytes' };
  let [start, end, status] = [0, f.size, 200];
  if (r) {
    [start, end, status] = [r[0], r[1] + 1, 206];
    h['Content-Range'] = `bytes ${r[0]}-${r[1]}/${f.size}`;
  }
  // chunked: no length, so the body ends only with its last chunk
  if (!ctx.chunked) h['Content-Length'] = end - start;
  return send(ctx, status, h, keystream(f.key, start, end));
}

function exportResponse(ctx, f, { limited, withLength }) {
  const mt = ctx.query.get('mimeType');
  if (!mt) throw new ApiError(400, 'required', 'Required parameter: mimeType', { location: 'mimeType' });
  const targets = EXPORTS[f.mimeType];
  if (!targets) throw new ApiError(403, 'fileNotExportable', 'Export only supports Docs Editors files.');
  if (!targets.includes(mt)) throw new ApiError(400, 'badRequest', 'The requested conversion is not supported.', { location: 'convertTo' });
  if (limited && f.exportSize > S.config.export_limit) throw new ApiError(403, 'exportSizeLimitExceeded', 'This file is too large to be exported.');
  const h = { 'Content-Type': mt };
  // Google streams exports chunked, without a length, unless configured otherwise.
  if (withLength || S.config.export_content_length) h['Content-Length'] = f.exportSize;
  return send(ctx, 200, h, exportChunks(f, mt));
}

function filesExport(ctx) {
  requireAuth(ctx);
  const f = lookup(ctx, false);
  requireResourceKey(ctx, f);
  return exportResponse(ctx, f, { limited: true });
}

// Google's exportLinks answer with a redirect to a content host (a
// googleusercontent.com URL that carries its own signature, no bearer
// token needed); modelled as /export-content with an HMAC and an expiry.
const LINK_KEY = crypto.randomBytes(32);
const linkSig = (id, mt, exp) => crypto.createHmac('sha256', LINK_KEY).update(`${id}\0${mt}\0${exp}`).digest('base64url');

function exportLink(ctx) {
  requireAuth(ctx);
  const f = lookup(ctx, false);
  requireResourceKey(ctx, f);
  const mt = ctx.query.get('mimeType') || '';
  const exp = String(Date.now() + 60000);
  const loc = `${baseUrl(ctx)}/export-content/${encodeURIComponent(f.id)}?mimeType=${encodeURIComponent(mt)}`
    + `&exp=${exp}&sig=${linkSig(f.id, mt, exp)}`;
  return send(ctx, 307, { Location: loc, 'Content-Type': 'text/html; charset=UTF-8' }, `<a href="${loc}">moved</a>`);
}

function exportContent(ctx) {
  const f = lookup(ctx, false);
  const q = ctx.query, mt = q.get('mimeType') || '', exp = q.get('exp') || '';
  if (!(Number(exp) > Date.now()) || q.get('sig') !== linkSig(f.id, mt, exp)) {
    throw new ApiError(403, 'forbidden', 'The link has expired or is not valid.');
  }
  return exportResponse(ctx, f, { limited: false });
}

async function filesList(ctx) {
  requireAuth(ctx);
  const q = ctx.query;
  const pageSize = intParam(q, 'pageSize', 100, 1, 1000);
  const tree = fieldsParam(ctx, 'list');
  const pred = parseQuery(q.get('q') || '');
  const order = parseOrder(q.get('orderBy'));
  const allDrives = flag(q, 'supportsAllDrives', 'supportsTeamDrives') && flag(q, 'includeItemsFromAllDrives', 'includeTeamDriveItems');
  const driveId = q.get('driveId') || q.get('teamDriveId');
  const corpora = q.get('corpora') || 'user';
  if (!['user', 'drive', 'domain', 'allDrives'].includes(corpora)) throw invalidValue('corpora');
  if ((corpora === 'drive') !== !!driveId) {
    throw new ApiError(400, 'invalid', 'The driveId parameter must be specified if and only if corpora is set to drive.', { location: 'driveId' });
  }
  if (driveId && !allDrives) {
    throw new ApiError(403, 'teamDriveIncludeItemsRequired', 'The includeItemsFromAllDrives parameter must be set to true when driveId is specified.', { location: 'includeItemsFromAllDrives' });
  }
  if (q.has('pageToken') && !ctx.listToken) throw invalidValue('pageToken');
  const skipShared = S.config.incomplete_search === true && corpora === 'allDrives';
  const items = [...S.files.values()]
    .filter((f) => (!f.driveId || allDrives) && (!driveId || f.driveId === driveId) && pred(f))
    .filter((f) => !(skipShared && f.driveId))
    .sort(order);
  const start = ctx.listToken ? ctx.listToken.o : 0;
  const page = items.slice(start, start + pageSize);
  const out = { kind: 'drive#fileList' };
  if (start + pageSize < items.length) out.nextPageToken = encodeListToken({ o: start + pageSize, p: ctx.page + 1 });
  // Drive documents incompleteSearch: "This can occur when searching multiple
  // drives with the 'allDrives' corpora, but all corpora couldn't be searched",
  // and advises narrowing the corpus to 'user' or 'drive'. Modelled here:
  // incomplete_search true makes allDrives listings skip shared drives (their
  // files are missing from the page); 'always' makes every listing incomplete.
  const incomplete = S.config.incomplete_search === 'always'
    || (S.config.incomplete_search === true && corpora === 'allDrives');
  out.incompleteSearch = incomplete;
  if (wantsSums(subMask(tree, 'files'))) for (const f of page) await ensureSums(f);
  const base = baseUrl(ctx);
  out.files = page.map((f) => fileMeta(f, base));
  return sendJson(ctx, 200, applyMask(out, tree));
}

function startPageToken(ctx) {
  requireAuth(ctx);
  const tree = fieldsParam(ctx, 'start');
  return sendJson(ctx, 200, applyMask({ kind: 'drive#startPageToken', startPageToken: String(S.changes.length + 1) }, tree));
}

async function changesList(ctx) {
  requireAuth(ctx);
  const q = ctx.query, tok = q.get('pageToken');
  if (!tok) throw new ApiError(400, 'required', 'Required parameter: pageToken', { location: 'pageToken' });
  const start = /^\d+$/.test(tok) ? Number(tok) : NaN;
  if (!(start >= 1 && start <= S.changes.length + 1)) throw invalidValue('pageToken');
  const pageSize = intParam(q, 'pageSize', 100, 1, 1000);
  const tree = fieldsParam(ctx, 'changes');
  const includeRemoved = (q.get('includeRemoved') || 'true').toLowerCase() !== 'false';
  const allDrives = flag(q, 'supportsAllDrives', 'supportsTeamDrives') && flag(q, 'includeItemsFromAllDrives', 'includeTeamDriveItems');
  const driveId = q.get('driveId') || q.get('teamDriveId');
  const picked = [];
  let i = start - 1, more = false;
  for (; i < S.changes.length; i++) {
    const c = S.changes[i];
    // Like Drive, a file appears once per listing, at the position of its newest change.
    if (S.latest.get(c.fileId) !== c.pos || (c.removed && !includeRemoved)) continue;
    if (c.driveId ? !allDrives || (driveId && c.driveId !== driveId) : !!driveId) continue;
    if (picked.length === pageSize) { more = true; break; }
    picked.push(c);
  }
  const out = { kind: 'drive#changeList' };
  if (more) {
    out.nextPageToken = String(i + 1);
    S.changePages.set(out.nextPageToken, ctx.page + 1);
  } else {
    out.newStartPageToken = String(S.changes.length + 1);
  }
  const fileTree = subMask(subMask(tree, 'changes'), 'file');
  const files = picked.map((c) => (c.removed ? undefined : S.files.get(c.fileId)));
  if (wantsSums(fileTree)) for (const f of files) if (f) await ensureSums(f);
  const base = baseUrl(ctx);
  out.changes = picked.map((c, k) => ({
    kind: 'drive#change', changeType: 'file', time: c.time, removed: c.removed, fileId: c.fileId,
    file: files[k] && fileMeta(files[k], base),
  }));
  return sendJson(ctx, 200, applyMask(out, tree));
}

// ------------------------------------------------------- control plane

// A control plane authenticates its callers: with cp_token set, a request
// without "Authorization: Bearer <cp_token>" gets 401.
function cpAuthorized(ctx) {
  if (!S.config.cp_token) return true;
  const h = ctx.req.headers.authorization || '';
  if (h === `Bearer ${S.config.cp_token}`) return true;
  sendJson(ctx, 401, { error: 'unauthorized', message: h ? 'invalid token' : 'missing bearer token' },
    { 'WWW-Authenticate': 'Bearer realm="control-plane"' });
  return false;
}

function cpCredentials(ctx) {
  if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') return sendJson(ctx, 405, { error: 'method_not_allowed' });
  if (!cpAuthorized(ctx)) return undefined;
  const i = S.integrations.get(ctx.integration);
  if (!i) return sendJson(ctx, 404, { error: 'not_found' });
  // the multi-tenant shape: one OAuth client in the worker's configuration,
  // one refresh token per connected user
  if (i.refresh_token_only) return sendJson(ctx, 200, { refresh_token: i.refresh_token });
  const { refresh_token_only: _, ...answer } = i;
  return sendJson(ctx, 200, answer);
}

function cpReauthorize(ctx) {
  if (ctx.req.method !== 'POST') return sendJson(ctx, 405, { error: 'method_not_allowed' });
  if (!cpAuthorized(ctx)) return undefined;
  let body = null;
  try { body = ctx.rawBody.length ? JSON.parse(ctx.rawBody) : null; } catch { body = ctx.rawBody.toString(); }
  S.reauthorizations.push({ integration_id: ctx.integration, time_ms: ctx.time, body });
  return sendJson(ctx, 202, { status: 'reauthorization_requested' });
}

// --------------------------------------------------------------- faults

const FAULT_MATCH = ['endpoint', 'integration', 'file_id', 'page', 'times'];
const FAULT_ACTIONS = ['status', 'reason', 'message', 'domain', 'error', 'retry_after', 'headers', 'body',
  'invalid_grant', 'delay_ms', 'stall_after_bytes', 'truncate_after_bytes', 'reset', 'chunked', 'redirect'];
const STATUS_DEFAULTS = {
  400: ['badRequest', 'Bad Request'], 401: ['authError', AUTH_MSG], 403: ['forbidden', 'Forbidden'],
  404: ['notFound', 'Not Found'], 429: ['rateLimitExceeded', 'Rate Limit Exceeded'],
  500: ['backendError', 'Backend Error'], 502: ['badGateway', 'Bad Gateway'],
  503: ['backendError', 'The service is currently unavailable.'], 504: ['backendError', 'Deadline exceeded'],
};
const REASON_DEFAULTS = {
  rateLimitExceeded: ['Rate Limit Exceeded', 'usageLimits'],
  userRateLimitExceeded: ['User Rate Limit Exceeded', 'usageLimits'],
  dailyLimitExceeded: ['Daily Limit Exceeded', 'usageLimits'],
  downloadQuotaExceeded: ['The download quota for this file has been exceeded.', 'global'],
  cannotDownloadAbusiveFile: ['This file has been identified as malware or spam and cannot be downloaded.', 'global'],
  insufficientFilePermissions: ['The user does not have sufficient permissions for this file.', 'global'],
  backendError: ['Backend Error', 'global'],
  internalError: ['Internal Error', 'global'],
};

function addFault(spec) {
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new AdminError(400, 'fault must be an object');
  for (const k of Object.keys(spec)) {
    if (!FAULT_MATCH.includes(k) && !FAULT_ACTIONS.includes(k)) throw new AdminError(400, `unknown fault field: ${k}`);
  }
  const f = { ...spec };
  if (f.endpoint !== '*' && !ENDPOINTS.includes(f.endpoint)) {
    throw new AdminError(400, `endpoint must be '*' or one of ${ENDPOINTS.join(', ')}`);
  }
  f.times = spec.times ?? 1;
  if (!Number.isInteger(f.times) || (f.times < 1 && f.times !== -1)) throw new AdminError(400, 'times must be a positive integer or -1 (forever)');
  if (f.status != null && !(Number.isInteger(f.status) && f.status >= 200 && f.status <= 599)) throw new AdminError(400, 'status must be an HTTP status code');
  for (const k of ['delay_ms', 'stall_after_bytes', 'truncate_after_bytes', 'page']) if (f[k] != null) toSize(f[k], k);
  if (!['status', 'invalid_grant', 'delay_ms', 'stall_after_bytes', 'truncate_after_bytes', 'reset', 'chunked', 'redirect'].some((k) => f[k] != null && f[k] !== false)) {
    throw new AdminError(400, 'fault has no effect: give status, invalid_grant, delay_ms, stall_after_bytes, truncate_after_bytes, reset, chunked or redirect');
  }
  f.id = ++S.faultSeq;
  f.remaining = f.times;
  S.faults.push(f);
  return f;
}

function takeFault(ctx) {
  const i = S.faults.findIndex((f) => (f.endpoint === '*' || f.endpoint === ctx.endpoint)
    && (f.integration == null || f.integration === ctx.integration)
    && (f.file_id == null || f.file_id === ctx.fileId)
    && (f.page == null || Number(f.page) === ctx.page));
  if (i < 0) return null;
  const f = S.faults[i];
  if (f.remaining > 0 && --f.remaining === 0) S.faults.splice(i, 1);
  return f;
}

const snake = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '_');

// Returns true when the fault produced the whole response.
async function applyFault(ctx, f) {
  ctx.entry.fault = Object.fromEntries([['id', f.id], ...FAULT_ACTIONS.filter((k) => f[k] != null).map((k) => [k, f[k]])]);
  if (f.delay_ms) {
    await new Promise((r) => setTimeout(r, Number(f.delay_ms)));
    if (ctx.closed) return true;
  }
  if (f.reset) {
    ctx.entry.status = null;
    ctx.req.socket.destroy();
    return true;
  }
  if (f.truncate_after_bytes != null) ctx.cut = { bytes: Number(f.truncate_after_bytes), mode: 'truncate' };
  else if (f.stall_after_bytes != null) ctx.cut = { bytes: Number(f.stall_after_bytes), mode: 'stall' };
  if (f.chunked) ctx.chunked = true;
  if (f.redirect) {
    await send(ctx, f.status || 307, { Location: String(f.redirect), 'Content-Type': 'text/html; charset=UTF-8' }, 'moved');
    return true;
  }
  if (!f.status && !f.invalid_grant) return false;

  const status = f.status || 400;
  const headers = { ...(f.retry_after != null ? { 'Retry-After': String(f.retry_after) } : {}), ...(f.headers || {}) };
  if (f.body !== undefined) {
    const text = typeof f.body === 'string';
    await send(ctx, status, { 'Content-Type': text ? 'text/plain; charset=utf-8' : JSON_TYPE, ...headers }, text ? f.body : JSON.stringify(f.body));
  } else if (f.invalid_grant) {
    await oauthError(ctx, 400, 'invalid_grant', 'Token has been expired or revoked.', headers);
  } else if (ctx.endpoint === 'token') {
    const error = f.error || (status === 401 ? 'invalid_client' : status >= 500 ? 'internal_failure' : snake(http.STATUS_CODES[status] || 'error'));
    await oauthError(ctx, status, error, f.message || http.STATUS_CODES[status] || 'Error', headers);
  } else if (ctx.endpoint.startsWith('cp.')) {
    await sendJson(ctx, status, { error: f.error || f.reason || snake(http.STATUS_CODES[status] || 'error'), message: f.message }, headers);
  } else if (status === 401 && !f.reason) {
    const e = authError(headers);
    await gerr(ctx, 401, e.reason, f.message || e.message, e.extra);
  } else {
    const [dReason, dMessage] = STATUS_DEFAULTS[status] || [status >= 500 ? 'backendError' : 'badRequest', http.STATUS_CODES[status] || 'Error'];
    const reason = f.reason || dReason;
    const [rMessage, rDomain] = REASON_DEFAULTS[reason] || [];
    await gerr(ctx, status, reason, f.message || (f.reason ? rMessage : undefined) || dMessage, { domain: f.domain || rDomain, headers });
  }
  return true;
}

// ------------------------------------------------------------ admin API

function getJsonBody(ctx) {
  if (!ctx.rawBody.length) return {};
  try { return JSON.parse(ctx.rawBody); } catch { throw new AdminError(400, 'invalid JSON body'); }
}

function adminFile(id) {
  const f = S.files.get(id);
  if (!f) throw new AdminError(404, 'not_found');
  return f;
}

const ADMIN_ROUTES = [
  ['GET', /^\/health$/, () => ({ ok: true })],
  ['POST', /^\/reset$/, () => { resetState(); return { ok: true }; }],
  ['GET', /^\/config$/, () => S.config],
  ['POST', /^\/config$/, (ctx) => setConfig(getJsonBody(ctx))],
  ['GET', /^\/files$/, (ctx) => ({ files: [...S.files.values()].map((f) => fileMeta(f, baseUrl(ctx))) })],
  ['POST', /^\/files$/, (ctx) => {
    const b = getJsonBody(ctx);
    return Array.isArray(b) ? b.map((s) => fileMeta(upsertFile(s), baseUrl(ctx))) : fileMeta(upsertFile(b), baseUrl(ctx));
  }],
  ['GET', /^\/files\/([^/]+)$/, async (ctx, id) => {
    const f = adminFile(id);
    if (flag(ctx.query, 'checksums')) await ensureSums(f);
    return fileMeta(f, baseUrl(ctx));
  }],
  ['PATCH', /^\/files\/([^/]+)$/, (ctx, id) => fileMeta(patchFile(adminFile(id), getJsonBody(ctx)), baseUrl(ctx))],
  ['DELETE', /^\/files\/([^/]+)$/, (ctx, id) => {
    const f = adminFile(id);
    S.files.delete(id);
    recordChange(id, f.driveId, true);
    return { deleted: id };
  }],
  ['GET', /^\/files\/([^/]+)\/content$/, (ctx, id) => {
    const f = adminFile(id);
    return isBinary(f) ? serveBinary(ctx, f) : exportResponse(ctx, f, { limited: false, withLength: true });
  }],
  ['POST', /^\/folders\/([^/]+)\/populate$/, (ctx, folderId) => {
    const b = getJsonBody(ctx);
    const count = toSize(b.count ?? 0, 'count'), first = toSize(b.start ?? 0, 'start');
    const width = Math.max(4, String(first + count - 1).length);
    const folder = S.files.get(folderId);
    const ids = [];
    for (let i = first; i < first + count; i++) {
      ids.push(upsertFile({
        name: `${b.prefix ?? 'file-'}${String(i).padStart(width, '0')}`, mimeType: b.mimeType, size: b.size,
        seed: b.seed, exportSize: b.exportSize, parents: [folderId], driveId: b.driveId || (folder && folder.driveId),
      }).id);
    }
    return { count: ids.length, ids };
  }],
  ['POST', /^\/refresh_tokens$/, (ctx) => registerRefreshToken(getJsonBody(ctx))],
  // a service account: answers the JSON key file Google would issue
  ['POST', /^\/service_accounts$/, (ctx) => registerServiceAccount(ctx, getJsonBody(ctx))],
  ['POST', /^\/refresh_tokens\/revoke$/, (ctx) => {
    const rt = S.refreshTokens.get(String(getJsonBody(ctx).refresh_token));
    if (!rt) throw new AdminError(404, 'not_found');
    rt.revoked = true;
    return { revoked: true };
  }],
  ['POST', /^\/access_tokens\/expire$/, () => {
    for (const t of S.accessTokens.values()) t.expires = 0;
    return { expired: S.accessTokens.size };
  }],
  ['GET', /^\/faults$/, () => ({ faults: S.faults })],
  ['POST', /^\/faults$/, (ctx) => {
    const b = getJsonBody(ctx);
    return { faults: (Array.isArray(b) ? b : [b]).map(addFault) };
  }],
  ['DELETE', /^\/faults$/, () => ({ cleared: S.faults.splice(0).length })],
  ['GET', /^\/requests$/, (ctx) => {
    const q = ctx.query, ep = q.get('endpoint'), integ = q.get('integration'), since = q.has('since') ? Number(q.get('since')) : null;
    const requests = S.requests.slice(-MAX_LOG).filter((r) => (!ep || r.endpoint === ep)
      && (!integ || r.integration === integ) && (since === null || r.time_ms >= since));
    const counts = {};
    for (const r of requests) counts[r.endpoint] = (counts[r.endpoint] || 0) + 1;
    return { counts, requests };
  }],
  ['DELETE', /^\/requests$/, () => ({ cleared: S.requests.splice(0).length })],
  ['GET', /^\/concurrency$/, (ctx) => {
    const o = S.open.get(ctx.query.get('integration') ?? '');
    return o ? { open: o.now, max_open: o.max } : { open: 0, max_open: 0 };
  }],
  // Not behaviours of Google's either: how many TCP connections clients
  // opened (since the last reset), and the end of idle kept connections,
  // as a front end's keep-alive timeout ends them (Google's do, and a
  // client must open another: RFC 9112, section 9.8).
  ['GET', /^\/connections$/, () => ({ accepted: S.connections })],
  ['POST', /^\/close-idle$/, () => { server.closeIdleConnections(); return { ok: true }; }],
  ['GET', /^\/reauthorizations$/, () => ({ reauthorizations: S.reauthorizations })],
  ['GET', /^\/changes$/, () => ({ startPageToken: String(S.changes.length + 1), changes: S.changes })],
];

async function admin(ctx) {
  const path = ctx.url.pathname.slice('/__admin'.length);
  let pathMatched = false;
  for (const [method, re, fn] of ADMIN_ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    pathMatched = true;
    if (method !== ctx.req.method && !(method === 'GET' && ctx.req.method === 'HEAD')) continue;
    const out = await fn(ctx, ...m.slice(1).map(safeDecode));
    if (!ctx.res.headersSent && out !== undefined) return sendJson(ctx, 200, out);
    return;
  }
  return sendJson(ctx, pathMatched ? 405 : 404, { error: pathMatched ? 'method_not_allowed' : 'not_found' });
}

// --------------------------------------------------------------- router

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

const getOnly = (fn) => (ctx) => {
  if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') throw new ApiError(405, 'methodNotAllowed', 'Method Not Allowed');
  return fn(ctx);
};

function classify(ctx) {
  const p = ctx.url.pathname, q = ctx.query;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(ctx.req.headers.authorization || '');
  ctx.token = bearer ? bearer[1] : q.get('access_token');
  const drive = (endpoint, fn) => {
    ctx.endpoint = endpoint;
    const t = ctx.token && S.accessTokens.get(ctx.token);
    ctx.integration = t ? t.integration : null;
    ctx.subject = t ? t.subject ?? null : null;
    return getOnly(fn);
  };
  let m;
  if (/^\/(?:token|o\/oauth2\/token|oauth2\/v4\/token)$/.test(p)) {
    ctx.endpoint = 'token';
    ctx.form = parseForm(ctx);
    const rt = S.refreshTokens.get(ctx.form.refresh_token);
    ctx.integration = rt ? rt.integration : null;
    if (ctx.form.grant_type === JWT_BEARER) {
      const c = jwtClaims(ctx.form.assertion);
      ctx.integration = c && c.iss ? `sa:${c.iss}` : null;
      ctx.subject = c && c.sub != null ? String(c.sub) : null;
    }
    return handleToken;
  }
  if ((m = /^\/drive\/v3\/files\/([^/]+)(\/export)?$/.exec(p))) {
    ctx.fileId = safeDecode(m[1]);
    if (m[2]) return drive('files.export', filesExport);
    return drive(q.get('alt') === 'media' ? 'files.media' : 'files.get', filesGet);
  }
  if ((m = /^\/export-links\/([^/]+)$/.exec(p))) {
    ctx.fileId = safeDecode(m[1]);
    return drive('files.exportLink', exportLink);
  }
  if ((m = /^\/export-content\/([^/]+)$/.exec(p))) {
    ctx.fileId = safeDecode(m[1]);
    ctx.endpoint = 'files.exportContent';
    ctx.authorization = !!ctx.req.headers.authorization;
    return getOnly(exportContent);
  }
  if (p === '/drive/v3/files') {
    const pm = /'((?:[^'\\]|\\.)*)'\s+in\s+parents/.exec(q.get('q') || '');
    ctx.fileId = pm ? pm[1].replace(/\\(.)/g, '$1') : undefined;
    ctx.listToken = decodeListToken(q.get('pageToken'));
    ctx.page = ctx.listToken ? ctx.listToken.p : q.has('pageToken') ? undefined : 0;
    return drive('files.list', filesList);
  }
  if (p === '/drive/v3/changes/startPageToken') return drive('changes.startPageToken', startPageToken);
  if (p === '/drive/v3/changes') {
    ctx.page = S.changePages.get(q.get('pageToken')) ?? 0;
    return drive('changes.list', changesList);
  }
  if ((m = /^\/cp\/integrations\/([^/]+)\/(credentials|reauthorize)$/.exec(p))) {
    ctx.integration = safeDecode(m[1]);
    ctx.endpoint = 'cp.' + m[2];
    ctx.pretty = false;
    return m[2] === 'credentials' ? cpCredentials : cpReauthorize;
  }
  return null;
}

const SECRET_PARAMS = ['access_token', 'client_secret', 'refresh_token', 'code', 'key', 'assertion'];
function redactPath(url) {
  const i = url.indexOf('?');
  if (i < 0) return url;
  const sp = new URLSearchParams(url.slice(i + 1));
  if (!SECRET_PARAMS.some((k) => sp.has(k))) return url;
  for (const k of SECRET_PARAMS) if (sp.has(k)) sp.set(k, 'REDACTED');
  return `${url.slice(0, i)}?${sp}`;
}

function logRequest(ctx) {
  const e = {
    endpoint: ctx.endpoint || 'unknown', method: ctx.req.method, path: redactPath(ctx.req.url),
    status: null, time_ms: ctx.time, integration: ctx.integration ?? null,
    subject: ctx.subject ?? null, authorization: !!ctx.req.headers.authorization,
  };
  S.requests.push(e);
  if (S.requests.length > MAX_LOG + 10000) S.requests.splice(0, S.requests.length - MAX_LOG);
  return e;
}

// Not a behaviour of Google's: what a client's connection limits do, seen
// from the server. An integration's requests being answered at once (from
// the end of the request's body to the end of its response or of its
// connection), and the most there were.
function countOpen(ctx) {
  const key = ctx.integration ?? '';
  let o = S.open.get(key);
  if (!o) S.open.set(key, (o = { now: 0, max: 0 }));
  o.now++;
  if (o.now > o.max) o.max = o.now;
  let done = false;
  ctx.res.on('close', () => { if (!done) { done = true; o.now--; } });
}

function readBody(req, limit = 64 << 20) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > limit) { reject(new AdminError(413, 'request body too large')); req.destroy(); } else parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const ctx = { req, res, time: now(), closed: false, pretty: true };
  res.on('close', () => { ctx.closed = true; });
  if (OPTS.verbose) res.on('close', () => process.stderr.write(`${req.method} ${redactPath(req.url)} -> ${res.statusCode} ${ctx.endpoint || ''}\n`));
  try {
    ctx.url = new URL(req.url, 'http://localhost');
    ctx.query = ctx.url.searchParams;
    ctx.rawBody = await readBody(req);
    if (ctx.url.pathname === '/__admin' || ctx.url.pathname.startsWith('/__admin/')) {
      ctx.pretty = false;
      return await admin(ctx);
    }
    ctx.pretty = ctx.query.get('prettyPrint') !== 'false';
    const handler = classify(ctx);
    ctx.entry = logRequest(ctx);
    countOpen(ctx);
    if (!handler) throw new ApiError(404, 'notFound', 'Not Found');
    const fault = takeFault(ctx);
    if (fault && await applyFault(ctx, fault)) return;
    await handler(ctx);
  } catch (e) {
    if (ctx.closed) return;
    if (res.headersSent) { res.destroy(); return; }
    if (e instanceof ApiError) return gerr(ctx, e.code, e.reason, e.message, e.extra);
    if (e instanceof AdminError) return sendJson(ctx, e.status, { error: e.message });
    process.stderr.write(`google-emulator: ${e.stack || e}\n`);
    return gerr(ctx, 500, 'backendError', 'Backend Error');
  }
}

// ---------------------------------------------------------------- main

let PORT = OPTS.port;
resetState();
const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => { process.stderr.write(`google-emulator: ${e.stack || e}\n`); res.destroy(); });
});
// Long keep-alive so clients with pooled connections don't race our idle close.
server.keepAliveTimeout = 75000;
server.headersTimeout = 80000;
server.requestTimeout = 0;
server.on('error', (e) => die(e.message));
server.on('connection', () => { S.connections++; });
server.listen({ host: OPTS.host, port: OPTS.port, backlog: 4096 }, () => {
  PORT = server.address().port;
  process.stdout.write(`google-emulator listening on http://${OPTS.host}:${PORT}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
