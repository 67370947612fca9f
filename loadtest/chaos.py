#!/usr/bin/env python3
"""Chaos run: load on a real Sluice while it is killed, its disk fills up and its
destination goes down; then count acknowledged vs stored vs delivered.

Must hold: every acknowledged messageId is delivered (at least once) once delivery has
caught up, and until then is in the log; duplicates only ever repeat a messageId.
Loopback only, bounded in time.

  loadtest/chaos.sh [--seconds 60] [--senders 4]      (builds, then runs this)
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(http.server.ThreadingHTTPServer):
    """The webhook destination: records every messageId it gets; can be taken down."""

    daemon_threads = True

    def __init__(self, port):
        self.lock = threading.Lock()
        self.ids = []
        self.down = False
        super().__init__(("127.0.0.1", port), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.server.down:
            self.send_response(503)
            self.end_headers()
            return
        doc = json.loads(body)
        events = doc["batch"] if "batch" in doc else [doc]
        with self.server.lock:
            self.server.ids.extend(e["messageId"] for e in events)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Sluice:
    def __init__(self, binary, work, log_dir, port, admin):
        self.binary, self.work, self.log_dir = binary, work, log_dir
        self.port, self.admin = port, admin
        self.proc = None

    def env(self):
        env = dict(os.environ)
        env.update({
            "SLUICE__SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "SLUICE__SERVER__ADMIN_LISTEN": f"127.0.0.1:{self.admin}",
            "SLUICE__CATALOG__SOURCE": "file",
            "SLUICE__CATALOG__PATH": os.path.join(self.work, "catalog.toml"),
            "SLUICE__LOG__DIR": self.log_dir,
            "SLUICE__LOG__DURABILITY": "fsync",
            "SLUICE__LOG__SEGMENT_BYTES": str(1 << 20),
            # Sized to its 48 MiB disk, as an operator would.
            "SLUICE__LOG__MAX_BYTES": str(40 << 20),
            "SLUICE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS": "true",
            "SLUICE__TELEMETRY__LOG_FILTER": "error",
        })
        return env

    def start(self):
        self.proc = subprocess.Popen([self.binary, "serve"], cwd=self.work, env=self.env(),
                                     stdout=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("sluice did not start")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def sender(n, port, deadline, acked, lock, stats):
    auth = "Basic " + base64.b64encode(b"chaos-key:").decode()
    batch_no = 0
    while time.time() < deadline:
        ids = [f"s{n}-b{batch_no}-e{i}" for i in range(20)]
        batch_no += 1
        body = json.dumps({"batch": [
            {"type": "track", "userId": "u", "event": "Chaos", "messageId": i,
             "properties": {"pad": "x" * 200}} for i in ids]})
        # Retried like an SDK until acknowledged or the run ends.
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/v1/batch", body, {"Authorization": auth,
                                                      "Content-Type": "application/json"})
                status = c.getresponse().status
                c.close()
            except OSError:
                status = None
            with lock:
                stats[status] = stats.get(status, 0) + 1
            if status == 200:
                with lock:
                    acked.update(ids)
                break
            time.sleep(0.05)


def stored_ids(binary, log_dir, work):
    out = subprocess.run([binary, "log", "tail", "-n", "100000000", "--ndjson"], cwd=work,
                         env={**os.environ, "SLUICE__LOG__DIR": log_dir},
                         capture_output=True, text=True, check=True).stdout
    ids = set()
    for line in out.splitlines():
        record = json.loads(line).get("record") or {}
        ids.add((record.get("event") or {}).get("messageId"))
    return ids


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--bin", default="target/release/sluice")
    p.add_argument("--work", default="target/loadtest/chaos")
    a = p.parse_args()
    binary = os.path.abspath(a.bin)
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    disk = os.path.join(work, "disk")
    os.makedirs(disk)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk]).returncode == 0
    if not mounted:
        print("not root: the disk-full fault is skipped (the log is on the normal disk)")
    log_dir = os.path.join(disk, "log")

    hook_port = free_port()
    receiver = Receiver(hook_port)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with open(os.path.join(work, "catalog.toml"), "w") as f:
        f.write(f"""[[sources]]
id = "chaos"
write_keys = [{{ key = "chaos-key" }}]
[[destinations]]
id = "hook"
type = "webhook"
sources = ["chaos"]
retry = {{ initial_backoff_ms = 20, max_backoff_ms = 500 }}
settings = {{ url = "http://127.0.0.1:{hook_port}/hook", batch_size = 50, batch_ms = 10 }}
""")
    sluice = Sluice(binary, work, log_dir, free_port(), free_port())
    sluice.start()

    acked, lock, stats = set(), threading.Lock(), {}
    deadline = time.time() + a.seconds
    threads = [threading.Thread(target=sender, args=(n, sluice.port, deadline, acked, lock, stats))
               for n in range(a.senders)]
    for t in threads:
        t.start()

    faults = {"kill": 0, "disk_full": 0, "destination_down": 0}
    rng = random.Random(7)
    cycle = ["kill", "disk_full", "destination_down"] if mounted else ["kill", "destination_down"]
    try:
        while time.time() < deadline - 3:
            time.sleep(rng.uniform(2, 5))
            fault = cycle[sum(faults.values()) % len(cycle)]
            faults[fault] += 1
            with lock:
                so_far = len(acked)
            print(f"[{time.strftime('%H:%M:%S')}] {fault} (acknowledged so far: {so_far})", flush=True)
            if fault == "kill":
                sluice.kill()
                time.sleep(0.3)
                sluice.start()
            elif fault == "disk_full":
                filler = os.path.join(disk, "filler")
                try:
                    with open(filler, "wb") as f:
                        while True:
                            f.write(b"\0" * (1 << 20))
                            f.flush()
                except OSError:
                    pass
                time.sleep(2)
                os.remove(filler)
            else:
                receiver.down = True
                time.sleep(3)
                receiver.down = False
        for t in threads:
            t.join()
        # Let delivery catch up.
        catch_up = time.time() + 60
        while time.time() < catch_up:
            with receiver.lock:
                delivered = set(receiver.ids)
            if acked <= delivered:
                break
            time.sleep(0.5)
        sluice.stop()
        stored = stored_ids(binary, log_dir, work)
        with receiver.lock:
            delivered_list = list(receiver.ids)
        delivered = set(delivered_list)
        # Segments every destination has finished with may be deleted early to make room
        # (above 90 % of log.max_bytes, or on a full disk): an acknowledged event must be
        # delivered, or still be in the log waiting for delivery.
        missing = acked - (stored | delivered)
        missing_delivered = acked - delivered
        print(json.dumps({
            "seconds": a.seconds, "faults": faults,
            "responses": {str(k): v for k, v in sorted(stats.items(), key=lambda kv: str(kv[0]))},
            "acknowledged": len(acked),
            "still_in_log": len(stored & acked),
            "delivered": len(delivered & acked),
            "delivered_duplicates": len(delivered_list) - len(delivered),
            "acknowledged_missing": len(missing),
            "acknowledged_not_delivered": len(missing_delivered),
        }, indent=2))
        ok = not missing and not missing_delivered and len(acked) > 0
        if missing_delivered:
            # Which batches: the run's tail (delivery stalled at the end) or earlier ones
            # (around a fault)? Each id is s<sender>-b<batch>-e<event>.
            batches = sorted({i.rsplit("-e", 1)[0] for i in missing_delivered},
                             key=lambda b: (b.split("-b")[0], int(b.split("-b")[1])))
            last = {}
            for i in acked:
                sender_id, batch = i.rsplit("-e", 1)[0].split("-b")
                last[sender_id] = max(last.get(sender_id, 0), int(batch))
            print(f"undelivered batches ({len(batches)}): {batches[:10]}{' …' if len(batches) > 10 else ''}; "
                  f"last acknowledged batch per sender: {last}", flush=True)
        print("PASS: nothing acknowledged is missing" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if sluice.proc and sluice.proc.poll() is None:
            sluice.kill()
        receiver.shutdown()
        if mounted:
            subprocess.run(["umount", disk])


if __name__ == "__main__":
    sys.exit(main())
