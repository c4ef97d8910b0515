#!/usr/bin/env bash
# bench/monitor — what kiln-monitor costs, and how fast it stops a runaway,
# side by side with a psutil watchdog (the seeds' memory manager as a loop).
#
# (1) Overhead at 10 Hz over a DURATION-second child run (default 60), for a
#     1-process tree and a 31-process tree (kiln-memhog --children 2 --depth 4),
#     all four watchers running at once. The children only sleep after their
#     first allocation, so the CPU is the watcher's; each watcher's own CPU
#     time (getrusage / /proc/self/stat) and /usr/bin/time -v's wall, CPU and
#     peak RSS are reported.
# (2) Kill latency at 10 Hz: a child growing 16 MiB every 20 ms (800 MiB/s)
#     past a 512 MiB limit, TRIALS times per watcher (default 10). Latency =
#     the watcher's SIGTERM time minus the start of the child's step that took
#     its own RSS to the limit (both wall clock, from the watcher's log and
#     the child's step lines; an upper bound by at most one step's ~5 ms).
#
#   make bench-monitor             # builds, sets up the venv, runs this
#   DURATION=20 TRIALS=5 bench/monitor/run.sh
#
# Results: target/bench/monitor/results.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-$root/target/bench/monitor}
duration=${DURATION:-60}
trials=${TRIALS:-10}
py=$("$root/scripts/python-env.sh" bench)
rel=$root/target/release
(cd "$root" && cargo build --release -q -p kiln-monitor -p kiln-testkit)
mkdir -p "$work"
rm -f "$work"/*.json "$work"/*.jsonl "$work"/*.time "$work"/*.out
monitor=$rel/kiln-monitor
hog=$rel/kiln-memhog
watchdog="$py $root/bench/monitor/psutil_watchdog.py"
timed() { # name cmd... -> $work/name.time, stdout in $work/name.out
  local name=$1
  shift
  /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out"
}

echo "== (1) overhead: 4 watchers x ${duration} s at 10 Hz, concurrently" >&2
one=("$hog" --step 64MiB --steps 1 --hold "${duration}s")
tree=("$hog" --children 2 --depth 4 --step 4MiB --steps 1 --hold "${duration}s")
timed kiln-1 "$monitor" run -q --json --interval 100ms --limit 20GiB -- "${one[@]}" &
timed kiln-31 "$monitor" run -q --json --interval 100ms --limit 20GiB -- "${tree[@]}" &
timed psutil-1 $watchdog $((20 << 30)) 0.1 -- "${one[@]}" &
timed psutil-31 $watchdog $((20 << 30)) 0.1 -- "${tree[@]}" &
wait

echo "== (2) kill latency: $trials trials each, limit 512 MiB, 10 Hz" >&2
for i in $(seq "$trials"); do
  grow=("$hog" --step 16MiB --steps 200 --every 20ms)
  "$monitor" run -q --limit 512MiB --interval 100ms --grace 5s \
    --log "$work/kill-kiln-$i.jsonl" -- "${grow[@]}" >"$work/kill-kiln-$i.out" || true
  $watchdog $((512 << 20)) 0.1 -- "${grow[@]}" >"$work/kill-psutil-$i.out" || true
done

"$py" - "$work" "$duration" "$trials" <<'PY' | tee "$work/results.md"
import json, re, statistics, sys
from pathlib import Path

work, duration, trials = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
LIMIT = 512 << 20

def time_v(name):
    text = (work / f"{name}.time").read_text()
    grab = lambda label: re.search(rf"{label}: (.+)", text).group(1).strip()
    wall = grab(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)")
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(grab("User time \\(seconds\\)")) + float(grab("System time \\(seconds\\)"))
    return secs, cpu, int(grab("Maximum resident set size \\(kbytes\\)"))

def watcher_json(name):
    lines = (work / f"{name}.out").read_text().splitlines()
    if name.startswith("psutil"):
        return json.loads(next(l for l in lines if l.startswith("WATCHDOG "))[9:])
    start = max(i for i, l in enumerate(lines) if l == "{")
    return json.loads("\n".join(lines[start:]))

print(f"### (1) Overhead at 10 Hz over a {duration:.0f} s child run\n")
print("| watcher | tree | samples | own CPU | own CPU share of one core | own peak RSS | time -v wall | time -v CPU (incl. child) |")
print("|---|---|---|---|---|---|---|---|")
for who in ["kiln", "psutil"]:
    for size in [1, 31]:
        name = f"{who}-{size}"
        wall, cpu, _ = time_v(name)
        j = watcher_json(name)
        if who == "kiln":
            own, samples, rss = j["monitor_cpu_s"], j["samples"], j["monitor_peak_rss_bytes"] / 2**20
        else:
            own, samples, rss = j["cpu_s"], j["samples"], j["peak_rss_self_kib"] / 1024
        label = "kiln-monitor" if who == "kiln" else "psutil loop"
        print(f"| {label} | {size} proc | {samples} | {own:.2f} s | **{100 * own / wall:.2f} %** "
              f"| {rss:.1f} MiB | {wall:.1f} s | {cpu:.2f} s |")

print(f"\n### (2) Kill latency at 10 Hz ({trials} trials; child +16 MiB / 20 ms past 512 MiB)\n")
print("| watcher | median | max | min | tree RSS when signalled (median) |")
print("|---|---|---|---|---|")
for who in ["kiln", "psutil"]:
    lat, at_kill = [], []
    for i in range(1, trials + 1):
        out = (work / f"kill-{who}-{i}.out").read_text().splitlines()
        lines = [json.loads(l) for l in out if l.startswith('{"pid"')]
        steps = [s for s in lines if "rss" in s]
        over = next((s["step"] for s in steps if s["rss"] >= LIMIT), lines[-1].get("allocating"))
        cross = next(s["unix_ms"] for s in lines if s.get("allocating") == over)
        if who == "kiln":
            log = [json.loads(l) for l in (work / f"kill-kiln-{i}.jsonl").read_text().splitlines()]
            kill = next(r for r in log if r["event"] == "kill")
            kill_ms, rss = kill["unix_ms"], kill["tree_rss"]
        else:
            j = json.loads(next(l for l in out if l.startswith("WATCHDOG "))[9:])
            kill_ms = j["kill_ms"]
            rss = max(s["rss"] for s in steps if s["unix_ms"] <= kill_ms)
        lat.append(kill_ms - cross)
        at_kill.append(rss / 2**20)
    label = "kiln-monitor" if who == "kiln" else "psutil loop"
    print(f"| {label} | **{statistics.median(lat):.0f} ms** | {max(lat)} ms | {min(lat)} ms "
          f"| {statistics.median(at_kill):.0f} MiB |")
PY
