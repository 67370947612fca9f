"""Checks that what the SDKs sent (send_*.{mjs,py}) is stored intact.

Reads stored records as NDJSON on stdin (`sluice log tail --ndjson`).
"""
import json
import pathlib
import sys

fixture = json.loads((pathlib.Path(__file__).parent / "fixture.json").read_text())
SERVER_TYPES = ["identify", "track", "page", "screen", "group", "alias"]
BROWSER_TYPES = ["identify", "track", "page", "group", "alias"]
EXPECTED = {
    "node-user": ("@segment/analytics-node", SERVER_TYPES),
    "rudder-user": (None, SERVER_TYPES),
    "python-user": ("analytics-python", SERVER_TYPES),
    "python-gzip-user": ("analytics-python", SERVER_TYPES),
    "browser-user": ("analytics.js", BROWSER_TYPES),
    "browser-batch-user": ("analytics.js", BROWSER_TYPES),
}
only = set(sys.argv[1:]) or set(EXPECTED)

records = [json.loads(line) for line in sys.stdin if line.strip()]
problems = []
by_user = {}
for rec in records:
    ev = rec["record"]["event"]
    by_user.setdefault(ev.get("userId"), []).append(ev)
    if "writeKey" in json.dumps(rec):
        problems.append(f"a stored record holds a writeKey: {ev.get('messageId')}")


def check(cond, what):
    if not cond:
        problems.append(what)


def subset(small, big):
    return all(k in big and big[k] == v for k, v in small.items())


for user, (library, types) in EXPECTED.items():
    if user not in only:
        continue
    events = by_user.get(user, [])
    got = sorted(e["type"] for e in events)
    check(got == sorted(types), f"{user}: types {got}, expected {sorted(types)}")
    for e in events:
        where = f"{user} {e['type']}"
        check(bool(e.get("messageId")), f"{where}: no messageId")
        check("receivedAt" in e and "timestamp" in e, f"{where}: not enriched")
        if library:
            check(e.get("context", {}).get("library", {}).get("name") == library,
                  f"{where}: library {e.get('context', {}).get('library')}")
        if e["type"] == "identify":
            check(subset(fixture["traits"], e.get("traits") or e.get("context", {}).get("traits", {})),
                  f"{where}: traits {e.get('traits')}")
        if e["type"] == "track":
            check(e.get("event") == fixture["event"], f"{where}: event {e.get('event')}")
            check(e.get("properties") == fixture["properties"], f"{where}: properties {e.get('properties')}")
        if e["type"] in ("page", "screen"):
            check(e.get("name") == fixture["page"]["name"], f"{where}: name {e.get('name')}")
            check(subset(fixture["page"]["properties"], e.get("properties", {})), f"{where}: properties {e.get('properties')}")
        if e["type"] == "group":
            check(e.get("groupId") == fixture["groupId"], f"{where}: groupId")
            check(subset(fixture["groupTraits"], e.get("traits", {})), f"{where}: traits {e.get('traits')}")
        if e["type"] == "alias":
            check(bool(e.get("previousId")), f"{where}: previousId")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"verified {sum(len(by_user.get(u, [])) for u in only)} events from {len(only)} SDK runs: stored intact")
