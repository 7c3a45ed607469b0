#!/usr/bin/env bash
# latchkey's throughput, latency and memory next to a bare axum server (the
# ceiling), in one command:
#
#     bench/run.sh                      # 10 s per line
#     BENCH_DURATION=2s bench/run.sh    # quick smoke run
#
# Builds in release mode, installs wrk if missing, starts every server on a
# free loopback port with its own temporary directory, checks one request per
# line before loading it, and writes bench/results/latest.md and latest.json
# (raw wrk output in bench/results/raw/). Exits non-zero when a line failed.
#
# Settings (environment):
#   BENCH_DURATION=10s        length of each load (wrk -d)
#   BENCH_THREADS=2           wrk threads (-t)
#   BENCH_CONNECTIONS=64      wrk connections (-c)
#   BENCH_TIMEOUT=10s         wrk request timeout: logins queue behind argon2
#   BENCH_SESSIONS_FEW=1000 BENCH_SESSIONS_MID=100000 BENCH_SESSIONS_MANY=1000000
#   BENCH_COOKIE_SAMPLE=1000  how many of the seeded sessions the load spreads over (latchkey
#                             caches up to 200,000 sessions: go above that to measure the store)
#   BENCH_POSTGRES=auto       auto: measure if a server answers on 127.0.0.1:5432; off: skip
#   BENCH_REDIS=auto          auto: measure if Redis answers on 127.0.0.1:6379; off: skip
#   BENCH_KEEP=1              keep the temporary directory (server logs, databases)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/bench/results
LUA=$ROOT/bench/wrk/bench.lua

DURATION=${BENCH_DURATION:-10s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
TIMEOUT=${BENCH_TIMEOUT:-10s}
SESSIONS_FEW=${BENCH_SESSIONS_FEW:-1000}
SESSIONS_MID=${BENCH_SESSIONS_MID:-100000}
SESSIONS_MANY=${BENCH_SESSIONS_MANY:-1000000}
USE_POSTGRES=${BENCH_POSTGRES:-auto}
USE_REDIS=${BENCH_REDIS:-auto}

USERNAME=bench
# Strong enough for latchkey's zxcvbn rule; only ever used on loopback.
PASSWORD=correct-tangerine-77-orbit
LOGIN_BODY="{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}"
# How many seeded sessions the session-table lines spread their requests over.
COOKIE_SAMPLE=${BENCH_COOKIE_SAMPLE:-1000}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ---------------------------------------------------------------- tools ----

need() { # command, Debian package
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    if [[ -z ${APT_UPDATED:-} ]]; then
        apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2 || die "cannot install $2"
}

commas() { # 1000000 -> 1,000,000
    echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'
}

seconds_of() { # wrk duration (10, 10s, 2m, 1h) -> whole seconds
    local d=$1
    case $d in
        *h) echo $(( ${d%h} * 3600 )) ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}

# ------------------------------------------------------------ the run ----

WORK=$(mktemp -d -t latchkey-bench.XXXXXX)
SERVER_PID=
FLOOD_PID=
PG_DB=
PG_ADMIN_URL=
REDIS_PREFIX=

cleanup() {
    local pid
    for pid in "$FLOOD_PID" "$SERVER_PID"; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    redis_cleanup || log "could not delete the Redis keys {$REDIS_PREFIX}:*"
    if [[ -n $PG_DB ]]; then
        psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 ||
            log "could not drop database $PG_DB"
    fi
    if [[ -n ${BENCH_KEEP:-} ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need wrk wrk
need curl curl
need jq jq

log "building (release)"
cargo build --release --bin latchkey --examples >&2
BIN=$ROOT/target/release
LATCHKEY=$BIN/latchkey

mkdir -p "$RESULTS"
rm -rf "$RESULTS/raw"
mkdir -p "$RESULTS/raw"
LINES=$WORK/lines.jsonl
: >"$LINES"
SECRET=$(head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')

# -------------------------------------------------------------- servers ----

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$(( 20000 + RANDOM % 40000 ))
        # Nothing listening there: the connection is refused.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

wait_healthy() { # url, pid, log file
    for _ in $(seq 1 300); do
        if ! kill -0 "$2" 2>/dev/null; then
            log "server exited during start-up; its log:"
            tail -n 5 "$3" >&2 || true
            return 1
        fi
        if curl -sf -o /dev/null "$1/healthz"; then
            return 0
        fi
        sleep 0.1
    done
    log "server did not become healthy in 30 s"
    return 1
}

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

peak_rss_mb() { # pid: VmHWM, the resident set's high-water mark, in MB
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

start_bare() { # dir
    mkdir -p "$1"
    "$BIN/examples/bare" 127.0.0.1:0 >"$1/stdout" 2>"$1/server.log" &
    SERVER_PID=$!
    local addr=
    for _ in $(seq 1 100); do
        addr=$(head -n 1 "$1/stdout" 2>/dev/null || true)
        [[ -n $addr ]] && break
        sleep 0.05
    done
    [[ -n $addr ]] || { log "bare server printed no address"; return 1; }
    URL=http://$addr
    wait_healthy "$URL" "$SERVER_PID" "$1/server.log"
}

# latchkey's settings for one database, in LK_ENV; sets DIR, URL.
latchkey_env() { # name, database URL, extra VAR=value...
    DIR=$WORK/$1
    mkdir -p "$DIR"
    local port
    port=$(free_port)
    URL=http://127.0.0.1:$port
    LK_ENV=(
        "LATCHKEY_BIND=127.0.0.1:$port"
        "LATCHKEY_PUBLIC_URL=$URL"
        "LATCHKEY_DATABASE_URL=$2"
        "LATCHKEY_SECRET=$SECRET"
        "NO_COLOR=1"
    )
    LK_ENV+=("${@:3}")
}

create_user() {
    echo "$PASSWORD" | env "${LK_ENV[@]}" "$LATCHKEY" user add "$USERNAME" --role admin \
        --password-stdin >>"$DIR/cli.log" 2>&1 ||
        { log "user add failed:"; tail -n 3 "$DIR/cli.log" >&2; return 1; }
}

start_latchkey() {
    env "${LK_ENV[@]}" "$LATCHKEY" serve >>"$DIR/server.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$URL" "$SERVER_PID" "$DIR/server.log"
}

# ------------------------------------------------------ one-request checks ----

# Sets CHECK_ERROR when the answer is not the expected one.
check_answer() { # what, expected status, got status, body file, jq test
    CHECK_ERROR=
    if [[ $3 != "$2" ]]; then
        CHECK_ERROR="$1: status $3, expected $2"
    elif ! jq -e "$5" "$4" >/dev/null 2>&1; then
        CHECK_ERROR="$1: unexpected body $(head -c 200 "$4")"
    fi
    [[ -z $CHECK_ERROR ]]
}

PROFILE_JSON='.username == "bench" and .roles == ["admin"] and (.csrf_token | length) == 43
    and (.signed_in_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"))'
LOGIN_JSON='.username == "bench" and .roles == ["admin"] and (.csrf_token | length) == 43'
REFUSED_JSON='.error == "not_authenticated"'

check_profile() { # cookie value or "", expected status
    local status
    status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -H 'Accept: application/json' \
        ${1:+-H "Cookie: latchkey=$1"} "$URL/profile")
    if [[ $2 == 200 ]]; then
        check_answer "GET /profile" 200 "$status" "$WORK/answer" "$PROFILE_JSON"
    else
        check_answer "GET /profile" "$2" "$status" "$WORK/answer" "$REFUSED_JSON"
    fi
}

check_login() {
    local status
    status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'Accept: application/json' -d "$LOGIN_BODY" "$URL/login")
    check_answer "POST /login" 200 "$status" "$WORK/answer" "$LOGIN_JSON"
}

sign_in() { # sets COOKIE
    COOKIE=
    local status
    status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -c "$WORK/jar" \
        -H 'Content-Type: application/json' -H 'Accept: application/json' \
        -d "$LOGIN_BODY" "$URL/login")
    check_answer "sign-in" 200 "$status" "$WORK/answer" "$LOGIN_JSON" || return 1
    COOKIE=$(awk '$6 == "latchkey" { print $7 }' "$WORK/jar")
    [[ -n $COOKIE ]] || { CHECK_ERROR="sign-in: no latchkey cookie"; return 1; }
}

# A well-formed cookie of the right length whose signature is not the server's.
forged_cookie() {
    local a b
    a=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')
    b=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')
    echo "$a.$b"
}

# ------------------------------------------------------------------ load ----

# Runs wrk; its BENCH_RESULT line goes to $WORK/NAME.json. Extra arguments are
# BENCH_* settings for bench/wrk/bench.lua.
load() { # name, url, [duration], BENCH_VAR=value...
    local name=$1 url=$2 duration=$DURATION
    shift 2
    if [[ ${1:-} =~ ^[0-9]+[smh]?$ ]]; then
        duration=$1
        shift
    fi
    env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout "$TIMEOUT" --latency \
        -s "$LUA" "$url" >"$RESULTS/raw/$name.txt" 2>&1 || true
    grep '^BENCH_RESULT ' "$RESULTS/raw/$name.txt" | tail -n 1 | cut -d' ' -f2- >"$WORK/$name.json"
    if [[ ! -s $WORK/$name.json ]]; then
        log "wrk gave no result for $name:"
        tail -n 5 "$RESULTS/raw/$name.txt" >&2
        echo null >"$WORK/$name.json"
    fi
}

# Appends one line of the table to $LINES.
#   id, name, result file or "", rss or "", status (ok/failed/skipped), note,
#   compare (JSON: {"rps_to": ID} | {"p99_to": ID} | {"rps_to_value": N}, each with
#   "label": what the ratio is to; or null)
record() {
    local result=null
    [[ -n $3 && -s $3 ]] && result=$(cat "$3")
    local status=$5 note=$6
    if [[ $status == ok && $result == null ]]; then
        status=failed
        note="no result from wrk${note:+; $note}"
    elif [[ $status == ok ]]; then
        local problems
        problems=$(jq -r '
            [ (if .requests == 0 then "no requests" else empty end),
              (if .unexpected_status > 0 then "\(.unexpected_status) unexpected status" else empty end),
              (.socket_errors | to_entries[] | select(.value > 0) | "\(.value) socket \(.key) errors")
            ] | join(", ")' <<<"$result")
        if [[ -n $problems ]]; then
            status=failed
            note="$problems${note:+; $note}"
        fi
    fi
    jq -nc --arg id "$1" --arg name "$2" --argjson result "$result" --arg rss "$4" \
        --arg status "$status" --arg note "$note" --argjson compare "${7:-null}" '
        { id: $id, name: $name, status: $status, note: $note, compare: $compare,
          rss_mb: (if $rss == "" then null else ($rss | tonumber) end),
          wrk: $result,
          rps: (if $result == null then null else $result.requests / ($result.duration_us / 1e6) end),
          p50_ms: (if $result == null then null else $result.p50_us / 1000 end),
          p99_ms: (if $result == null then null else $result.p99_us / 1000 end) }' >>"$LINES"
    log "$1: $status${note:+ ($note)}"
}

skip() { # id, name, reason
    record "$1" "$2" "" "" skipped "$3"
}

# ------------------------------------------------------------------ lines ----

FORGED=$(forged_cookie)

line_ceiling() {
    log "line: bare axum (ceiling)"
    if ! start_bare "$WORK/bare"; then
        record ceiling "bare axum GET /profile (ceiling)" "" "" failed "server did not start"
        stop_server; return
    fi
    if ! check_profile "" 200; then
        record ceiling "bare axum GET /profile (ceiling)" "" "" failed "$CHECK_ERROR"
        stop_server; return
    fi
    load ceiling "$URL/profile"
    record ceiling "bare axum GET /profile (ceiling)" "$WORK/ceiling.json" \
        "$(peak_rss_mb "$SERVER_PID")" ok "" null
    stop_server
}

# GET /profile with one valid cookie on a fresh server over LK_ENV.
profile_line() { # id, name
    if ! start_latchkey; then
        record "$1" "$2" "" "" failed "server did not start (log: $(tail -n 1 "$DIR/server.log"))"
        stop_server; return
    fi
    profile_load "$1" "$2"
}

# The same, on the server already started.
profile_load() { # id, name
    if ! sign_in || ! check_profile "$COOKIE" 200; then
        record "$1" "$2" "" "" failed "$CHECK_ERROR"
        stop_server; return
    fi
    load "$1" "$URL/profile" BENCH_COOKIE="$COOKIE"
    record "$1" "$2" "$WORK/$1.json" "$(peak_rss_mb "$SERVER_PID")" ok "" '{"rps_to":"ceiling","label":"ceiling"}'
    stop_server
}

line_sqlite() {
    log "line: latchkey on SQLite"
    latchkey_env sqlite "sqlite://$WORK/sqlite/latchkey.db"
    if ! create_user; then
        record sqlite "latchkey GET /profile, SQLite" "" "" failed "user add failed"
        return
    fi
    profile_line sqlite "latchkey GET /profile, SQLite"
}

postgres_ready() { # sets PG_ADMIN_URL and PG_DB, creates the database
    [[ $USE_POSTGRES == off ]] && { PG_SKIP="BENCH_POSTGRES=off"; return 1; }
    command -v psql >/dev/null 2>&1 || { PG_SKIP="no psql client"; return 1; }
    local user
    for user in postgres root; do
        if psql "postgres://$user@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null 2>&1; then
            PG_ADMIN_URL="postgres://$user@127.0.0.1:5432/postgres"
            PG_USER=$user
            break
        fi
    done
    [[ -n $PG_ADMIN_URL ]] || { PG_SKIP="no PostgreSQL with trust auth on 127.0.0.1:5432"; return 1; }
    PG_DB=latchkey_bench_$$
    psql "$PG_ADMIN_URL" -qAtc "CREATE DATABASE $PG_DB" >/dev/null ||
        { PG_SKIP="cannot create database $PG_DB"; PG_DB=; return 1; }
}

line_postgres() {
    log "line: latchkey on PostgreSQL"
    PG_SKIP=
    if ! postgres_ready; then
        skip postgres "latchkey GET /profile, PostgreSQL" "$PG_SKIP"
        skip redis "latchkey GET /profile, PostgreSQL + Redis sessions" "needs PostgreSQL: $PG_SKIP"
        return
    fi
    PG_URL="postgres://$PG_USER@127.0.0.1:5432/$PG_DB"
    latchkey_env postgres "$PG_URL"
    if ! create_user; then
        record postgres "latchkey GET /profile, PostgreSQL" "" "" failed "user add failed"
    else
        profile_line postgres "latchkey GET /profile, PostgreSQL"
    fi
    line_redis
}

line_redis() {
    local id=redis name="latchkey GET /profile, PostgreSQL + Redis sessions"
    log "line: latchkey on PostgreSQL + Redis"
    if [[ $USE_REDIS == off ]]; then
        skip $id "$name" "BENCH_REDIS=off"; return
    fi
    if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
        skip $id "$name" "no Redis on 127.0.0.1:6379"; return
    fi
    # Our own key prefix: the run's keys are found, checked and deleted afterwards.
    REDIS_PREFIX=latchkey-bench-$$
    latchkey_env redis "$PG_URL" "LATCHKEY_SESSION_STORE_URL=redis://127.0.0.1:6379/" \
        "LATCHKEY_SESSION_STORE_PREFIX=$REDIS_PREFIX"
    if ! start_latchkey; then
        skip $id "$name" "latchkey refused LATCHKEY_SESSION_STORE_URL: $(tail -n 1 "$DIR/server.log" | cut -c1-160)"
        stop_server; return
    fi
    if grep -q 'unknown latchkey environment variable.*LATCHKEY_SESSION_STORE_URL' "$DIR/server.log"; then
        skip $id "$name" "latchkey ignores LATCHKEY_SESSION_STORE_URL (no Redis session store yet)"
        stop_server; return
    fi
    if ! sign_in; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; stop_server; return
    fi
    if command -v redis-cli >/dev/null 2>&1 && [[ -z $(redis_keys) ]]; then
        record $id "$name" "" "" failed "signed in, but no key with prefix {$REDIS_PREFIX} in Redis"
        stop_server; return
    fi
    profile_load $id "$name"
}

redis_keys() {
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "{$REDIS_PREFIX}:*" 2>/dev/null
}

redis_cleanup() {
    [[ -n $REDIS_PREFIX ]] && command -v redis-cli >/dev/null 2>&1 || return 0
    local key
    redis_keys | while IFS= read -r key; do
        redis-cli -h 127.0.0.1 -p 6379 del "$key" >/dev/null
    done
}

line_forged() {
    local id=forged name="latchkey GET /profile, forged cookie (401 expected)"
    log "line: forged cookie"
    latchkey_env forged "sqlite://$WORK/sqlite/latchkey.db"
    if ! start_latchkey; then
        record $id "$name" "" "" failed "server did not start"; stop_server; return
    fi
    if ! check_profile "$FORGED" 401; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; stop_server; return
    fi
    load $id "$URL/profile" BENCH_COOKIE="$FORGED" BENCH_EXPECT=401
    record $id "$name" "$WORK/$id.json" "$(peak_rss_mb "$SERVER_PID")" ok \
        "every answer 401, as expected" '{"rps_to":"ceiling","label":"ceiling"}'
    stop_server
}

line_argon2() {
    log "line: argon2 capacity"
    local out=$WORK/argon2.json
    if ! "$BIN/examples/argon2_capacity" 40 >"$out" 2>"$WORK/argon2.log"; then
        ARGON2=null
        record argon2 "argon2id capacity (cores ÷ one hash)" "" "" failed "$(tail -n 1 "$WORK/argon2.log")"
        return
    fi
    ARGON2=$(cat "$out")
    local note
    note=$(jq -r '"m=\(.memory_kib) KiB t=\(.iterations) p=\(.parallelism): one hash \(.hash_ms_median * 10 | round / 10) ms × \(.cores) cores; \(.cores) threads reached \(.parallel_per_s | round)/s"' "$out")
    jq -nc --argjson a "$ARGON2" --arg note "$note" '
        { id: "argon2", name: "argon2id capacity (cores ÷ one hash)", status: "reference",
          note: $note, compare: null, rss_mb: null, wrk: null,
          rps: $a.capacity_per_s, p50_ms: $a.hash_ms_median, p99_ms: null }' >>"$LINES"
}

line_login() {
    local id=login name="latchkey POST /login, right password (login flood)"
    log "line: login throughput"
    latchkey_env login "sqlite://$WORK/sqlite/latchkey.db"
    if ! start_latchkey; then
        record $id "$name" "" "" failed "server did not start"; stop_server; return
    fi
    if ! check_login; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; stop_server; return
    fi
    load $id "$URL/login" BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY"
    local compare=null
    if [[ $ARGON2 != null ]]; then
        compare=$(jq -c '{rps_to_value: .capacity_per_s, label: "argon2 capacity"}' <<<"$ARGON2")
    fi
    record $id "$name" "$WORK/$id.json" "$(peak_rss_mb "$SERVER_PID")" ok \
        "RSS = peak under the login flood" "$compare"
    stop_server
}

line_flood() {
    local id=flood name="latchkey GET /profile during a login flood"
    log "line: profile latency under a login flood"
    latchkey_env flood "sqlite://$WORK/sqlite/latchkey.db"
    if ! start_latchkey; then
        record $id "$name" "" "" failed "server did not start"; stop_server; return
    fi
    if ! sign_in || ! check_profile "$COOKIE" 200 || ! check_login; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; stop_server; return
    fi
    # The flood starts first and ends last, so it covers the whole profile load.
    local secs
    secs=$(seconds_of "$DURATION")
    load flood_login "$URL/login" "$(( secs + 2 ))s" BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY" &
    FLOOD_PID=$!
    sleep 1
    load $id "$URL/profile" BENCH_COOKIE="$COOKIE"
    wait "$FLOOD_PID" || true
    FLOOD_PID=
    local note
    note=$(jq -r 'if . == null then "login flood gave no result"
        else "logins meanwhile: \(.requests / (.duration_us / 1e6) | round)/s, \(.unexpected_status) unexpected"
        end' "$WORK/flood_login.json")
    record $id "$name" "$WORK/$id.json" "$(peak_rss_mb "$SERVER_PID")" ok "$note" '{"p99_to":"sqlite","label":"without flood"}'
    stop_server
}

# GET /profile spread over SAMPLE (default COOKIE_SAMPLE) of COUNT seeded sessions.
line_sessions() { # id, count, compare, [sample]
    local id=$1 count=$2 sample=${4:-$COOKIE_SAMPLE}
    local name
    name="latchkey GET /profile, $(commas "$count") sessions in SQLite"
    log "line: $count sessions"
    latchkey_env "$id" "sqlite://$WORK/$id/latchkey.db"
    if ! create_user; then
        record "$id" "$name" "" "" failed "user add failed"; return
    fi
    log "seeding $count sessions"
    if ! env "${LK_ENV[@]}" "$BIN/examples/seed_sessions" --database-url "sqlite://$DIR/latchkey.db" \
        --count "$count" --cookies "$DIR/cookies.txt" --sample "$sample" --concurrency 32 \
        >"$DIR/seed.json" 2>"$DIR/seed.log"; then
        record "$id" "$name" "" "" failed "seeding failed: $(tail -n 1 "$DIR/seed.log")"; return
    fi
    local note
    note="requests spread over $(commas "$(( count < sample ? count : sample ))") of the sessions; seeded at $(commas "$(jq '.per_s | round' "$DIR/seed.json")")/s"
    if ! start_latchkey; then
        record "$id" "$name" "" "" failed "server did not start"; stop_server; return
    fi
    if ! check_profile "$(head -n 1 "$DIR/cookies.txt")" 200; then
        record "$id" "$name" "" "" failed "$CHECK_ERROR"; stop_server; return
    fi
    load "$id" "$URL/profile" BENCH_COOKIE_FILE="$DIR/cookies.txt"
    record "$id" "$name" "$WORK/$id.json" "$(peak_rss_mb "$SERVER_PID")" ok "$note" "$3"
    stop_server
    rm -f "$DIR"/latchkey.db*
}

# -------------------------------------------------------------- machine ----

machine_json() {
    local cpu mem commit
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
        commit="$commit+changes"
    fi
    jq -nc --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg nproc "$(nproc)" --arg cpu "$cpu" \
        --arg kernel "$(uname -sr)" --arg mem "$mem" --arg commit "$commit" \
        --arg wrk "$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')" \
        --arg duration "$DURATION" --arg threads "$THREADS" --arg connections "$CONNECTIONS" \
        --arg timeout "$TIMEOUT" '
        { date: $date,
          machine: { nproc: ($nproc | tonumber), cpu: $cpu, kernel: $kernel, memory: $mem },
          latchkey_commit: $commit,
          load: { tool: $wrk, duration: $duration, threads: ($threads | tonumber),
                  connections: ($connections | tonumber), timeout: $timeout } }'
}

# ------------------------------------------------------------------ main ----

MACHINE=$(machine_json)
ARGON2=null
line_ceiling
line_sqlite
line_postgres
line_forged
line_argon2
line_login
line_flood
line_sessions sessions_few "$SESSIONS_FEW" '{"rps_to":"ceiling","label":"ceiling"}'
# Every one of these sessions is used, so all of them are live in the server's cache:
# this line's peak RSS is the memory with that many live sessions.
line_sessions sessions_mid "$SESSIONS_MID" '{"rps_to":"ceiling","label":"ceiling"}' "$SESSIONS_MID"
line_sessions sessions_many "$SESSIONS_MANY" \
    "$(jq -nc --arg l "$(commas "$SESSIONS_FEW") sessions" '{rps_to: "sessions_few", label: $l}')"

jq -s --argjson head "$MACHINE" --argjson argon2 "$ARGON2" \
    '$head + { argon2: $argon2, lines: . }' "$LINES" >"$RESULTS/latest.json"
jq -r -f "$ROOT/bench/report.jq" "$RESULTS/latest.json" >"$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "written: bench/results/latest.md, bench/results/latest.json, bench/results/raw/"

if jq -e '[.lines[] | select(.status == "failed")] | length > 0' "$RESULTS/latest.json" >/dev/null; then
    log "some lines failed"
    exit 1
fi
