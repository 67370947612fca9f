"""Sends the fixture through segment-analytics-python (gzip on and off).

Usage: SLUICE_URL=http://127.0.0.1:8080 WRITE_KEY=... python send_python.py
"""
import json
import os
import pathlib
import sys

from segment.analytics.client import Client

fixture = json.loads((pathlib.Path(__file__).parent / "fixture.json").read_text())
errors = []


def send(user_id, gzip):
    client = Client(
        write_key=os.environ["WRITE_KEY"],
        host=os.environ["SLUICE_URL"],
        gzip=gzip,
        max_retries=0,
        on_error=lambda e, batch: errors.append(repr(e)),
        upload_size=3,
    )
    client.identify(user_id, fixture["traits"])
    client.track(user_id, fixture["event"], fixture["properties"])
    client.page(user_id, name=fixture["page"]["name"], properties=fixture["page"]["properties"])
    client.screen(user_id, name=fixture["page"]["name"], properties=fixture["page"]["properties"])
    client.group(user_id, fixture["groupId"], fixture["groupTraits"])
    client.alias("anon-python", user_id)
    client.flush()
    client.join()


send("python-user", gzip=False)
send("python-gzip-user", gzip=True)
if errors:
    sys.exit(f"analytics-python: {errors}")
print("python SDK: sent")
