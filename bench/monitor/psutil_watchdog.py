"""What users run today instead of kiln-monitor: the seeds' psutil memory
manager turned into a watchdog. Samples the tree RSS (process + children,
recursively) every INTERVAL, SIGTERMs the process group at LIMIT, and prints
`WATCHDOG {json}` on stdout (after the child's own output) with its own CPU
time and when it killed.

    python psutil_watchdog.py LIMIT_BYTES INTERVAL_S -- CMD ARGS...
"""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import psutil


def tree_rss(proc):
    total = 0
    try:
        members = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main():
    limit, interval = int(sys.argv[1]), float(sys.argv[2])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    child = subprocess.Popen(cmd, start_new_session=True)
    proc = psutil.Process(child.pid)
    peak, kill_ms, samples = 0, None, 0
    while child.poll() is None:
        rss = tree_rss(proc)
        samples += 1
        peak = max(peak, rss)
        if rss >= limit and kill_ms is None:
            kill_ms = int(time.time() * 1000)
            os.killpg(child.pid, signal.SIGTERM)
        time.sleep(interval)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("WATCHDOG " + json.dumps({
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_self_kib": usage.ru_maxrss,
        "peak_tree_rss": peak,
        "kill_ms": kill_ms,
        "samples": samples,
        "status": child.returncode,
    }))


if __name__ == "__main__":
    main()
