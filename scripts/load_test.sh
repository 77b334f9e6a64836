#!/usr/bin/env bash
# Load test of `imram serve` on loopback with wrk: a mix of valid queries (text searches with
# captions of the split, caption searches by image) at 1, 4 and 16 connections, DURATION
# seconds each; requests/s, p50/p99 latency, errors, and the server's RSS before and after.
# Usage: scripts/load_test.sh IMRAM MODEL DATA [SPLIT] [DURATION_SECONDS]
# SERVE_OPTIONS (environment) go to `imram serve`, e.g. SERVE_OPTIONS="--max-batch 1".
set -euo pipefail
IMRAM=${1:?usage: load_test.sh IMRAM MODEL DATA [SPLIT] [DURATION_SECONDS]}
MODEL=${2:?model directory}
DATA=${3:?dataset directory}
SPLIT=${4:-test}
DURATION=${5:-300}
command -v wrk >/dev/null || { echo "load_test: wrk not found (Debian package wrk; ./run setup)" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [[ -n "$SERVER" ]] && kill -TERM "$SERVER" 2>/dev/null; then
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck disable=SC2086
"$IMRAM" serve --model "$MODEL" --data "$DATA" --split "$SPLIT" --port 0 --cache "$WORK/cache" ${SERVE_OPTIONS:-} \
  > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 600); do
  grep -q "listening on" "$WORK/server.log" && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/server.log")
[[ -n "$PORT" ]] || { echo "load_test: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
IMAGES=$(curl -fsS "http://127.0.0.1:$PORT/api/info" | sed -n 's/.*"images":\([0-9]*\).*/\1/p')

# Request bodies for wrk: 4 text queries (the split's first captions, JSON-escaped) for each
# image query.
{
  echo "bodies = {"
  head -n 200 "$DATA/${SPLIT}_caps.txt" | awk -v images="$IMAGES" '{
    gsub(/\\/, "\\\\\\\\"); gsub(/"/, "\\\\\""); gsub(/\r/, "");
    printf "  [[{\"text\": \"%s\", \"top\": %d}]],\n", $0, 5 + (NR % 4) * 5;
    if (NR % 4 == 0) printf "  [[{\"image\": %d, \"top\": 10}]],\n", NR % images;
  }'
  cat <<'LUA'
}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/api/search", nil, bodies[(counter % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %.1f, "requests_per_s": %.1f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
LUA
} > "$WORK/mix.lua"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
# Warm up once (first requests touch every page of the gallery), then measure.
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"text": "a red circle", "top": 10}' \
  "http://127.0.0.1:$PORT/api/search" > /dev/null
RSS_BEFORE=$(rss_kb)
echo "load_test: $IMAGES images, serve options '${SERVE_OPTIONS:-}', $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), ${DURATION}s per level"
for connections in 1 4 16; do
  threads=$(( connections < 2 ? 1 : 2 ))
  result=$(wrk -t "$threads" -c "$connections" -d "${DURATION}s" --timeout 30s -s "$WORK/mix.lua" "http://127.0.0.1:$PORT" |
           grep '^{')
  echo "{\"connections\": $connections, ${result#\{}"
done
RSS_AFTER=$(rss_kb)
echo "{\"rss_kb_before\": $RSS_BEFORE, \"rss_kb_after\": $RSS_AFTER}"
