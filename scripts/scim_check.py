"""Runs scim2-tester's check_server against a live Sluice /scim/v2 and prints every
result; exits 1 if any is an ERROR or CRITICAL (a broken RFC MUST). Usage:
scim_check.py BASE_URL TOKEN"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

base, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}))
client.discover()
results = check_server(client, resource_types=["User", "Group"])
broken = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
counts = {}
for result in results:
    counts[result.status.name] = counts.get(result.status.name, 0) + 1
    if result.status != Status.SUCCESS:
        print(f"{result.status.name} {result.title}: {result.reason}")
print(f"scim2-tester: {len(results)} checks: {counts}")
sys.exit(1 if broken or not results else 0)
