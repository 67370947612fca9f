#!/usr/bin/env python3
"""Does Sluice's load generator drive a server as hard as wrk does?

Runs `wrk` (the Debian package; installed here when missing and run as root) and
`loadtest run --fixed` against the same servers with the same fixed payload, server
pinned to core 0 and client to core 1, interleaved, and prints the medians: the bare
baseline (read the body, answer 200) and Sluice (`os` durability). Loopback only,
bounded by --runs x --seconds per client and server.

    loadtest/wrk.py                    # release build, 3 runs x 5 s, 256 connections
    loadtest/wrk.py --runs 5 --seconds 10 --no-build
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "wrk-write-key"
# The generator's fixed payload (loadtest/src/payload.rs FIXED_EVENT): the same bytes.
FIXED_EVENT = (
    '{"type":"track","userId":"user-1","event":"Order Completed","properties":{"order_id":"o-1",'
    '"revenue":42.5,"currency":"USD"},"context":{"library":{"name":"analytics.js",'
    '"version":"next-1.84.3"}},"timestamp":"2026-11-27T09:59:58.123Z"}'
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on port {port} did not start")


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install wrk (as root)")
    print("installing wrk (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   stdout=subprocess.DEVNULL)


def start(kind, port, work):
    """Starts a server pinned to core 0; returns the process."""
    release = os.path.join(ROOT, "target", "release")
    if kind == "baseline":
        cmd = [os.path.join(release, "loadtest"), "baseline", "--listen", f"127.0.0.1:{port}"]
    else:
        d = tempfile.mkdtemp(dir=work)
        with open(os.path.join(d, "catalog.toml"), "w") as f:
            f.write(f'[[sources]]\nid = "wrk"\nwrite_keys = [{{ key = "{KEY}" }}]\n')
        with open(os.path.join(d, "sluice.toml"), "w") as f:
            f.write(
                f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{free_port()}"\n'
                f'[catalog]\nsource = "file"\npath = "{d}/catalog.toml"\n'
                f'[telemetry]\nlog_filter = "warn"\n'
                f'[log]\ndir = "{d}/log"\ndurability = "os"\n'
            )
        cmd = [os.path.join(release, "sluice"), "--config", os.path.join(d, "sluice.toml"), "serve"]
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL)
    wait_for(port)
    return proc


def run_wrk(port, seconds, connections, script):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script,
         f"http://127.0.0.1:{port}/v1/track"],
        check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


def run_loadtest(port, seconds, connections, work):
    report = os.path.join(work, "report.json")
    subprocess.run(
        ["taskset", "-c", "1", os.path.join(ROOT, "target", "release", "loadtest"), "run",
         "--target", f"127.0.0.1:{port}", "--connections", str(connections),
         "--seconds", str(seconds), "--fixed", "--key", KEY, "--quiet", "--json-out", report],
        check=True, stdout=subprocess.DEVNULL)
    with open(report) as f:
        r = json.load(f)
    bad = sum(n for s, n in r["statuses"].items() if s != "200") + r["errors"]
    return r["requests_per_sec"], bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--no-build", action="store_true")
    a = p.parse_args()
    if not 1 <= a.seconds <= 60 or not 1 <= a.runs <= 10:
        sys.exit("--seconds must be 1..60 and --runs 1..10")
    ensure_wrk()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT,
                       check=True)
    work = os.path.join(ROOT, "target", "loadtest", "wrk")
    os.makedirs(work, exist_ok=True)
    script = os.path.join(work, "post.lua")
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                f"wrk.body = [[{FIXED_EVENT}]]\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Basic {auth}"\n')
    results = {(s, c): [] for s in ("baseline", "sluice (os)") for c in ("wrk", "loadtest")}
    bad = 0
    for run in range(a.runs):
        for server in ("baseline", "sluice (os)"):
            for client in ("wrk", "loadtest"):
                port = free_port()
                proc = start("baseline" if server == "baseline" else "sluice", port, work)
                try:
                    if client == "wrk":
                        rate, errors = run_wrk(port, a.seconds, a.connections, script)
                    else:
                        rate, errors = run_loadtest(port, a.seconds, a.connections, work)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                bad += errors
                results[(server, client)].append(rate)
                print(f"run {run + 1}/{a.runs}: {server} with {client}: {rate:.0f} req/s"
                      + (f" ({errors} not 2xx)" if errors else ""), file=sys.stderr)
    print(f"\n{a.runs} runs of {a.seconds} s, medians; server on core 0, client on core 1; "
          f"{a.connections} connections; the same {len(FIXED_EVENT)} B track event in every "
          f"request.\n")
    print("| server | wrk req/s | loadtest req/s | loadtest / wrk |")
    print("|---|---:|---:|---:|")
    for server in ("baseline", "sluice (os)"):
        w = statistics.median(results[(server, "wrk")])
        l = statistics.median(results[(server, "loadtest")])
        print(f"| {server} | {w:.0f} | {l:.0f} | {100 * l / w:.0f} % |")
    if bad:
        print(f"\n{bad} answers were not 2xx: the figures above are not clean.")


if __name__ == "__main__":
    main()
