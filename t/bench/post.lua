-- wrk: POST one ~300-byte trigger (or a batch, BATCH=n) per request, each
-- with a fresh trigger id
local batch = tonumber(os.getenv("BATCH") or "1")
local n = 0
local thread_id = 0

function setup(thread)
    thread_id = thread_id + 1
    thread:set("tid", thread_id)
end

local function trigger()
    n = n + 1
    return string.format(
        '{"trigger_id":"bench-%d-%d-%d","integration_id":"integration-%d",' ..
        '"action":"sync_file","file_id":"1aBcDeFgHiJkLmNoPqRsTuVwXyZ012345",' ..
        '"export_mime_type":"application/pdf","drive_id":"0AbCdEfGhIjKlMnOpQ",' ..
        '"requested_by":"scheduler","reason":"periodic-sync","priority":"normal",' ..
        '"attempt":0,"labels":{"team":"platform","env":"bench"}}',
        tid or 0, os.time(), n, n % 64)
end

function request()
    local body
    if batch > 1 then
        local items = {}
        for i = 1, batch do items[i] = trigger() end
        body = "[" .. table.concat(items, ",") .. "]"
    else
        body = trigger()
    end
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

local statuses = {}
function response(status)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
