# Renders bench/results/latest.json (written by bench/run.sh) as Markdown.

def round_to(n): if . == null then null else . * pow(10; n) | round / pow(10; n) end;
def commas: tostring | if length <= 3 then . else (.[:-3] | commas) + "," + .[-3:] end;
def pad(n): if length >= n then . else . + ("0" * (n - length)) end;
def fixed(n):
  round_to(n) | tostring | split(".")
  | (.[0] | commas) + (if n == 0 then "" else "." + ((.[1] // "") | pad(n)) end);
def num(n): if . == null then "–" else fixed(n) end;
def cell: tostring | gsub("\\|"; "\\|") | gsub("\n"; " ");

. as $r
| ($r.lines | map({ key: .id, value: . }) | from_entries) as $by
| def line(id): $by[id] // null;
  def ok(id): (line(id).status // "") as $s | $s == "ok" or $s == "reference";
  def ratio($l):
    if $l.status != "ok" or $l.compare == null then ""
    elif $l.compare.rps_to != null then
      (line($l.compare.rps_to)) as $b
      | if ok($l.compare.rps_to) and ($b.rps // 0) > 0
        then "\($l.rps / $b.rps | round_to(2))× \($l.compare.label)" else "" end
    elif $l.compare.p99_to != null then
      (line($l.compare.p99_to)) as $b
      | if ok($l.compare.p99_to) and ($b.p99_ms // 0) > 0
        then "p99 \($l.p99_ms / $b.p99_ms | round_to(2))× \($l.compare.label)" else "" end
    elif $l.compare.rps_to_value != null and $l.compare.rps_to_value > 0 then
      "\($l.rps / $l.compare.rps_to_value | round_to(2))× \($l.compare.label)"
    else "" end;
  def check($l):
    if $l.status == "ok" then "ok" + (if $l.note != "" then ": " + $l.note else "" end)
    elif $l.status == "reference" then $l.note
    elif $l.status == "skipped" then "skipped: " + $l.note
    else "**FAILED**: " + $l.note end;
  def value(id; f): if ok(id) then (line(id) | f) else null end;

"# latchkey benchmark",
"",
"- date: \($r.date)",
"- machine: \($r.machine.nproc) × \($r.machine.cpu), \($r.machine.kernel), \($r.machine.memory)",
"- latchkey: commit \($r.latchkey_commit)",
"- load: \($r.load.tool), \($r.load.threads) threads, \($r.load.connections) connections, \($r.load.duration) per line, timeout \($r.load.timeout); on the same cores as the server",
"",
"| line | requests/s | p50 ms | p99 ms | peak RSS MB | ratio | check |",
"|---|---:|---:|---:|---:|---|---|",
($r.lines[]
  | "| \(.name | cell) | \(.rps | num(0)) | \(.p50_ms | num(2)) | \(.p99_ms | num(2)) | \(.rss_mb | num(1)) | \(ratio(.) | cell) | \(check(.) | cell) |"),
"",
"## In short",
"",
"- GET /profile on SQLite: \(value("sqlite"; .rps) | num(0)) req/s, \(if ok("sqlite") and ok("ceiling") then (line("sqlite").rps / line("ceiling").rps | round_to(2) | tostring) + "× the bare axum ceiling" else "no ratio" end)",
"- POST /login: \(value("login"; .rps) | num(0)) logins/s against an argon2 capacity of \(value("argon2"; .rps) | num(0))/s",
"- GET /profile p99 during a login flood: \(value("flood"; .p99_ms) | num(2)) ms, against \(value("sqlite"; .p99_ms) | num(2)) ms without",
"- peak RSS under the login flood: \(value("login"; .rss_mb) | num(1)) MB (GET /profile with one session: \(value("sqlite"; .rss_mb) | num(1)) MB)",
"- RSS with \(line("sessions_mid").name // "" | capture("(?<n>[0-9,]+) sessions").n // "100,000") sessions in SQLite: \(value("sessions_mid"; .rss_mb) | num(1)) MB",
"- GET /profile with many vs few sessions in SQLite: \(if ok("sessions_many") and ok("sessions_few") then (line("sessions_many").rps / line("sessions_few").rps | round_to(2) | tostring) + "×" else "n/a" end)",
"",
"Ratios: requests/s over the line named (the ceiling is the bare axum server); for the flood line, p99 over the p99 of GET /profile on SQLite without the flood.",
"Latencies are wrk's, not corrected for coordinated omission: under saturation read p99 as a lower bound.",
"Every line ran on a fresh server; peak RSS is VmHWM from /proc/PID/status after the load."
