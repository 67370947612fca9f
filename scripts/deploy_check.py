"""Checks the deploy kit's Sluice containers against the real binary.

For every Sluice container in deploy/kubernetes/*.yaml and every Sluice service in
deploy/docker-compose.yml: its arguments parse (`sluice <args> --help`), and its
SLUICE__ settings, with the shipped config/sluice.toml, make a valid configuration
(`sluice check-config`, which refuses unknown keys and bad values). Secrets and other
values known only at deploy time get placeholders of the right shape. The compose file
must also have its five services and their dependencies. Usage:
    python scripts/deploy_check.py --bin target/debug/sluice
"""

import argparse
import glob
import os
import re
import subprocess
import sys

import yaml

PLACEHOLDERS = {
    "database-url": "postgres://sluice:secret@postgres:5432/sluice",
    "secret-key": "00" * 32,
    "node-token": "sluice_placeholder_token",
    "delivery-node-token": "sluice_placeholder_delivery_token",
    "admin-token": "placeholder-admin-token",
    "nats-token": "placeholder-nats-token",
}


def fail(message):
    print(f"deploy check: {message}", file=sys.stderr)
    sys.exit(1)


def run_sluice(binary, args, env, what):
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_BACKTRACE": "0"}
    clean.update(env)
    result = subprocess.run(
        [binary, "--config", "config/sluice.toml", *args],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        fail(f"{what}: `sluice {' '.join(args)}` failed:\n{result.stderr.strip()}")
    return result.stdout


def check_container(binary, args, env, what):
    run_sluice(binary, [*args, "--help"], env, what)
    settings = {k: v for k, v in env.items() if k.startswith("SLUICE")}
    out = run_sluice(binary, ["check-config"], settings, what)
    print(f"  {what}: {' '.join(args)}; {out.strip()}")


def kubernetes(binary):
    docs = []
    for path in sorted(glob.glob("deploy/kubernetes/*.yaml")):
        with open(path, encoding="utf-8") as f:
            docs += [(path, d) for d in yaml.safe_load_all(f) if d]
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for _, d in docs if d["kind"] == "ConfigMap"
    }
    secrets = {
        d["metadata"]["name"]: d.get("stringData", {}) for _, d in docs if d["kind"] == "Secret"
    }
    seen = 0
    for path, d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            if not c["image"].startswith("sluice"):
                continue
            env = {}
            for source in c.get("envFrom", []):
                name = source["configMapRef"]["name"]
                if name not in config_maps:
                    fail(f"{path}: ConfigMap {name} is not in deploy/kubernetes")
                env.update(config_maps[name])
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif "secretKeyRef" in e.get("valueFrom", {}):
                    ref = e["valueFrom"]["secretKeyRef"]
                    if ref["key"] not in secrets.get(ref["name"], {}):
                        fail(f"{path}: Secret {ref['name']} has no key {ref['key']} (see secrets.example.yaml)")
                    env[e["name"]] = PLACEHOLDERS[ref["key"]]
                elif "fieldRef" in e.get("valueFrom", {}):
                    env[e["name"]] = "pod-0"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    fail(f"{path}: container {c['name']} has no {probe}")
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False):
                fail(f"{path}: container {c['name']} must have a read-only root filesystem and no privilege escalation")
            if not pod.get("securityContext", {}).get("runAsNonRoot"):
                fail(f"{path}: pod must run as non-root")
            if "requests" not in c.get("resources", {}):
                fail(f"{path}: container {c['name']} has no resource requests")
            check_container(binary, c["args"], env, f"{path} {d['kind']}/{d['metadata']['name']}")
            seen += 1
    if seen < 3:
        fail(f"expected the gateway, deliver and control-plane workloads, found {seen}")


def compose(binary):
    with open("deploy/docker-compose.yml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    services = spec["services"]
    for wanted in ("postgres", "nats", "control", "gateway", "deliver"):
        if wanted not in services:
            fail(f"docker-compose.yml has no {wanted} service")
    for name in ("gateway", "deliver"):
        if "control" not in services[name].get("depends_on", {}):
            fail(f"docker-compose.yml: {name} must wait for the control plane")
    for name, s in services.items():
        if not str(s.get("image", "")).startswith("sluice"):
            continue
        env = {}
        for k, v in s.get("environment", {}).items():
            # ${VAR:?message} / ${VAR:-default}: a placeholder of the variable's shape.
            v = re.sub(r"\$\{SLUICE_SECRET_KEY[^}]*\}", PLACEHOLDERS["secret-key"], str(v))
            if "${" in v:
                fail(f"docker-compose.yml {name}: unexpected variable in {k}={v}")
            env[k] = v
        check_container(binary, s["command"], env, f"docker-compose.yml {name}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    args = parser.parse_args()
    kubernetes(args.bin)
    compose(args.bin)


if __name__ == "__main__":
    main()
