#!/usr/bin/env bash
# latchkey's throughput, latency and memory next to a bare axum server (the
# ceiling), in one command:
#
#     bench/run.sh                                   # about 20 minutes
#     BENCH_ROUNDS=2 BENCH_ROUND_DURATION=2s BENCH_DURATION=2s \
#         BENCH_SESSIONS_MANY=100000 BENCH_SOAK_DURATION=70s \
#         bench/run.sh                               # smoke run, about 4 minutes
#
# Builds with the dist profile (release + fat LTO), installs wrk if missing, starts every server on a
# free loopback port with its own temporary directory, checks one request per
# line before loading it, and writes bench/results/latest.md and latest.json
# (raw wrk output in bench/results/raw/). Exits non-zero when a line failed.
#
# This machine's speed may drift by tens of percent within a minute, so the
# ratios are measured in pairs, close together in time:
#   - the five GET /profile lines compared with the ceiling (bare, SQLite,
#     PostgreSQL, PostgreSQL + Redis, forged cookie) have their servers up side
#     by side and are loaded in turn, round after round, each round starting
#     one line later; each ratio is the median over rounds of (line ÷ ceiling
#     in the same round);
#   - the argon2 capacity and the login flood alternate, round after round;
#   - the flood line measures GET /profile without the flood on the same server
#     right before each flood;
#   - the 1,000,000-session server alternates with the 1,000-session one.
#
# Settings (environment):
#   BENCH_ROUNDS=5            rounds of the five GET /profile lines
#   BENCH_ROUND_DURATION=5s   length of each load in a round (wrk -d)
#   BENCH_PAIR_ROUNDS=3       rounds of the login, flood and 1,000,000-session pairs
#                             (at most BENCH_ROUNDS unless set)
#   BENCH_DURATION=10s        length of the single loads (1,000 and 100,000 sessions)
#   BENCH_THREADS=2           wrk threads (-t)
#   BENCH_CONNECTIONS=64      wrk connections (-c)
#   BENCH_TIMEOUT=10s         wrk request timeout: logins queue behind argon2
#   BENCH_SESSIONS_FEW=1000 BENCH_SESSIONS_MID=100000 BENCH_SESSIONS_MANY=1000000
#   BENCH_COOKIE_SAMPLE=1000  how many of the seeded sessions the load spreads over (latchkey
#                             caches up to 200,000 sessions: go above that to measure the store)
#   BENCH_POSTGRES=auto       auto: measure if a server answers on 127.0.0.1:5432; off: skip
#   BENCH_REDIS=auto          auto: measure if Redis answers on 127.0.0.1:6379; off: skip
#   BENCH_REVOCATION_ROUNDS=300  sign-outs per revocation-window line
#   BENCH_SOAK_DURATION=10m   length of the soak (a steady mixed load; memory must stay flat)
#   BENCH_KEEP=1              keep the temporary directory (server logs, databases)
#   BENCH_LINES="line_flood line_locked_flood"   run only these parts (names as at the
#                             end of this file; line_sessions_many needs line_sessions_few)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/bench/results
LUA=$ROOT/bench/wrk/bench.lua
STARTED=$SECONDS

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

setting_count() { # name, value
    [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a whole number above 0, not '$2'"
}
setting_duration() { # name, value
    [[ $2 =~ ^[1-9][0-9]*[smh]?$ ]] || die "$1 must be a duration such as 5s or 2m, not '$2'"
}

DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_DURATION=${BENCH_ROUND_DURATION:-5s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
TIMEOUT=${BENCH_TIMEOUT:-10s}
SESSIONS_FEW=${BENCH_SESSIONS_FEW:-1000}
SESSIONS_MID=${BENCH_SESSIONS_MID:-100000}
SESSIONS_MANY=${BENCH_SESSIONS_MANY:-1000000}
USE_POSTGRES=${BENCH_POSTGRES:-auto}
USE_REDIS=${BENCH_REDIS:-auto}
# How many seeded sessions the session-table lines spread their requests over.
COOKIE_SAMPLE=${BENCH_COOKIE_SAMPLE:-1000}

setting_duration BENCH_DURATION "$DURATION"
setting_count BENCH_ROUNDS "$ROUNDS"
setting_duration BENCH_ROUND_DURATION "$ROUND_DURATION"
PAIR_ROUNDS=${BENCH_PAIR_ROUNDS:-$(( ROUNDS < 3 ? ROUNDS : 3 ))}
setting_count BENCH_PAIR_ROUNDS "$PAIR_ROUNDS"
setting_count BENCH_THREADS "$THREADS"
setting_count BENCH_CONNECTIONS "$CONNECTIONS"
setting_duration BENCH_TIMEOUT "$TIMEOUT"
setting_count BENCH_SESSIONS_FEW "$SESSIONS_FEW"
setting_count BENCH_SESSIONS_MID "$SESSIONS_MID"
setting_count BENCH_SESSIONS_MANY "$SESSIONS_MANY"
setting_count BENCH_COOKIE_SAMPLE "$COOKIE_SAMPLE"

USERNAME=bench
# Strong enough for latchkey's zxcvbn rule; only ever used on loopback.
PASSWORD=correct-tangerine-77-orbit
LOGIN_BODY="{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}"

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
declare -A PIDS=() # line id -> its server's pid, while it runs
FLOOD_PID=
PG_DB=
PG_ADMIN_URL=
REDIS_PREFIX=

cleanup() {
    local pid
    for pid in "$FLOOD_PID" "${PIDS[@]}"; do
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

log "building (profile dist: release with fat LTO, one codegen unit)"
cargo build --profile dist --bin latchkey --examples >&2
BIN=$ROOT/target/dist
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
        # Below Linux's ephemeral range (32768 and up), where a client
        # connection's own end (to PostgreSQL, to Redis) may hold the port
        # although nothing listens there.
        port=$(( 20000 + RANDOM % 12000 ))
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

stop_server() { # line id
    local pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$1]"
}

peak_rss_mb() { # line id: VmHWM of its server, the resident set's high-water mark, in MB
    local pid=${PIDS[$1]:-}
    [[ -n $pid && -r /proc/$pid/status ]] || return 0
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"
}

start_bare() { # line id, dir; sets URL
    mkdir -p "$2"
    "$BIN/examples/bare" 127.0.0.1:0 >"$2/stdout" 2>"$2/server.log" &
    PIDS[$1]=$!
    local addr=
    for _ in $(seq 1 100); do
        addr=$(head -n 1 "$2/stdout" 2>/dev/null || true)
        [[ -n $addr ]] && break
        sleep 0.05
    done
    [[ -n $addr ]] || { log "bare server printed no address"; return 1; }
    URL=http://$addr
    wait_healthy "$URL" "${PIDS[$1]}" "$2/server.log"
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

start_latchkey() { # line id; over LK_ENV, DIR, URL
    env "${LK_ENV[@]}" "$LATCHKEY" serve >>"$DIR/server.log" 2>&1 &
    PIDS[$1]=$!
    wait_healthy "$URL" "${PIDS[$1]}" "$DIR/server.log"
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

# Runs wrk; its BENCH_RESULT line (or null) is appended to $WORK/LINE.rounds, one
# line per round. Extra arguments are BENCH_* settings for bench/wrk/bench.lua.
load() { # line id, round name, url, duration, BENCH_VAR=value...
    local id=$1 raw=$RESULTS/raw/$2.txt url=$3 duration=$4
    shift 4
    env "$@" wrk -t"$THREADS" -c"${LOAD_CONNECTIONS:-$CONNECTIONS}" -d"$duration" --timeout "$TIMEOUT" --latency \
        -s "$LUA" "$url" >"$raw" 2>&1 || true
    local result
    result=$(grep '^BENCH_RESULT ' "$raw" | tail -n 1 | cut -d' ' -f2- || true)
    if [[ -z $result ]]; then
        log "wrk gave no result for $2:"
        tail -n 5 "$raw" >&2
        result=null
    fi
    echo "$result" >>"$WORK/$id.rounds"
}

# ---------------------------------------------------------------- records ----

# jq helpers for the records. (The $ in these are jq's, not the shell's.)
# shellcheck disable=SC2016
JQ_DEFS='
def median: map(select(. != null)) | sort | length as $n
  | if $n == 0 then null elif $n % 2 == 1 then .[($n - 1) / 2]
    else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
def rps: if . == null or (.duration_us // 0) == 0 then null
  else .requests / (.duration_us / 1e6) end;
def commas: tostring | if length <= 3 then . else (.[:-3] | commas) + "," + .[-3:] end;
def problems:
  if . == null then ["no result from wrk"]
  else [ (if .requests == 0 then "no requests" else empty end),
         (if .unexpected_status > 0 then "\(.unexpected_status) unexpected status" else empty end),
         (.socket_errors | to_entries[] | select(.value > 0) | "\(.value) socket \(.key) errors") ]
  end;
'

# One line of the table from its rounds. $pairs: the references to divide by,
# [{label, to, kind: "rps", "p50" or "p99", paired, values: [one per round]}]; $checks: more
# wrk results whose errors fail the line, [{label, results}]; $pick: the round shown
# is the one with the median requests/s ("rps") or the median first ratio ("ratio").
# shellcheck disable=SC2016
RECORD_JQ=$JQ_DEFS'
($rounds | map({ wrk: ., rps: rps,
                 p50_ms: (if . == null then null else .p50_us / 1000 end),
                 p99_ms: (if . == null then null else .p99_us / 1000 end) })) as $r
| ($r | length) as $n
| ([ $r | to_entries[] | .key as $i | .value.wrk | problems[]
     | (if $n > 1 then "round \($i + 1): " else "" end) + . ]
   + [ $checks[] | .label as $what | (.results | length) as $m | .results | to_entries[]
       | .key as $i | .value | problems[]
       | "\($what)\(if $m > 1 then " round \($i + 1)" else "" end): \(.)" ]) as $problems
| [ $pairs[] | . as $p
    | [ range(0; $n) | . as $i | $p.values[$i] as $b
        | ($r[$i] | if $p.kind == "p99" then .p99_ms elif $p.kind == "p50" then .p50_ms
                    else .rps end) as $x
        | if $b == null or $x == null or $b <= 0 then null else $x / $b end ] as $per
    | ($per | map(select(. != null))) as $got
    | { label: $p.label, to: $p.to, kind: $p.kind, paired: $p.paired, reference: $p.values,
        per_round: $per, value: ($per | median), min: ($got | min), max: ($got | max),
        rounds: ($got | length) } ] as $ratios
| (if $pick == "ratio" and ($ratios | length) > 0 then $ratios[0].per_round
   else $r | map(.rps) end) as $key
| ([ range(0; $n) | select($key[.] != null) ] | sort_by($key[.])) as $order
| (if ($order | length) == 0 then null else $order[(($order | length) - 1) / 2 | floor] end) as $m
| (if $status != "ok" then $status elif ($problems | length) > 0 then "failed" else "ok" end) as $st
| { id: $id, name: $name, status: $st,
    note: ([ (if $status == "ok" and $st == "failed" then $problems | join(", ") else empty end),
             (if $note == "" then empty else $note end) ] | join("; ")),
    rss_mb: (if $rss == "" then null else $rss | tonumber end),
    rps: ($r | map(.rps) | median),
    p50_ms: (if $m == null then null else $r[$m].p50_ms end),
    p99_ms: (if $m == null then null else $r[$m].p99_ms end),
    median_round: (if $m == null then null else $m + 1 end),
    ratios: $ratios,
    rounds: $r,
    wrk: (if $m == null then null else $r[$m].wrk end) }'

# Appends one line of the table to $LINES.
#   id, name, rounds file ($WORK/ID.rounds) or "", rss or "", status (ok, failed,
#   skipped), note, [pairs JSON], [checks JSON], [pick: rps or ratio]
record() {
    local rounds='[]'
    [[ -n $3 && -s $3 ]] && rounds=$(jq -sc . "$3")
    jq -nc --arg id "$1" --arg name "$2" --argjson rounds "$rounds" --arg rss "$4" \
        --arg status "$5" --arg note "$6" --argjson pairs "${7:-[]}" \
        --argjson checks "${8:-[]}" --arg pick "${9:-rps}" "$RECORD_JQ" >>"$LINES"
    log "$1: $(tail -n 1 "$LINES" | jq -r '.status + (if .note == "" then "" else " (\(.note))" end)')"
}

skip() { # id, name, reason
    record "$1" "$2" "" "" skipped "$3"
}

line_ok() { # id: recorded, and ok (or a reference)
    jq -se --arg id "$1" 'any(.[]; .id == $id and (.status == "ok" or .status == "reference"))' \
        "$LINES" >/dev/null
}

round_values() { # rounds file, jq expression over one wrk result -> JSON array, one per round
    jq -sc "$JQ_DEFS map(if . == null then null else ($2) end)" "$1"
}

# One reference to divide by, as a JSON array for record's pairs.
pair() { # label, id or "", kind (rps, p50 or p99), paired (true or false), values (JSON array)
    jq -nc --arg l "$1" --arg to "$2" --arg kind "$3" --argjson paired "$4" \
        --argjson values "$5" \
        '[{ label: $l, to: (if $to == "" then null else $to end), kind: $kind,
            paired: $paired, values: $values }]'
}

# --------------------------------------------- GET /profile, in rounds ----

# These lines' servers run side by side; the loads take turns, round after round.
PROFILE_LINES=(ceiling sqlite postgres redis forged)
declare -A NAME=(
    [ceiling]="bare axum GET /profile (ceiling)"
    [sqlite]="latchkey GET /profile, SQLite"
    [postgres]="latchkey GET /profile, PostgreSQL"
    [redis]="latchkey GET /profile, PostgreSQL + Redis sessions"
    [forged]="latchkey GET /profile, forged cookie (401 expected)"
)
declare -A TARGET=()    # id -> URL the rounds load, once its server passed its check
declare -A COOKIE_OF=() # id -> the latchkey cookie its loads send
declare -A EXPECT_OF=() # id -> the status its loads expect, when not 200
declare -A SETUP=()     # id -> failed or skipped, when its server is not ready
declare -A SETUP_NOTE=()

FORGED=$(forged_cookie)

not_ready() { # id, failed or skipped, reason
    SETUP[$1]=$2
    SETUP_NOTE[$1]=$3
    stop_server "$1"
    log "$1: $2 ($3)"
}

setup_ceiling() {
    log "starting: bare axum (ceiling)"
    start_bare ceiling "$WORK/bare" || { not_ready ceiling failed "server did not start"; return; }
    check_profile "" 200 || { not_ready ceiling failed "$CHECK_ERROR"; return; }
    TARGET[ceiling]=$URL/profile
}

# A latchkey server over LK_ENV, signed in, answering GET /profile.
setup_profile() { # id
    if ! start_latchkey "$1"; then
        not_ready "$1" failed "server did not start (log: $(tail -n 1 "$DIR/server.log"))"
        return
    fi
    if ! sign_in || ! check_profile "$COOKIE" 200; then
        not_ready "$1" failed "$CHECK_ERROR"; return
    fi
    TARGET[$1]=$URL/profile
    COOKIE_OF[$1]=$COOKIE
}

setup_sqlite() {
    log "starting: latchkey on SQLite"
    latchkey_env sqlite "sqlite://$WORK/sqlite/latchkey.db"
    create_user || { not_ready sqlite failed "user add failed"; return; }
    setup_profile sqlite
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

setup_postgres() {
    log "starting: latchkey on PostgreSQL"
    PG_SKIP=
    if ! postgres_ready; then
        not_ready postgres skipped "$PG_SKIP"
        not_ready redis skipped "needs PostgreSQL: $PG_SKIP"
        return
    fi
    PG_URL="postgres://$PG_USER@127.0.0.1:5432/$PG_DB"
    latchkey_env postgres "$PG_URL"
    if ! create_user; then
        not_ready postgres failed "user add failed"
    else
        setup_profile postgres
    fi
    setup_redis
}

setup_redis() {
    log "starting: latchkey on PostgreSQL + Redis"
    if [[ $USE_REDIS == off ]]; then
        not_ready redis skipped "BENCH_REDIS=off"; return
    fi
    if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
        not_ready redis skipped "no Redis on 127.0.0.1:6379"; return
    fi
    # Our own key prefix: the run's keys are found, checked and deleted afterwards.
    REDIS_PREFIX=latchkey-bench-$$
    latchkey_env redis "$PG_URL" "LATCHKEY_SESSION_STORE_URL=redis://127.0.0.1:6379/" \
        "LATCHKEY_SESSION_STORE_PREFIX=$REDIS_PREFIX"
    if ! start_latchkey redis; then
        not_ready redis skipped \
            "latchkey refused LATCHKEY_SESSION_STORE_URL: $(tail -n 1 "$DIR/server.log" | cut -c1-160)"
        return
    fi
    if grep -q 'unknown latchkey environment variable.*LATCHKEY_SESSION_STORE_URL' "$DIR/server.log"; then
        not_ready redis skipped "latchkey ignores LATCHKEY_SESSION_STORE_URL (no Redis session store yet)"
        return
    fi
    if ! sign_in; then
        not_ready redis failed "$CHECK_ERROR"; return
    fi
    if command -v redis-cli >/dev/null 2>&1 && [[ -z $(redis_keys) ]]; then
        not_ready redis failed "signed in, but no key with prefix {$REDIS_PREFIX} in Redis"
        return
    fi
    if ! check_profile "$COOKIE" 200; then
        not_ready redis failed "$CHECK_ERROR"; return
    fi
    TARGET[redis]=$URL/profile
    COOKIE_OF[redis]=$COOKIE
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

setup_forged() {
    log "starting: latchkey for the forged cookie"
    # Its own database: the forged cookie never reaches the store anyway.
    latchkey_env forged "sqlite://$WORK/forged/latchkey.db"
    start_latchkey forged || { not_ready forged failed "server did not start"; return; }
    check_profile "$FORGED" 401 || { not_ready forged failed "$CHECK_ERROR"; return; }
    TARGET[forged]=$URL/profile
    COOKIE_OF[forged]=$FORGED
    EXPECT_OF[forged]=401
}

lines_profile() {
    setup_ceiling
    setup_sqlite
    setup_postgres
    setup_forged
    local id r
    local n=${#PROFILE_LINES[@]} k
    for r in $(seq 1 "$ROUNDS"); do
        log "round $r of $ROUNDS: GET /profile, $ROUND_DURATION per line"
        # Each round starts one line later, so that every line is loaded as
        # often right after the ceiling as long after it: the machine's drift
        # within a round (tens of seconds) then favours none of them. (In a
        # fixed order the last line, the forged cookie, measured below SQLite
        # although it costs fewer instructions per request.)
        for k in $(seq 0 $(( n - 1 ))); do
            id=${PROFILE_LINES[$(( (k + r - 1) % n ))]}
            [[ -n ${TARGET[$id]:-} ]] || continue
            local settings=()
            if [[ -n ${COOKIE_OF[$id]:-} ]]; then settings+=("BENCH_COOKIE=${COOKIE_OF[$id]}"); fi
            if [[ -n ${EXPECT_OF[$id]:-} ]]; then settings+=("BENCH_EXPECT=${EXPECT_OF[$id]}"); fi
            load "$id" "$id.r$r" "${TARGET[$id]}" "$ROUND_DURATION" "${settings[@]}"
        done
    done
    local note pairs
    for id in "${PROFILE_LINES[@]}"; do
        if [[ -n ${SETUP[$id]:-} ]]; then
            record "$id" "${NAME[$id]}" "" "" "${SETUP[$id]}" "${SETUP_NOTE[$id]}"
            continue
        fi
        note=
        [[ $id == forged ]] && note="401 is the expected answer"
        pairs='[]'
        if [[ $id != ceiling ]] && line_ok ceiling; then
            pairs=$(pair ceiling ceiling rps true "$(round_values "$WORK/ceiling.rounds" rps)")
        fi
        record "$id" "${NAME[$id]}" "$WORK/$id.rounds" "$(peak_rss_mb "$id")" ok "$note" "$pairs"
    done
    for id in "${PROFILE_LINES[@]}"; do
        stop_server "$id"
    done
}

# ------------------------------------------ login flood and argon2 ----

# Every flood request is the right password for one account from one address, up to
# BENCH_CONNECTIONS at once. latchkey counts an attempt before it checks the password,
# so at the default limits (5 per account, 50 per address) the flood locks the account
# and measures 429 answers. The login and flood servers raise both limits out of reach.
FLOOD_LIMITS=(LATCHKEY_LOGIN_MAX_FAILURES=1000000 LATCHKEY_LOGIN_IP_MAX_FAILURES=1000000 LATCHKEY_LOGIN_RATE=100000000)

# The argon2 capacity's reference line, from its rounds; sets ARGON2.
record_argon2() {
    local name="argon2id capacity (cores ÷ one hash)"
    ARGON2=$(jq -sc "$JQ_DEFS"'
        map(select(. != null)) as $ok
        | if ($ok | length) == 0 then null
          else ($ok[0] | { memory_kib, iterations, parallelism, cores, hashes, buffer })
            + { rounds: length, measured: ($ok | length),
                hash_ms_median: ($ok | map(.hash_ms_median) | median),
                capacity_per_s: ($ok | map(.capacity_per_s) | median),
                parallel_per_s: ($ok | map(.parallel_per_s) | median),
                allocating: {
                  hash_ms_median: ($ok | map(.allocating.hash_ms_median) | median),
                  capacity_per_s: ($ok | map(.allocating.capacity_per_s) | median),
                  parallel_per_s: ($ok | map(.allocating.parallel_per_s) | median) },
                per_round: . }
          end' "$WORK/argon2.rounds")
    if [[ $ARGON2 == null ]] || jq -e '.measured < .rounds' <<<"$ARGON2" >/dev/null; then
        jq -nc --arg name "$name" --arg note "argon2_capacity failed: $(tail -n 1 "$WORK/argon2.log")" '
            { id: "argon2", name: $name, status: "failed", note: $note, rss_mb: null,
              rps: null, p50_ms: null, p99_ms: null, ratios: [], rounds: [], wrk: null }' >>"$LINES"
        log "argon2: failed"
        return
    fi
    local note
    note=$(jq -r '"m=\(.memory_kib) KiB t=\(.iterations) p=\(.parallelism), one buffer per thread: one hash \(.hash_ms_median * 10 | round / 10) ms × \(.cores) cores; \(.cores) threads reached \(.parallel_per_s | round)/s. Allocating per hash: \(.allocating.hash_ms_median * 10 | round / 10) ms, \(.cores) threads \(.allocating.parallel_per_s | round)/s. Medians of \(.rounds) rounds"' <<<"$ARGON2")
    jq -nc --argjson a "$ARGON2" --arg name "$name" --arg note "$note" '
        { id: "argon2", name: $name, status: "reference", note: $note, rss_mb: null,
          rps: $a.capacity_per_s, p50_ms: $a.hash_ms_median, p99_ms: null,
          ratios: [], rounds: $a.per_round, wrk: null }' >>"$LINES"
    log "argon2: $(jq -r '"\(.capacity_per_s | round)/s (\(.parallel_per_s | round)/s measured)"' <<<"$ARGON2")"
}

lines_login() {
    local id=login name="latchkey POST /login, right password (login flood)"
    log "login flood and argon2 capacity, $PAIR_ROUNDS rounds"
    local ready=1 fault=
    latchkey_env login "sqlite://$WORK/sqlite/latchkey.db" "${FLOOD_LIMITS[@]}"
    if ! start_latchkey $id; then
        ready='' fault="server did not start"
    elif ! check_login; then
        ready='' fault=$CHECK_ERROR
    fi
    : >"$WORK/argon2.rounds"
    : >"$WORK/argon2.log"
    local r
    for r in $(seq 1 "$PAIR_ROUNDS"); do
        log "round $r of $PAIR_ROUNDS: argon2 capacity, then the login flood ($ROUND_DURATION)"
        if "$BIN/examples/argon2_capacity" 40 >"$WORK/argon2.out" 2>>"$WORK/argon2.log"; then
            cat "$WORK/argon2.out" >>"$WORK/argon2.rounds"
        else
            log "argon2_capacity failed: $(tail -n 1 "$WORK/argon2.log")"
            echo null >>"$WORK/argon2.rounds"
        fi
        if [[ -n $ready ]]; then
            load $id "$id.r$r" "$URL/login" "$ROUND_DURATION" \
                BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY"
        fi
    done
    record_argon2
    if [[ -z $ready ]]; then
        record $id "$name" "" "" failed "$fault"
        stop_server $id
        return
    fi
    local pairs='[]'
    if line_ok argon2; then
        pairs=$(jq -sc '
            (map(select(. != null)) | .[0].cores) as $cores
            | [ { label: "\($cores) concurrent hashes", to: "argon2", kind: "rps", paired: true,
                  values: map(.parallel_per_s) },
                { label: "cores ÷ one hash", to: "argon2", kind: "rps", paired: true,
                  values: map(.capacity_per_s) } ]' "$WORK/argon2.rounds")
    fi
    record $id "$name" "$WORK/$id.rounds" "$(peak_rss_mb $id)" ok \
        "RSS = peak under the login flood; login limits raised" "$pairs"
    stop_server $id
}

# --------------------------------------- GET /profile under a login flood ----

line_flood() {
    local id=flood name="latchkey GET /profile during a login flood"
    log "GET /profile without, then with a login flood, $PAIR_ROUNDS rounds"
    latchkey_env flood "sqlite://$WORK/flood/latchkey.db" "${FLOOD_LIMITS[@]}"
    if ! create_user || ! start_latchkey $id; then
        record $id "$name" "" "" failed "server did not start"; stop_server $id; return
    fi
    if ! sign_in || ! check_profile "$COOKIE" 200 || ! check_login; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; stop_server $id; return
    fi
    local secs r
    secs=$(seconds_of "$ROUND_DURATION")
    for r in $(seq 1 "$PAIR_ROUNDS"); do
        log "round $r of $PAIR_ROUNDS: GET /profile alone, then during a login flood"
        if (( r > 1 )); then
            sleep 1 # the last flood's abandoned logins leave the hashing queue
        fi
        load flood_alone "flood_alone.r$r" "$URL/profile" "$ROUND_DURATION" BENCH_COOKIE="$COOKIE"
        # The flood starts first and ends last, so it covers the whole profile load.
        load flood_login "flood_login.r$r" "$URL/login" "$(( secs + 2 ))s" \
            BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY" &
        FLOOD_PID=$!
        sleep 1
        load $id "$id.r$r" "$URL/profile" "$ROUND_DURATION" BENCH_COOKIE="$COOKIE"
        wait "$FLOOD_PID" || true
        FLOOD_PID=
    done
    local note pairs checks
    note=$(jq -sr "$JQ_DEFS"'
        "logins meanwhile: \(map(rps) | median // 0 | round | commas)/s (median), \(map(.unexpected_status // 0) | add) unexpected"' \
        "$WORK/flood_login.rounds")
    note="$note; without the flood: $(jq -sr "$JQ_DEFS"'map(rps) | median // 0 | round | commas' \
        "$WORK/flood_alone.rounds") req/s (median)"
    pairs=$(pair "without flood" "" p99 true "$(round_values "$WORK/flood_alone.rounds" '.p99_us / 1000')")
    checks=$(jq -sc '[{ label: "without flood", results: . }]' "$WORK/flood_alone.rounds")
    local rss
    rss=$(peak_rss_mb $id)
    # The server's own sign-ins write to the file its change feed watches;
    # were they taken for another process's changes, every one would empty
    # the cache and the profile loads would go to SQLite. The server counts
    # the look-ups that did, and says so when it stops.
    stop_server $id
    local misses requests
    misses=$(sed -n 's/.*session look-ups that went to the store since start: \([0-9]*\).*/\1/p' \
        "$DIR/server.log" | tail -n 1)
    requests=$(jq -s 'map(.requests) | add // 0' "$WORK/flood_alone.rounds" "$WORK/$id.rounds")
    note="$note; session look-ups that went to the store: ${misses:-unknown} of $(commas "$requests") GET /profile"
    record $id "$name" "$WORK/$id.rounds" "$rss" ok "$note" "$pairs" "$checks" ratio
}

# ------------------------------ a locked address flooding invented names ----

# One client address, already locked, sends sign-ins for invented user names as fast
# as wrk can (its X-Forwarded-For believed from loopback; the per-address request limit
# raised out of reach, so that every request gets as far as the lock check). On the same
# server, without and then with that flood: GET /profile throughput (64 connections) and
# another user's sign-in latency (2 connections, one per hashing thread).
line_locked_flood() {
    local id=locked_flood login_id=locked_flood_login
    local name="latchkey GET /profile while a locked address floods invented names"
    local login_name="latchkey POST /login, another user, while a locked address floods invented names"
    log "GET /profile and sign-in without, then with a locked address's flood, $PAIR_ROUNDS rounds"
    latchkey_env $id "sqlite://$WORK/$id/latchkey.db" LATCHKEY_TRUSTED_PROXIES=127.0.0.1/32 \
        LATCHKEY_LOGIN_RATE=100000000 LATCHKEY_LOGIN_IP_MAX_FAILURES=3 \
        LATCHKEY_LOGIN_MAX_FAILURES=1000000
    local fault=
    if ! create_user || ! start_latchkey $id; then
        fault="server did not start"
    elif ! sign_in || ! check_profile "$COOKIE" 200; then
        fault=$CHECK_ERROR
    else
        local i status
        for i in 1 2 3 4; do
            status=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-For: 203.0.113.9' \
                -H 'Content-Type: application/json' -H 'Accept: application/json' \
                -d "{\"username\":\"invented$i\",\"password\":\"wrong-password-1\"}" "$URL/login")
        done
        [[ $status == 429 ]] || fault="the attacker's address did not lock (status $status)"
    fi
    if [[ -n $fault ]]; then
        record $id "$name" "" "" failed "$fault"
        record $login_id "$login_name" "" "" failed "$fault"
        stop_server $id
        return
    fi
    local secs r
    secs=$(seconds_of "$ROUND_DURATION")
    for r in $(seq 1 "$PAIR_ROUNDS"); do
        log "round $r of $PAIR_ROUNDS: alone, then during the flood"
        load locked_alone "locked_alone.r$r" "$URL/profile" "$ROUND_DURATION" BENCH_COOKIE="$COOKIE"
        LOAD_CONNECTIONS=2 load locked_login_alone "locked_login_alone.r$r" "$URL/login" \
            "$ROUND_DURATION" BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY" \
            BENCH_FORWARDED_FOR=198.51.100.7
        # The flood starts first and ends last, so it covers both loads.
        load locked_attack "locked_attack.r$r" "$URL/login" "$(( 2 * secs + 2 ))s" \
            BENCH_INVENTED_NAMES=1 BENCH_FORWARDED_FOR=203.0.113.9 BENCH_EXPECT=429 &
        FLOOD_PID=$!
        sleep 1
        load $id "$id.r$r" "$URL/profile" "$ROUND_DURATION" BENCH_COOKIE="$COOKIE"
        LOAD_CONNECTIONS=2 load $login_id "$login_id.r$r" "$URL/login" "$ROUND_DURATION" \
            BENCH_METHOD=POST BENCH_BODY="$LOGIN_BODY" BENCH_FORWARDED_FOR=198.51.100.7
        wait "$FLOOD_PID" || true
        FLOOD_PID=
    done
    local note pairs checks
    note=$(jq -sr "$JQ_DEFS"'
        "flood: \(map(rps) | median // 0 | round | commas) refused sign-ins/s (median), \(map(.unexpected_status // 0) | add) not 429"' \
        "$WORK/locked_attack.rounds")
    pairs=$(pair "without flood" "" rps true "$(round_values "$WORK/locked_alone.rounds" rps)")
    checks=$(jq -sc '[{ label: "without flood", results: . }]' "$WORK/locked_alone.rounds")
    record $id "$name" "$WORK/$id.rounds" "$(peak_rss_mb $id)" ok "$note" "$pairs" "$checks" ratio
    pairs=$(pair "without flood" "" p50 true \
        "$(round_values "$WORK/locked_login_alone.rounds" '.p50_us / 1000')")
    checks=$(jq -nc --slurpfile alone "$WORK/locked_login_alone.rounds" \
        --slurpfile flood "$WORK/locked_attack.rounds" \
        '[{ label: "without flood", results: $alone }, { label: "flood", results: $flood }]')
    record $login_id "$login_name" "$WORK/$login_id.rounds" "" ok \
        "2 connections, one per hashing thread" "$pairs" "$checks" ratio
    stop_server $id
}

# ------------------------------------------------ the revocation window ----

# Two instances on one store. Each round signs in on A, lets B cache the session,
# signs out on A, and replays the cookie against B in a tight loop from the moment A
# acknowledged: the window is how long B still accepts it (examples/revocation_window).
REVOCATION_ROUNDS=${BENCH_REVOCATION_ROUNDS:-300}
setting_count BENCH_REVOCATION_ROUNDS "$REVOCATION_ROUNDS"

line_revocation() { # id, name, database URL, whether to create the user (yes/no), extra VAR=value...
    local id=$1 name=$2 db=$3 add=$4
    shift 4
    log "line: $name"
    latchkey_env "${id}_a" "$db" LATCHKEY_LOGIN_RATE=100000000 "$@"
    if [[ $add == yes ]] && ! create_user; then
        record "$id" "$name" "" "" failed "user add failed"; return
    fi
    if ! start_latchkey "${id}_a"; then
        record "$id" "$name" "" "" failed "instance A did not start"; return
    fi
    local a=$URL
    latchkey_env "${id}_b" "$db" LATCHKEY_LOGIN_RATE=100000000 "$@"
    if ! start_latchkey "${id}_b"; then
        record "$id" "$name" "" "" failed "instance B did not start"; stop_server "${id}_a"; return
    fi
    local b=$URL
    if BENCH_PASSWORD=$PASSWORD "$BIN/examples/revocation_window" "$a" "$b" "$USERNAME" \
        "$REVOCATION_ROUNDS" >"$WORK/$id.json" 2>"$WORK/$id.log"; then
        jq -c --arg id "$id" --arg name "$name" '
            { id: $id, name: $name, status: "ok",
              note: "window after the sign-out on A, µs: p50 \(.window_us.p50), p90 \(.window_us.p90), p99 \(.window_us.p99), max \(.window_us.max); \(.rounds_with_stale) of \(.rounds) rounds had stale answers (\(.stale_requests) requests in all)",
              rss_mb: null, rps: null, p50_ms: (.window_us.p50 / 1000), p99_ms: (.window_us.p99 / 1000),
              median_round: null, ratios: [], rounds: [], wrk: null, window: . }' \
            "$WORK/$id.json" >>"$LINES"
        log "$id: $(jq -r .note <<<"$(tail -n 1 "$LINES")")"
    else
        record "$id" "$name" "" "" failed "$(tail -n 1 "$WORK/$id.log" | cut -c1-200)"
    fi
    stop_server "${id}_a"
    stop_server "${id}_b"
}

lines_revocation() {
    mkdir -p "$WORK/revocation"
    line_revocation revocation_sqlite "revocation window, two SQLite processes" \
        "sqlite://$WORK/revocation/latchkey.db" yes
    if [[ -z ${PG_URL:-} ]]; then
        PG_SKIP=
        if postgres_ready; then
            PG_URL="postgres://$PG_USER@127.0.0.1:5432/$PG_DB"
            latchkey_env revocation_pg_user "$PG_URL"
            create_user || PG_URL=
        fi
    fi
    if [[ -z ${PG_URL:-} ]]; then
        skip revocation_postgres "revocation window, PostgreSQL" "${PG_SKIP:-no PostgreSQL}"
        skip revocation_redis "revocation window, PostgreSQL + Redis" "${PG_SKIP:-no PostgreSQL}"
        return
    fi
    line_revocation revocation_postgres "revocation window, PostgreSQL" "$PG_URL" no
    if [[ $USE_REDIS == off ]] || ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
        skip revocation_redis "revocation window, PostgreSQL + Redis" "no Redis on 127.0.0.1:6379"
        return
    fi
    REDIS_PREFIX=${REDIS_PREFIX:-latchkey-bench-$$}
    line_revocation revocation_redis "revocation window, PostgreSQL + Redis" "$PG_URL" no \
        "LATCHKEY_SESSION_STORE_URL=redis://127.0.0.1:6379/" "LATCHKEY_SESSION_STORE_PREFIX=$REDIS_PREFIX"
}

# ------------------------------------------------ seeded session tables ----

sessions_name() { # count
    echo "latchkey GET /profile, $(commas "$1") sessions in SQLite"
}

# A fresh SQLite database with COUNT seeded sessions and a server on it, checked
# with one of the cookies; sets DIR, URL, SEED_NOTE, or CHECK_ERROR on failure.
sessions_server() { # id, count, sample
    local id=$1 count=$2 sample=$3
    log "line: $count sessions"
    latchkey_env "$id" "sqlite://$WORK/$id/latchkey.db"
    create_user || { CHECK_ERROR="user add failed"; return 1; }
    log "seeding $count sessions"
    if ! env "${LK_ENV[@]}" "$BIN/examples/seed_sessions" --database-url "sqlite://$DIR/latchkey.db" \
        --count "$count" --cookies "$DIR/cookies.txt" --sample "$sample" --concurrency 32 \
        >"$DIR/seed.json" 2>"$DIR/seed.log"; then
        CHECK_ERROR="seeding failed: $(tail -n 1 "$DIR/seed.log")"; return 1
    fi
    SEED_NOTE="requests spread over $(commas "$(( count < sample ? count : sample ))") of the sessions; seeded at $(commas "$(jq '.per_s | round' "$DIR/seed.json")")/s"
    start_latchkey "$id" || { CHECK_ERROR="server did not start"; stop_server "$id"; return 1; }
    check_profile "$(head -n 1 "$DIR/cookies.txt")" 200 || { stop_server "$id"; return 1; }
}

ceiling_unpaired() { # -> pairs JSON: the ceiling's median requests/s, measured minutes earlier
    if line_ok ceiling; then
        pair ceiling ceiling rps false \
            "$(jq -c 'select(.id == "ceiling") | [.rps]' "$LINES")"
    else
        echo '[]'
    fi
}

# The 1,000-session line; its server stays up for the 1,000,000-session line's pairs.
line_sessions_few() {
    local id=sessions_few name
    name=$(sessions_name "$SESSIONS_FEW")
    if ! sessions_server $id "$SESSIONS_FEW" "$COOKIE_SAMPLE"; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; return
    fi
    FEW_URL=$URL/profile
    FEW_COOKIES=$DIR/cookies.txt
    load $id $id "$FEW_URL" "$DURATION" BENCH_COOKIE_FILE="$FEW_COOKIES"
    record $id "$name" "$WORK/$id.rounds" "$(peak_rss_mb $id)" ok "$SEED_NOTE" "$(ceiling_unpaired)"
}

# Every one of these sessions is used, so all of them are live in the server's cache:
# this line's peak RSS is the memory with that many live sessions.
line_sessions_mid() {
    local id=sessions_mid name
    name=$(sessions_name "$SESSIONS_MID")
    if ! sessions_server $id "$SESSIONS_MID" "$SESSIONS_MID"; then
        record $id "$name" "" "" failed "$CHECK_ERROR"; rm -f "$DIR"/latchkey.db*; return
    fi
    load $id $id "$URL/profile" "$DURATION" BENCH_COOKIE_FILE="$DIR/cookies.txt"
    record $id "$name" "$WORK/$id.rounds" "$(peak_rss_mb $id)" ok "$SEED_NOTE" "$(ceiling_unpaired)"
    stop_server $id
    rm -f "$DIR"/latchkey.db*
}

# In rounds: the many-session server, then the 1,000-session one again.
line_sessions_many() {
    local id=sessions_many name few_label
    name=$(sessions_name "$SESSIONS_MANY")
    few_label="$(commas "$SESSIONS_FEW") sessions"
    if ! sessions_server $id "$SESSIONS_MANY" "$COOKIE_SAMPLE"; then
        record $id "$name" "" "" failed "$CHECK_ERROR"
        stop_server sessions_few; rm -f "$DIR"/latchkey.db*; return
    fi
    local r paired=
    [[ -n ${PIDS[sessions_few]:-} ]] && paired=1
    for r in $(seq 1 "$PAIR_ROUNDS"); do
        log "round $r of $PAIR_ROUNDS: $(commas "$SESSIONS_MANY") sessions${paired:+, then $few_label again}"
        load $id "$id.r$r" "$URL/profile" "$ROUND_DURATION" BENCH_COOKIE_FILE="$DIR/cookies.txt"
        if [[ -n $paired ]]; then
            load few_again "sessions_few_again.r$r" "$FEW_URL" "$ROUND_DURATION" \
                BENCH_COOKIE_FILE="$FEW_COOKIES"
        fi
    done
    local note=$SEED_NOTE pairs='[]' checks='[]'
    if [[ -n $paired ]]; then
        pairs=$(pair "$few_label" sessions_few rps true "$(round_values "$WORK/few_again.rounds" rps)")
        checks=$(jq -sc --arg l "$few_label" '[{ label: $l, results: . }]' "$WORK/few_again.rounds")
        note="$note; $few_label re-measured after each round: $(jq -sr "$JQ_DEFS"'map(rps) | median // 0 | round | commas' \
            "$WORK/few_again.rounds") req/s (median)"
    else
        note="$note; no $few_label server to pair with"
    fi
    record $id "$name" "$WORK/$id.rounds" "$(peak_rss_mb $id)" ok "$note" "$pairs" "$checks"
    stop_server $id
    stop_server sessions_few
    rm -f "$WORK"/sessions_*/latchkey.db*
}

# ----------------------------------------------------------------- soak ----

# A steady mixed load for BENCH_SOAK_DURATION on SQLite: SOAK_USERS users each
# signing in, reading /profile 20 times and signing out in a loop, while the CLI
# ends one of the first SOAK_VICTIMS users' sessions every two seconds
# (examples/soak). Every error fails the line; memory is the server's resident set
# after the first minute and at the end.
SOAK_DURATION=${BENCH_SOAK_DURATION:-10m}
SOAK_USERS=16
SOAK_VICTIMS=4

line_soak() {
    local id=soak secs
    secs=$(seconds_of "$SOAK_DURATION")
    local name="soak: $SOAK_USERS users signing in, reading and signing out, CLI revocations, ${secs}s"
    log "line: $name"
    latchkey_env $id "sqlite://$WORK/$id/latchkey.db" LATCHKEY_LOGIN_RATE=100000000
    local i
    for i in $(seq 0 $(( SOAK_USERS - 1 ))); do
        if ! echo "$PASSWORD" | env "${LK_ENV[@]}" "$LATCHKEY" user add "soak$i" --password-stdin \
            >>"$DIR/cli.log" 2>&1; then
            record $id "$name" "" "" failed "user add soak$i failed"; return
        fi
    done
    if ! start_latchkey $id; then
        record $id "$name" "" "" failed "server did not start"; stop_server $id; return
    fi
    if env "${LK_ENV[@]}" BENCH_PASSWORD="$PASSWORD" "$BIN/examples/soak" "$URL" soak \
        "$SOAK_USERS" "$SOAK_VICTIMS" "$secs" "${PIDS[$id]}" "$LATCHKEY" \
        >"$WORK/$id.json" 2>"$WORK/$id.log"; then
        jq -c --arg id "$id" --arg name "$name" '
            def commas: tostring | if length <= 3 then . else (.[:-3] | commas) + "," + .[-3:] end;
            def mb: . * 10 | round / 10;
            { id: $id, name: $name, status: (if .errors == 0 then "ok" else "failed" end),
              note: "\(.errors) errors\(if .errors > 0 then " (" + (.error_examples | join("; ")) + ")" else "" end); \(.logins | commas) sign-ins, \(.profiles | commas) GET /profile, \(.logouts | commas) sign-outs, \(.revocations) CLI revocations (\(.revoked_seen) refused their session at a read, the latest read still accepted \(.latest_stale_read_us) µs after the CLI returned); RSS after the first minute \(.rss_mb.start | mb) MB, at the end \(.rss_mb.end | mb) MB (\(.rss_mb.change * 1000 | round / 10)%), max \(.rss_mb.max | mb) MB",
              rss_mb: .rss_mb.max, rps: ((.logins + .profiles + .logouts) / .seconds),
              p50_ms: null, p99_ms: null, median_round: null, ratios: [], rounds: [], wrk: null,
              soak: . }' "$WORK/$id.json" >>"$LINES"
        log "$id: $(jq -r .note <<<"$(tail -n 1 "$LINES")")"
    else
        record $id "$name" "" "" failed "$(tail -n 1 "$WORK/$id.log" | cut -c1-200)"
    fi
    stop_server $id
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
        --arg timeout "$TIMEOUT" --arg rounds "$ROUNDS" --arg round_duration "$ROUND_DURATION" \
        --arg pair_rounds "$PAIR_ROUNDS" '
        { date: $date,
          machine: { nproc: ($nproc | tonumber), cpu: $cpu, kernel: $kernel, memory: $mem },
          latchkey_commit: $commit,
          load: { tool: $wrk, duration: $duration, threads: ($threads | tonumber),
                  connections: ($connections | tonumber), timeout: $timeout,
                  rounds: ($rounds | tonumber), round_duration: $round_duration,
                  pair_rounds: ($pair_rounds | tonumber) } }'
}

# ----------------------------------------------- forward-auth through nginx ----

# wrk → nginx → the bare axum server, four ways, taking turns round after round:
# no authentication (the ceiling of this group); auth_request to a check that
# does nothing (bare axum's GET /check: the floor any authentication server
# behind auth_request starts from, since nginx then proxies two requests for
# one); auth_request to latchkey's /auth/nginx over a keep-alive pool; and what
# one might use instead, auth_basic with a SHA-512-crypt htpasswd. nginx runs
# two workers, on the same cores.
NGINX_LINES=(nginx_open nginx_noop nginx_latchkey nginx_basic)
declare -A NGINX_NAME=(
    [nginx_open]="nginx → bare axum, no authentication (ceiling of the nginx lines)"
    [nginx_noop]="nginx auth_request → a check that lets everyone in (bare axum, empty 200), → bare axum"
    [nginx_latchkey]="nginx auth_request → latchkey /auth/nginx (SQLite), → bare axum"
    [nginx_basic]="nginx auth_basic, SHA-512-crypt htpasswd, → bare axum"
)

# A server block asking `check` (a URL in an upstream) before each request to the app.
auth_request_server() { # port, check
    cat <<CONF
    server {
        listen 127.0.0.1:$1;
        location / {
            auth_request /check;
            auth_request_set \$remote_user_from_check \$upstream_http_remote_user;
            # A proxy_set_header here drops those of the http block: the
            # keep-alive one must be said again.
            proxy_set_header Remote-User \$remote_user_from_check;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location = /check {
            internal;
            proxy_pass $2;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
            proxy_set_header X-Original-Method \$request_method;
        }
    }
CONF
}

nginx_conf() { # dir, bare address, latchkey address, four ports
    local d=$1
    mkdir -p "$d/tmp" "$d/logs"
    # Run as root, nginx would hand its workers to nobody, who cannot read
    # this private directory (the htpasswd file).
    local user=
    [[ $EUID == 0 ]] && user="user root;"
    cat >"$d/nginx.conf" <<CONF
$user
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    # keepalive_requests: nginx closes a kept connection after 1,000
    # requests by default, which at these rates is a new connection (and a
    # socket in TIME_WAIT) every few milliseconds.
    upstream app { server $2; keepalive 64; keepalive_requests 1000000; }
    upstream latchkey { server $3; keepalive 64; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:$4;
        location / { proxy_pass http://app; }
    }
$(auth_request_server "$5" http://latchkey/auth/nginx)
$(auth_request_server "$7" http://app/check)
    server {
        listen 127.0.0.1:$6;
        location / {
            auth_basic "bench";
            auth_basic_user_file $d/htpasswd;
            proxy_pass http://app;
        }
    }
}
CONF
    printf '%s:%s\n' "$USERNAME" "$(openssl passwd -6 "$PASSWORD")" >"$d/htpasswd"
}

time_wait_to() { # port: sockets in TIME_WAIT to or from it
    ss -Htan state time-wait "( sport = :$1 or dport = :$1 )" | wc -l
}

lines_nginx() {
    need nginx nginx
    need openssl openssl
    local d=$WORK/nginx id r k
    log "nginx: no authentication, auth_request to latchkey, auth_basic; $PAIR_ROUNDS rounds"
    local fault=
    start_bare nginx_upstream "$d/bare" || fault="bare server did not start"
    local bare=${URL#http://}
    latchkey_env nginx_lk "sqlite://$d/latchkey.db"
    if [[ -z $fault ]] && ! { create_user && start_latchkey nginx_lk && sign_in; }; then
        fault="latchkey did not start or sign in: ${CHECK_ERROR:-}"
    fi
    local lk=${URL#http://} lk_port=${URL##*:}
    local p_open p_lk p_basic p_noop
    p_open=$(free_port); p_lk=$(free_port); p_basic=$(free_port); p_noop=$(free_port)
    if [[ -z $fault ]]; then
        nginx_conf "$d" "$bare" "$lk" "$p_open" "$p_lk" "$p_basic" "$p_noop"
        nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' 2>>"$d/error.log" &
        PIDS[nginx]=$!
        local up=
        for _ in $(seq 1 100); do
            if curl -s -o /dev/null "http://127.0.0.1:$p_basic/"; then up=1; break; fi
            sleep 0.05
        done
        [[ -n $up ]] || fault="nginx did not start: $(tail -n 1 "$d/error.log")"
    fi
    declare -A url=([nginx_open]=http://127.0.0.1:$p_open/profile
                    [nginx_noop]=http://127.0.0.1:$p_noop/profile
                    [nginx_latchkey]=http://127.0.0.1:$p_lk/profile
                    [nginx_basic]=http://127.0.0.1:$p_basic/profile)
    local basic
    basic="Basic $(printf '%s:%s' "$USERNAME" "$PASSWORD" | base64 -w0)"
    declare -A settings=([nginx_open]="" [nginx_noop]="" [nginx_latchkey]="BENCH_COOKIE=$COOKIE"
                         [nginx_basic]="BENCH_AUTHORIZATION=$basic")
    if [[ -z $fault ]]; then
        # One request each: allowed with credentials, refused without.
        local got
        for id in "${NGINX_LINES[@]}"; do
            got=$(env ${settings[$id]:+"${settings[$id]}"} bash -c '
                curl -s -o /dev/null -w "%{http_code}" ${BENCH_COOKIE:+-H "Cookie: latchkey=$BENCH_COOKIE"} \
                    ${BENCH_AUTHORIZATION:+-H "Authorization: $BENCH_AUTHORIZATION"} "$0"' "${url[$id]}")
            [[ $got == 200 ]] || { fault="$id: one request got $got, expected 200"; break; }
        done
        got=$(curl -s -o /dev/null -w '%{http_code}' "${url[nginx_latchkey]}")
        [[ -z $fault && $got != 401 ]] && fault="nginx_latchkey without a cookie got $got, expected 401"
        got=$(curl -s -o /dev/null -w '%{http_code}' "${url[nginx_basic]}")
        [[ -z $fault && $got != 401 ]] && fault="nginx_basic without credentials got $got, expected 401"
    fi
    if [[ -n $fault ]]; then
        for id in "${NGINX_LINES[@]}"; do record "$id" "${NGINX_NAME[$id]}" "" "" failed "$fault"; done
        stop_server nginx; stop_server nginx_lk; stop_server nginx_upstream
        return
    fi
    local tw_before tw_after
    tw_before=$(time_wait_to "$lk_port")
    local n=${#NGINX_LINES[@]}
    for r in $(seq 1 "$PAIR_ROUNDS"); do
        log "round $r of $PAIR_ROUNDS: through nginx, $ROUND_DURATION per line"
        for k in $(seq 0 $(( n - 1 ))); do
            id=${NGINX_LINES[$(( (k + r - 1) % n ))]}
            # shellcheck disable=SC2086 # one VAR=value setting, or none
            load "$id" "$id.r$r" "${url[$id]}" "$ROUND_DURATION" ${settings[$id]:+"${settings[$id]}"}
        done
    done
    tw_after=$(time_wait_to "$lk_port")
    local ceiling_rps ceiling_p99 pairs note
    ceiling_rps=$(round_values "$WORK/nginx_open.rounds" rps)
    ceiling_p99=$(round_values "$WORK/nginx_open.rounds" '.p99_us / 1000')
    record nginx_open "${NGINX_NAME[nginx_open]}" "$WORK/nginx_open.rounds" "" ok "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 2 workers, keep-alive pools to the upstream and to latchkey"
    local noop_rps
    noop_rps=$(round_values "$WORK/nginx_noop.rounds" rps)
    for id in nginx_noop nginx_latchkey nginx_basic; do
        pairs=$(jq -c -s 'add' <(pair "nginx ceiling" nginx_open rps true "$ceiling_rps") \
            <(pair "nginx ceiling" nginx_open p99 true "$ceiling_p99"))
        note=
        if [[ $id == nginx_noop ]]; then
            record "$id" "${NGINX_NAME[$id]}" "$WORK/$id.rounds" "" ok "the floor: what auth_request costs nginx with a check that costs nothing" "$pairs"
        elif [[ $id == nginx_latchkey ]]; then
            pairs=$(jq -c -s 'add' <(echo "$pairs") \
                <(pair "the no-op check" nginx_noop rps true "$noop_rps"))
            note="sockets in TIME_WAIT to latchkey: $tw_before before the loads, $tw_after after (nginx keeps its connections to latchkey open); RSS is latchkey's"
            record "$id" "${NGINX_NAME[$id]}" "$WORK/$id.rounds" "$(peak_rss_mb nginx_lk)" ok "$note" "$pairs"
        else
            record "$id" "${NGINX_NAME[$id]}" "$WORK/$id.rounds" "" ok "what nginx alone offers instead: one SHA-512-crypt (5,000 rounds) per request" "$pairs"
        fi
    done
    stop_server nginx; stop_server nginx_lk; stop_server nginx_upstream
}

# ------------------------------------------------------------------ main ----

# Which lines to run (BENCH_LINES, space-separated; all by default).
wanted() { [[ -z ${BENCH_LINES:-} || " $BENCH_LINES " == *" $1 "* ]]; }

MACHINE=$(machine_json)
ARGON2=null
for part in lines_profile lines_login line_flood line_locked_flood lines_revocation \
    lines_nginx line_sessions_few line_sessions_mid line_sessions_many line_soak; do
    if wanted "$part"; then "$part"; fi
done

jq -s --argjson head "$MACHINE" --argjson argon2 "$ARGON2" --argjson elapsed "$(( SECONDS - STARTED ))" \
    '$head + { elapsed_s: $elapsed, argon2: $argon2, lines: . }' "$LINES" >"$RESULTS/latest.json"
jq -r -f "$ROOT/bench/report.jq" "$RESULTS/latest.json" >"$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "written: bench/results/latest.md, bench/results/latest.json, bench/results/raw/"

if jq -e '[.lines[] | select(.status == "failed")] | length > 0' "$RESULTS/latest.json" >/dev/null; then
    log "some lines failed"
    exit 1
fi
