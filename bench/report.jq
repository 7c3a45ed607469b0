# Renders bench/results/latest.json (written by bench/run.sh) as Markdown.

def round_to(n): if . == null then null else . * pow(10; n) | round / pow(10; n) end;
def commas: tostring | if length <= 3 then . else (.[:-3] | commas) + "," + .[-3:] end;
def pad(n): if length >= n then . else . + ("0" * (n - length)) end;
def fixed(n):
  round_to(n) | tostring | split(".")
  | (.[0] | commas) + (if n == 0 then "" else "." + ((.[1] // "") | pad(n)) end);
def num(n): if . == null then "–" else fixed(n) end;
def cell: tostring | gsub("\\|"; "\\|") | gsub("\n"; " ");
def plural(n; word): "\(n) \(word)\(if n == 1 then "" else "s" end)";

# "0.87×", then the spread over rounds of a paired ratio, or "unpaired".
def spread: if .paired | not then ", unpaired"
  elif .rounds > 1 then " (\(.min | fixed(2))–\(.max | fixed(2)))" else "" end;
def factor: "\(.value | fixed(2))×";

. as $r
| ($r.lines | map({ key: .id, value: . }) | from_entries) as $by
| def line(id): $by[id] // null;
  def ok(id): (line(id).status // "") as $s | $s == "ok" or $s == "reference";
  # A line's ratios, once it and what it is compared with are fine.
  def ratios($l):
    if $l.status != "ok" then []
    else [ ($l.ratios // [])[] | select(.value != null and (.to == null or ok(.to))) ] end;
  def ratio_cell($l):
    [ ratios($l)[] | (if .kind == "rps" then "" else "\(.kind) " end) + "\(factor) \(.label)\(spread)" ]
    | join("; ");
  def check($l):
    if $l.status == "ok" then "ok" + (if $l.note != "" then ": " + $l.note else "" end)
    elif $l.status == "reference" then $l.note
    elif $l.status == "skipped" then "skipped: " + $l.note
    else "**FAILED**: " + $l.note end;
  # "1,000,000 sessions" of a session-table line's name.
  def count(id): line(id).name // "" | capture("(?<n>[0-9,]+ sessions)").n // null;
  def value(id; f): if ok(id) then (line(id) | f) else null end;
  # The first ratio of a line as "0.87× (0.84–0.90)", or null.
  def first_ratio(id): (ratios(line(id))[0] // null) | if . == null then null else factor + spread end;
  def ratio_named(id; what):
    [ ratios(line(id))[] | select(.label == what) ][0] // null
    | if . == null then null else factor + spread end;

"# latchkey benchmark",
"",
"- date: \($r.date)",
"- machine: \($r.machine.nproc) × \($r.machine.cpu), \($r.machine.kernel), \($r.machine.memory)",
"- latchkey: commit \($r.latchkey_commit)",
"- load: \($r.load.tool), \($r.load.threads) threads, \($r.load.connections) connections, timeout \($r.load.timeout); on the same cores as the server",
"- rounds: the five GET /profile lines from bare axum to the forged cookie take turns, \(plural($r.load.rounds; "round")) of \($r.load.round_duration) each; the login, flood and \(count("sessions_many") // "many-session") lines \(plural($r.load.pair_rounds; "paired round")) of \($r.load.round_duration) each; the \(count("sessions_few") // "few-session") and \(count("sessions_mid") // "mid-session") lines one load of \($r.load.duration)",
"- the run took \(($r.elapsed_s // 0) / 60 | floor) min \(($r.elapsed_s // 0) % 60) s",
"",
"| line | requests/s | p50 ms | p99 ms | peak RSS MB | ratio | check |",
"|---|---:|---:|---:|---:|---|---|",
($r.lines[]
  | "| \(.name | cell) | \(.rps | num(0)) | \(.p50_ms | num(2)) | \(.p99_ms | num(2)) | \(.rss_mb | num(1)) | \(ratio_cell(.) | cell) | \(check(.) | cell) |"),
"",
"## In short",
"",
"- GET /profile on SQLite: \(value("sqlite"; .rps) | num(0)) req/s, \(first_ratio("sqlite") // null | if . == null then "no ratio" else . + " the bare axum ceiling" end)",
"- POST /login: \(value("login"; .rps) | num(0)) logins/s: \(ratio_named("login"; "\($r.argon2.cores // "") concurrent hashes") // "n/a") the \(value("argon2"; $r.argon2.parallel_per_s) | num(0))/s that \($r.argon2.cores // "all") raw argon2 hashes running concurrently reached (the target's reference), \(ratio_named("login"; "cores ÷ one hash") // "n/a") cores ÷ one hash (\(value("argon2"; .rps) | num(0))/s, not reachable: concurrent hashes share the CPU cache)",
"- GET /profile p99 during a login flood: \(value("flood"; .p99_ms) | num(2)) ms, against \(value("flood"; .ratios[0].reference[.median_round - 1]) | num(2)) ms without it on the same server just before: \(first_ratio("flood") // "n/a")",
"- while a locked address floods invented names: GET /profile \(first_ratio("locked_flood") // "n/a") the throughput without the flood, another user's sign-in p50 \(first_ratio("locked_flood_login") // "n/a") its latency without it (targets: ≥ 0.8×, ≤ 1.2×)",
(["revocation_sqlite", "revocation_postgres", "revocation_redis"][] as $id | line($id) | select(. != null)
  | "- \(.name): \(check(.))"),
"- forward-auth through nginx: auth_request to latchkey \(first_ratio("nginx_latchkey") // "n/a") the requests/s of nginx without authentication (target ≥ 0.6×), p99 \([ratios(line("nginx_latchkey"))[] | select(.kind == "p99")][0] // null | if . == null then "n/a" else factor + spread end) (target ≤ 2×); a check that does nothing reaches \(first_ratio("nginx_noop") // "n/a"), and latchkey \(ratio_named("nginx_latchkey"; "the no-op check") // "n/a") of that; auth_basic with SHA-512-crypt \(first_ratio("nginx_basic") // "n/a")",
"- peak RSS under the login flood: \(value("login"; .rss_mb) | num(1)) MB (GET /profile with one session: \(value("sqlite"; .rss_mb) | num(1)) MB)",
"- RSS with \(line("sessions_mid").name // "" | capture("(?<n>[0-9,]+) sessions").n // "100,000") sessions in SQLite: \(value("sessions_mid"; .rss_mb) | num(1)) MB",
"- GET /profile with many vs few sessions in SQLite: \(first_ratio("sessions_many") // "n/a")",
"",
"Requests/s is the median over a line's rounds; p50 and p99 come from its median round (for the flood line, the round with the median p99 ratio).",
"Ratios: a paired ratio is the median over rounds of (line ÷ reference measured in the same round, seconds apart), with the lowest and highest round in parentheses; an unpaired one divides by a reference measured minutes earlier, and carries the machine's drift. The flood line's p99 ratio is over GET /profile on the same server without the flood, measured right before.",
"Latencies are wrk's, not corrected for coordinated omission: under saturation read p99 as a lower bound.",
"Every line has its own server (the five GET /profile lines' servers run side by side, loaded one at a time); peak RSS is VmHWM from /proc/PID/status after all of the line's loads."
