#!/usr/bin/env bash
# Self-check for google-emulator.js: starts it on a free port and exercises
# OAuth, Drive, control plane, faults and the admin API with curl.
# Usage: t/emulator/selftest.sh [--bench]   (--bench adds a 1 GiB throughput run)
set -u

DIR=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
BENCH=0
[ "${1:-}" = "--bench" ] && BENCH=1

node "$DIR/google-emulator.js" --port 0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do grep -q listening "$TMP/out" && break; sleep 0.1; done
B=$(sed -n 's/^google-emulator listening on //p' "$TMP/out")
if [ -z "$B" ]; then echo "emulator did not start"; cat "$TMP/err"; exit 1; fi
echo "# emulator at $B (pid $PID)"

N=0 FAILS=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
fail() { N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"; }
is() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', expected '$3')"; fi; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }

# req METHOD PATH [curl args] -> ST (status), BODY, headers in $TMP/hdrs, CURLRC
req() {
  local m=$1 p=$2; shift 2
  ST=$(curl -s -X "$m" -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' "$@" "$B$p")
  CURLRC=$?
  BODY=""
  if [ "$(stat -c %s "$TMP/body")" -lt 1000000 ]; then BODY=$(tr -d '\000' <"$TMP/body"); fi
}
admin() { req "$1" "/__admin$2" -H 'Content-Type: application/json' ${3:+--data "$3"}; }
drive() { local p=$1; shift; req GET "$p" -H "Authorization: Bearer $AT" "$@"; }
hdr() { grep -i "^$1:" "$TMP/hdrs" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
# js EXPR [JSON] evaluates EXPR with the parsed JSON (default: last body) as d;
# one node process evaluates them all (a node start per check would be most
# of this script's time): the expression and the JSON go through files, a
# line on js.req asks, the answer comes back on js.res ended by a NUL byte
mkfifo "$TMP/js.req" "$TMP/js.res"
node -e '
  const fs = require("fs"), dir = process.argv[1];
  require("readline").createInterface({ input: process.stdin }).on("line", () => {
    let out = "";
    try {
      const d = JSON.parse(fs.readFileSync(dir + "/js.data", "utf8"));
      const v = eval(fs.readFileSync(dir + "/js.expr", "utf8"));
      out = v === undefined ? "undefined" : typeof v === "object" ? JSON.stringify(v) : String(v);
    } catch (e) {
      process.stderr.write(String(e) + "\n");
    }
    fs.writeSync(1, out + "\0");
  });' "$TMP" <"$TMP/js.req" >"$TMP/js.res" &
JSPID=$!
exec 7>"$TMP/js.req" 8<"$TMP/js.res"
trap 'kill $PID $JSPID 2>/dev/null; wait $PID $JSPID 2>/dev/null; rm -rf "$TMP"' EXIT
js() {
  local v
  printf '%s' "${2-$BODY}" >"$TMP/js.data"
  printf '%s' "$1" >"$TMP/js.expr"
  echo >&7
  IFS= read -r -d '' v <&8
  printf '%s' "$v"
}

CID=emulator-client-id.apps.googleusercontent.com CS=emulator-client-secret RT=1//emulator-refresh-token
token() { req POST /token --data-urlencode grant_type=refresh_token --data-urlencode "client_id=$1" \
  --data-urlencode "client_secret=$2" --data-urlencode "refresh_token=$3"; }

echo "# OAuth"
token "$CID" "$CS" "$RT"
is "token 200" "$ST" 200
is "token type" "$(js 'd.token_type + " " + d.expires_in + " " + d.scope')" "Bearer 3599 https://www.googleapis.com/auth/drive.readonly"
is "token no-store" "$(hdr Cache-Control)" "no-cache, no-store, max-age=0, must-revalidate"
AT=$(js d.access_token)
check "access token shape" grep -q '^ya29\.' <<<"$AT"
token "$CID" "$CS" "1//nope"
is "unknown refresh token" "$ST $(js 'd.error + ": " + d.error_description')" "400 invalid_grant: Token has been expired or revoked."
token "other.apps.googleusercontent.com" "$CS" "$RT"
is "unknown client" "$ST $(js 'd.error + ": " + d.error_description')" "401 invalid_client: The OAuth client was not found."
token "$CID" "wrong" "$RT"
is "wrong secret" "$ST $(js 'd.error + ": " + d.error_description')" "401 invalid_client: Unauthorized"
req POST /token -d grant_type=password -d "client_id=$CID"
is "unsupported grant" "$ST $(js 'd.error + ": " + d.error_description')" "400 unsupported_grant_type: Invalid grant_type: password"
req POST /token -d grant_type=refresh_token --data-urlencode "client_id=$CID" --data-urlencode "client_secret=$CS"
is "missing refresh_token" "$ST $(js d.error_description)" "400 Missing required parameter: refresh_token"

echo "# seed files"
DOC=application/vnd.google-apps.document
admin POST /files '{"id":"bin1","name":"data.bin","size":3000000,"parents":["root"],"seed":"s1"}'
is "create binary" "$ST $(js d.size)" "200 3000000"
admin POST /files "{\"id\":\"doc1\",\"name\":\"Doc\",\"mimeType\":\"$DOC\",\"parents\":[\"root\"]}"
admin POST /files "{\"id\":\"doc-big\",\"name\":\"Big doc\",\"mimeType\":\"$DOC\",\"exportSize\":10485761}"
admin POST /files "{\"id\":\"doc-edge\",\"name\":\"Edge doc\",\"mimeType\":\"$DOC\",\"exportSize\":10485760}"
admin POST /files '{"id":"shared1","name":"team.bin","size":10,"parents":["0AdriveA"],"driveId":"0AdriveA"}'
admin POST /files '{"id":"bad1","name":"malware.exe","size":100,"abusive":true}'
admin POST /files '{"id":"sc1","name":"link","mimeType":"application/vnd.google-apps.shortcut","shortcutTarget":"doc1"}'

echo "# files.get"
drive "/drive/v3/files/bin1"
is "default fields" "$(js 'Object.keys(d).join()')" "kind,id,name,mimeType"
drive "/drive/v3/files/bin1?fields=id,name,size,md5Checksum,sha256Checksum,version,parents,headRevisionId,capabilities(canDownload)"
is "selected fields" "$(js 'Object.keys(d).join()')" "id,name,parents,version,size,headRevisionId,md5Checksum,sha256Checksum,capabilities"
MD5=$(js d.md5Checksum) SHA=$(js d.sha256Checksum)
admin GET /files/bin1/content
cp "$TMP/body" "$TMP/bin1.full"
is "admin content size" "$(stat -c %s "$TMP/bin1.full")" 3000000
is "md5Checksum matches content" "$MD5" "$(md5sum <"$TMP/bin1.full" | cut -d' ' -f1)"
is "sha256Checksum matches content" "$SHA" "$(sha256sum <"$TMP/bin1.full" | cut -d' ' -f1)"
drive "/drive/v3/files/sc1?fields=shortcutDetails"
is "shortcutDetails" "$BODY" "$(printf '{\n  "shortcutDetails": {\n    "targetId": "doc1",\n    "targetMimeType": "%s"\n  }\n}' "$DOC")"
drive "/drive/v3/files/nope"
is "unknown id 404" "$ST $(js 'd.error.errors[0].reason + " " + d.error.message')" "404 notFound File not found: nope."
drive "/drive/v3/files/bin1?fields=id,bogus"
is "invalid field selection" "$ST $(js 'd.error.errors[0].reason')" "400 invalidParameter"
req GET /drive/v3/files/bin1
is "no token 401" "$ST $(js 'd.error.status + " " + d.error.errors[0].reason')" "401 UNAUTHENTICATED authError"
is "WWW-Authenticate" "$(hdr WWW-Authenticate)" 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
drive "/drive/v3/files/shared1"
is "shared drive file hidden without supportsAllDrives" "$ST" 404
drive "/drive/v3/files/shared1?supportsAllDrives=true&fields=driveId"
is "shared drive file with supportsAllDrives" "$ST $(js d.driveId)" "200 0AdriveA"

echo "# alt=media"
drive "/drive/v3/files/bin1?alt=media"
is "media 200" "$ST $(hdr Content-Length)" "200 3000000"
check "media bytes equal admin content" cmp -s "$TMP/body" "$TMP/bin1.full"
drive "/drive/v3/files/bin1?alt=media" -H "Range: bytes=1000000-1065535"
is "range 206" "$ST $(hdr Content-Range)" "206 bytes 1000000-1065535/3000000"
check "range bytes match" cmp -s "$TMP/body" <(tail -c +1000001 "$TMP/bin1.full" | head -c 65536)
drive "/drive/v3/files/bin1?alt=media" -H "Range: bytes=2999990-"
is "open range" "$ST $(stat -c %s "$TMP/body")" "206 10"
check "open range bytes match" cmp -s "$TMP/body" <(tail -c 10 "$TMP/bin1.full")
drive "/drive/v3/files/bin1?alt=media" -H "Range: bytes=3000000-"
is "unsatisfiable range" "$ST $(hdr Content-Range)" "416 bytes */3000000"
drive "/drive/v3/files/doc1?alt=media"
is "workspace file not downloadable" "$ST $(js 'd.error.errors[0].reason')" "403 fileNotDownloadable"
drive "/drive/v3/files/bad1?alt=media"
is "abusive file" "$ST $(js 'd.error.errors[0].reason')" "403 cannotDownloadAbusiveFile"
drive "/drive/v3/files/bad1?alt=media&acknowledgeAbuse=true"
is "abusive file acknowledged" "$ST" 200

echo "# export"
drive "/drive/v3/files/doc1/export?mimeType=text/plain"
is "export 200" "$ST $(hdr Content-Type) $(stat -c %s "$TMP/body")" "200 text/plain 4096"
cp "$TMP/body" "$TMP/doc1.txt"
admin GET "/files/doc1/content?mimeType=text/plain"
check "export equals admin content" cmp -s "$TMP/body" "$TMP/doc1.txt"
drive "/drive/v3/files/doc1/export?mimeType=application/pdf"
is "pdf export magic" "$(head -c 5 "$TMP/body")" "%PDF-"
drive "/drive/v3/files/doc1/export?mimeType=image/png"
is "unsupported export target" "$ST $(js 'd.error.errors[0].reason')" "400 badRequest"
drive "/drive/v3/files/bin1/export?mimeType=application/pdf"
is "binary file not exportable" "$ST $(js 'd.error.errors[0].reason')" "403 fileNotExportable"
drive "/drive/v3/files/doc-big/export?mimeType=application/pdf"
is "export over 10 MB" "$ST $(js 'd.error.errors[0].reason + ": " + d.error.message')" "403 exportSizeLimitExceeded: This file is too large to be exported."
drive "/drive/v3/files/doc-edge/export?mimeType=application/pdf"
is "export of exactly 10 MB" "$ST $(stat -c %s "$TMP/body")" "200 10485760"
drive "/drive/v3/files/doc-big?fields=exportLinks"
LINK=$(js 'd.exportLinks["application/pdf"]')
ST=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H "Authorization: Bearer $AT" "$LINK")
check "export link redirects to the content host" grep -q '^307 .*/export-content/doc-big?' <<<"$ST"
ST=$(curl -s -L -o "$TMP/big.pdf" -w '%{http_code}' -H "Authorization: Bearer $AT" "$LINK")
is "export link has no size limit" "$ST $(stat -c %s "$TMP/big.pdf")" "200 10485761"
CONTENT=$(curl -s -o /dev/null -w '%{redirect_url}' -H "Authorization: Bearer $AT" "$LINK")
is "the content host needs no token" "$(curl -s -o /dev/null -w '%{http_code}' "$CONTENT")" 200
is "a tampered content link is refused" "$(curl -s -o /dev/null -w '%{http_code}' "${CONTENT}x")" 403
is "export link without token" "$(curl -s -o /dev/null -w '%{http_code}' "$LINK")" 401
admin POST /config '{"export_limit":20000000}'
drive "/drive/v3/files/doc-big/export?mimeType=application/pdf"
is "export limit configurable" "$ST" 200
admin POST /config '{"export_limit":10485760}'

echo "# files.list"
admin POST /folders/P1/populate '{"count":250,"size":100}'
is "populate" "$ST $(js d.count)" "200 250"
EXPECT=$(js 'd.ids.slice().sort().join("\n")')
PT="" PAGES="" ALL=""
for _ in 1 2 3 4; do
  drive "/drive/v3/files" -G --data-urlencode "q='P1' in parents and trashed = false" --data-urlencode pageSize=100 \
    --data-urlencode "fields=nextPageToken,files(id,name,mimeType)" ${PT:+--data-urlencode "pageToken=$PT"}
  [ "$ST" = 200 ] || break
  PAGES="$PAGES$(js d.files.length) "
  ALL="$ALL$(js 'd.files.map(f => f.id).join("\n")')"$'\n'
  NAMES_SORTED=$(js 'd.files.every((f, i, a) => !i || a[i - 1].name < f.name)')
  [ "$NAMES_SORTED" = true ] || fail "page sorted by name"
  PT=$(js 'd.nextPageToken || ""')
  [ -z "$PT" ] && break
done
is "pages of 100" "$PAGES" "100 100 50 "
is "all ids listed once" "$(sort <<<"${ALL%$'\n'}")" "$EXPECT"
drive "/drive/v3/files?pageToken=garbage"
is "invalid pageToken" "$ST $(js 'd.error.errors[0].location')" "400 pageToken"
drive "/drive/v3/files" -G --data-urlencode "q=mimeType = '$DOC' and trashed = false"
is "mimeType query" "$(js 'd.files.map(f => f.id).join()')" "doc-big,doc1,doc-edge"
drive "/drive/v3/files" -G --data-urlencode "q=mimeType != 'application/octet-stream' and not mimeType = '$DOC'"
is "mimeType != query" "$(js 'd.files.map(f => f.id).join()')" "sc1"
drive "/drive/v3/files" -G --data-urlencode "q='0AdriveA' in parents"
is "shared drive items hidden" "$(js d.files.length)" 0
drive "/drive/v3/files?supportsAllDrives=true&includeItemsFromAllDrives=true" -G --data-urlencode "q='0AdriveA' in parents"
is "shared drive items listed" "$(js 'd.files.map(f => f.id).join()')" "shared1"
drive "/drive/v3/files" -G --data-urlencode "q=name = 'x' and and"
is "invalid q" "$ST $(js 'd.error.errors[0].reason')" "400 invalid"

echo "# changes"
drive /drive/v3/changes/startPageToken
is "startPageToken kind" "$(js d.kind)" "drive#startPageToken"
SPT=$(js d.startPageToken)
admin PATCH /files/bin1 '{"name":"renamed.bin"}'
is "rename bumps version only" "$(js 'd.version + " " + d.md5Checksum')" "2 $MD5"
REV=$(js d.headRevisionId)
admin PATCH /files/bin1 '{"content_seed":"s2"}'
is "new content bumps revision" "$(js 'd.version + " " + (d.headRevisionId !== "'"$REV"'")')" "3 true"
drive "/drive/v3/files/bin1?fields=md5Checksum"
check "new content has new md5" test "$(js d.md5Checksum)" != "$MD5"
admin DELETE /files/bad1
drive "/drive/v3/changes?pageToken=$SPT&fields=*"
is "changes listed" "$(js 'd.changes.map(c => c.fileId + ":" + c.removed).join()')" "bin1:false,bad1:true"
is "newStartPageToken" "$(js 'd.newStartPageToken + " " + (d.nextPageToken === undefined)')" "$((SPT + 3)) true"
is "changed file included" "$(js 'd.changes[0].file.name + " " + d.changes[0].file.version')" "renamed.bin 3"
drive "/drive/v3/changes?pageToken=1&pageSize=2"
# entry 1 (bin1) is superseded by its later changes, so the page holds entries 2 and 3
is "changes paging" "$(js 'd.changes.length + " " + d.nextPageToken + " " + d.newStartPageToken')" "2 4 undefined"
drive "/drive/v3/changes?pageToken=99999"
is "invalid changes token" "$ST" 400

echo "# faults"
admin POST /faults '{"endpoint":"files.get","file_id":"doc1","status":429,"retry_after":2,"reason":"rateLimitExceeded"}'
is "fault accepted" "$ST $(js 'd.faults[0].remaining')" "200 1"
drive /drive/v3/files/doc1
is "429 fault" "$ST $(js 'd.error.code + " " + d.error.errors[0].reason + " " + d.error.errors[0].domain')" "429 429 rateLimitExceeded usageLimits"
is "Retry-After" "$(hdr Retry-After)" 2
drive /drive/v3/files/doc1
is "fault consumed" "$ST" 200
admin POST /faults '{"endpoint":"files.media","status":503,"times":2}'
drive "/drive/v3/files/bin1?alt=media"; S1=$ST
drive "/drive/v3/files/bin1?alt=media"; S2=$ST
drive "/drive/v3/files/bin1?alt=media"; S3=$ST
is "503 twice then success" "$S1 $S2 $S3" "503 503 200"
admin POST /faults '[{"endpoint":"files.media","truncate_after_bytes":1000},{"endpoint":"files.get","reset":true}]'
drive "/drive/v3/files/bin1?alt=media"
is "truncated download" "$CURLRC $ST $(stat -c %s "$TMP/body") $(hdr Content-Length)" "18 200 1000 3000000"
drive "/drive/v3/files/bin1"
is "connection reset" "$CURLRC $ST" "52 000"
admin POST /faults '{"endpoint":"files.media","stall_after_bytes":100}'
drive "/drive/v3/files/bin1?alt=media" --max-time 1
is "stalled download" "$CURLRC $(stat -c %s "$TMP/body")" "28 100"
admin POST /faults '{"endpoint":"files.media","stall_after_bytes":3000000,"chunked":true}'
drive "/drive/v3/files/bin1?alt=media" --max-time 1
is "every byte of a chunked body that never ends" "$CURLRC $(stat -c %s "$TMP/body") $(hdr Content-Length)" "28 3000000 "
admin POST /faults '{"endpoint":"files.get","delay_ms":600}'
T0=$(date +%s%N); drive /drive/v3/files/bin1; T1=$(date +%s%N)
check "delayed response ($(((T1 - T0) / 1000000)) ms)" test $(((T1 - T0) / 1000000)) -ge 600
admin POST /faults '{"endpoint":"token","invalid_grant":true}'
token "$CID" "$CS" "$RT"
is "invalid_grant fault" "$ST $(js d.error)" "400 invalid_grant"
admin POST /faults '{"endpoint":"files.list","page":1,"status":500}'
drive "/drive/v3/files?pageSize=100"
PT=$(js d.nextPageToken)
drive "/drive/v3/files?pageSize=100&pageToken=$PT"
is "fault on page 1" "$ST $(js 'd.error.errors[0].reason')" "500 backendError"
drive "/drive/v3/files?pageSize=100&pageToken=$PT"
is "page 1 retried" "$ST" 200
admin POST /faults '{"endpoint":"files.get","status":403,"reason":"userRateLimitExceeded"}'
drive /drive/v3/files/bin1
is "403 userRateLimitExceeded" "$ST $(js 'd.error.message')" "403 User Rate Limit Exceeded"
admin POST /faults '{"endpoint":"*","status":401}'
drive /drive/v3/changes/startPageToken
is "401 fault" "$ST $(js 'd.error.status') $(hdr WWW-Authenticate)" '401 UNAUTHENTICATED Bearer realm="https://accounts.google.com/", error="invalid_token"'
admin POST /refresh_tokens '{"refresh_token":"1//acme-rt","integration_id":"acme","client_id":"acme.apps.googleusercontent.com","client_secret":"acme-secret"}'
token acme.apps.googleusercontent.com acme-secret 1//acme-rt
AT2=$(js d.access_token)
admin POST /faults '{"endpoint":"files.list","integration":"acme","status":502,"times":-1}'
drive "/drive/v3/files?pageSize=1"
is "integration fault skips other integrations" "$ST" 200
ST=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT2" "$B/drive/v3/files?pageSize=1")
is "integration fault hits its integration" "$ST" 502
admin GET /faults
is "pending faults" "$(js 'd.faults.map(f => f.endpoint + "/" + f.integration + "/" + f.remaining).join()')" "files.list/acme/-1"
admin DELETE /faults
admin GET /faults
is "faults cleared" "$(js d.faults.length)" 0
admin POST /faults '{"endpoint":"files.nope","status":500}'
is "bad fault rejected" "$ST" 400

echo "# token lifecycle"
admin POST /access_tokens/expire
drive /drive/v3/files/bin1
is "expired access token" "$ST" 401
token "$CID" "$CS" "$RT"; AT=$(js d.access_token)
drive /drive/v3/files/bin1
is "fresh access token" "$ST" 200
admin POST /refresh_tokens/revoke '{"refresh_token":"1//acme-rt"}'
token acme.apps.googleusercontent.com acme-secret 1//acme-rt
is "revoked refresh token" "$ST $(js d.error)" "400 invalid_grant"
admin POST /config '{"token_ttl":1}'
token "$CID" "$CS" "$RT"; AT3=$(js d.access_token)
is "token_ttl" "$(js d.expires_in)" 1
sleep 1.1
is "access token expires" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT3" "$B/drive/v3/files/bin1")" 401
admin POST /config '{"token_ttl":3599}'

echo "# control plane"
req GET /cp/integrations/default/credentials
is "default credentials" "$ST $(js '[d.integration_id, d.client_id, d.client_secret, d.refresh_token].join(" ")')" "200 default $CID $CS $RT"
req GET /cp/integrations/acme/credentials
is "registered integration" "$(js d.refresh_token)" "1//acme-rt"
req GET /cp/integrations/ghost/credentials
is "unknown integration" "$ST $BODY" '404 {"error":"not_found"}'
req POST /cp/integrations/acme/reauthorize -H 'Content-Type: application/json' --data '{"reason":"invalid_grant"}'
is "reauthorize" "$ST $(js d.status)" "202 reauthorization_requested"
admin GET /reauthorizations
is "reauthorization recorded" "$(js 'd.reauthorizations.map(r => r.integration_id + ":" + r.body.reason).join()')" "acme:invalid_grant"
admin POST /faults '{"endpoint":"cp.credentials","status":503}'
req GET /cp/integrations/default/credentials
is "control plane fault" "$ST" 503

echo "# request log"
admin DELETE /requests
SINCE=$(node -p 'Date.now()')
drive /drive/v3/files/bin1
drive /drive/v3/files/doc1
req GET "/drive/v3/files/bin1?access_token=$AT&alt=media" -H "Range: bytes=0-0"
curl -s -o /dev/null -H "Authorization: Bearer $AT2" "$B/drive/v3/files/bin1"
admin GET "/requests?since=$SINCE"
is "counts" "$(js 'JSON.stringify(d.counts)')" '{"files.get":3,"files.media":1}'
is "integration attribution" "$(js 'd.requests.map(r => r.integration).join()')" "default,default,default,acme"
is "token redacted" "$(js 'd.requests[2].path')" "/drive/v3/files/bin1?access_token=REDACTED&alt=media"
is "status logged" "$(js 'd.requests.map(r => r.status).join()')" "200,200,206,401"
admin GET "/requests?endpoint=files.get&integration=default"
is "filtered counts" "$(js 'JSON.stringify(d.counts)')" '{"files.get":2}'

echo "# concurrency"
admin POST /files '{"id":"mb1","name":"one-mib.bin","size":1048576}'
: >"$TMP/par.cfg"
for i in $(seq 200); do
  printf 'url = "%s/drive/v3/files/mb1?alt=media&n=%d"\noutput = "/dev/null"\n' "$B" "$i" >>"$TMP/par.cfg"
done
curl -s -Z --parallel-immediate --parallel-max 200 -H "Authorization: Bearer $AT" -K "$TMP/par.cfg" \
  -w '%{http_code} %{size_download}\n' >"$TMP/par.out" 2>/dev/null
is "200 concurrent downloads" "$(sort "$TMP/par.out" | uniq -c | sed 's/^ *//')" "200 200 1048576"

echo "# admin"
admin GET /health
is "health" "$ST $BODY" '200 {"ok":true}'
admin POST /reset
admin GET /files
is "reset clears files" "$(js d.files.length)" 0
token "$CID" "$CS" "$RT"
is "default refresh token after reset" "$ST" 200

if [ "$BENCH" = 1 ]; then
  echo "# benchmark"
  token "$CID" "$CS" "$RT"; AT=$(js d.access_token)
  admin POST /files '{"id":"gib","name":"1gib.bin","size":1073741824}'
  RSS0=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
  OUT=$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' -H "Authorization: Bearer $AT" "$B/drive/v3/files/gib?alt=media")
  RSS1=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
  read -r CODE SIZE SECS <<<"$OUT"
  RATE=$(awk -v s="$SIZE" -v t="$SECS" 'BEGIN { printf "%.0f", s / t / 1e6 }')
  is "1 GiB download" "$CODE $SIZE" "200 1073741824"
  echo "# 1 GiB in ${SECS}s = ${RATE} MB/s; emulator RSS ${RSS0} kB -> ${RSS1} kB"
  check "throughput > 300 MB/s" test "$RATE" -gt 300
  check "memory flat (< 64 MiB growth)" test $((RSS1 - RSS0)) -lt 65536
  T0=$(date +%s%N)
  drive "/drive/v3/files/gib?fields=md5Checksum" -o /dev/null
  echo "# md5Checksum of 1 GiB computed in $((($(date +%s%N) - T0) / 1000000)) ms"
fi

kill -0 $PID 2>/dev/null || fail "emulator still running"
if [ -s "$TMP/err" ]; then echo "# emulator stderr:"; sed 's/^/#   /' "$TMP/err"; fi
echo "1..$N"
if [ "$FAILS" -gt 0 ]; then echo "# $FAILS of $N checks failed"; exit 1; fi
echo "# all $N checks passed"
