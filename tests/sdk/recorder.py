"""Records what SDKs send, for tests/data/sdk (replayed by tests/golden.rs).

Usage: python recorder.py PORT OUT_DIR. Answers every POST with 200 {"success":true}.
"""
import base64
import json
import pathlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
counter = [len(list(out.glob("*.json")))]
KEPT_HEADERS = ("content-type", "content-encoding", "authorization", "user-agent")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        counter[0] += 1
        name = f"{counter[0]:03d}{self.path.replace('/', '_')}.json"
        (out / name).write_text(json.dumps({
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
            "body_base64": base64.b64encode(body).decode(),
        }, indent=1) + "\n")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("access-control-allow-origin", "*")
        self.end_headers()
        self.wfile.write(b'{"success":true}')

    def do_GET(self):
        # CDN settings for analytics.js, pointing it back at this recorder.
        key = self.path.split("/")[3] if self.path.startswith("/v1/projects/") else ""
        body = json.dumps({"integrations": {"Segment.io": {
            "apiKey": key, "apiHost": f"{self.headers.get('host')}/v1", "protocol": "http"}}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("access-control-allow-origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
