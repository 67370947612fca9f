"""Self-test of the forging OIDC provider (forge.py): starts it, plays the client side of
the code flow (discovery, /authorize with PKCE S256, state and nonce, /token with
client_secret_basic) for every case, and checks that each ID token has exactly the
fault its case names and no other, both by hand and with PyJWT against the JWKS.
Then checks the provider refuses what a real one refuses (bad PKCE verifier, other
redirect_uri, replayed code, wrong client secret, ...).
Run: target/venv-identity/bin/python tests/peers/oidc/check.py  (or check.sh)"""

import base64
import hashlib
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import warnings
from urllib.parse import parse_qs, quote_plus, urlencode, urlparse

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = "sluice"
# Characters that RFC 6749 2.3.1's form-encoding of Basic credentials must carry.
SECRET = "s3cret:with+odd chars&more"
REDIRECT = "http://sluice.test/auth/oidc/callback"

# The one fault each case must show (see faults()); "valid" shows none.
EXPECTED = {
    "valid": set(),
    "wrong-issuer": {"issuer"},
    "wrong-audience": {"audience"},
    "extra-audience": {"extra-audience"},
    "expired": {"expired"},
    "wrong-nonce": {"nonce"},
    "wrong-state": {"state"},
    "rogue-key": {"signature"},
    "alg-none": {"unsigned"},
    "hs256": {"hmac"},
    "bad-at-hash": {"at_hash"},
    "no-id-token": {"no-id-token"},
}
# What PyJWT's own strict decode (RS256, audience, issuer, expiry) says of each case;
# None = accepted (PyJWT checks neither nonce, state, at_hash nor extra audiences).
PYJWT = {
    "valid": None, "wrong-issuer": jwt.InvalidIssuerError,
    "wrong-audience": jwt.InvalidAudienceError, "extra-audience": None,
    "expired": jwt.ExpiredSignatureError, "wrong-nonce": None, "wrong-state": None,
    "rogue-key": jwt.InvalidSignatureError, "alg-none": jwt.InvalidAlgorithmError,
    "hs256": jwt.InvalidAlgorithmError, "bad-at-hash": None,
}

failures = []
passed = [0]


def check(cond, what):
    passed[0] += bool(cond)
    if not cond:
        failures.append(what)
        print("FAIL", what)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def request(base, method, path, body=None, headers=None):
    """(status, headers, body) of one request; redirects are not followed."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


class Client:
    """The relying party's side of the flow, against the provider at BASE."""

    def __init__(self, base):
        self.base = base
        status, headers, body = request(base, "GET", "/.well-known/openid-configuration")
        check(status == 200 and headers.get("Content-Type") == "application/json", "discovery answers JSON")
        self.meta = json.loads(body)
        status, headers, body = request(base, "GET", urlparse(self.meta["jwks_uri"]).path)
        check(status == 200 and headers.get("Content-Type") == "application/json", "jwks answers JSON")
        self.jwks = json.loads(body)
        self.keys = jwt.PyJWKSet.from_dict(self.jwks)

    def authorize(self, case=None, client_id=CLIENT, redirect=REDIRECT, **extra):
        """Sends the browser to /authorize; returns what the flow must remember and the
        provider's answer (status, redirect query parameters or JSON error)."""
        flow = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
                "verifier": secrets.token_urlsafe(48), "redirect": redirect, "client_id": client_id}
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                  "scope": "openid email profile", "state": flow["state"], "nonce": flow["nonce"],
                  "code_challenge": b64url(hashlib.sha256(flow["verifier"].encode()).digest()),
                  "code_challenge_method": "S256"}
        if case is not None:
            params["case"] = case
        params.update(extra)
        params = {k: v for k, v in params.items() if v is not None}
        path = urlparse(self.meta["authorization_endpoint"]).path + "?" + urlencode(params)
        status, headers, body = request(self.base, "GET", path)
        flow["status"] = status
        if status == 302:
            flow["location"] = headers["Location"]
            back = parse_qs(urlparse(flow["location"]).query)
            flow["code"] = back.get("code", [None])[0]
            flow["returned_state"] = back.get("state", [None])[0]
        else:
            flow["error"] = json.loads(body) if body else None
        return flow

    def token(self, flow, verifier=None, redirect=None, auth="basic", secret=SECRET, client_id=None):
        """Redeems FLOW's code; returns (status, JSON answer)."""
        client_id = client_id or flow["client_id"]
        form = {"grant_type": "authorization_code", "code": flow["code"],
                "redirect_uri": redirect or flow["redirect"],
                "code_verifier": verifier or flow["verifier"]}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth == "basic":
            pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif auth == "post":
            form.update(client_id=client_id, client_secret=secret)
        path = urlparse(self.meta["token_endpoint"]).path
        status, answer_headers, body = request(self.base, "POST", path, urlencode(form), headers)
        check(answer_headers.get("Content-Type") == "application/json", f"token answer is JSON ({status})")
        return status, json.loads(body)

    def faults(self, flow, answer):
        """Every reason a strict relying party has to refuse this sign-in."""
        found = set()
        if flow["returned_state"] != flow["state"]:
            found.add("state")
        token = answer.get("id_token")
        if token is None:
            return found | {"no-id-token"}
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        if header.get("alg") == "none":
            if token.endswith(".") and token.count(".") == 2:
                found.add("unsigned")
        elif header.get("alg") == "HS256":
            lax = {"verify_aud": False, "verify_exp": False, "verify_iat": False}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the client secret is a short HMAC key
                jwt.decode(token, SECRET.encode(), algorithms=["HS256"], options=lax)
            found.add("hmac")  # signed, but with the client secret, not a published key
        else:
            if not signed_by(token, self.keys[header["kid"]]):
                found.add("signature")
        if claims.get("iss") != self.base:
            found.add("issuer")
        aud = claims.get("aud")
        aud = aud if isinstance(aud, list) else [aud]
        if CLIENT not in aud:
            found.add("audience")
        elif len(aud) > 1:
            found.add("extra-audience")
        now = time.time()
        if not claims.get("exp", 0) > now:
            found.add("expired")
        if not claims.get("iat", now + 999) <= now + 5:
            found.add("iat in the future")
        if claims.get("nonce") != flow["nonce"]:
            found.add("nonce")
        access = answer["access_token"].encode()
        if claims.get("at_hash") != b64url(hashlib.sha256(access).digest()[:16]):
            found.add("at_hash")
        return found


def signed_by(token, key):
    """True when TOKEN's RS256 signature verifies with KEY (the claims are not judged)."""
    try:
        jwt.decode(token, key, algorithms=["RS256"],
                   options={"verify_aud": False, "verify_iss": False, "verify_exp": False,
                            "verify_iat": False, "verify_nbf": False})
        return True
    except jwt.InvalidSignatureError:
        return False


def pyjwt_verdict(client, token):
    """The exception class PyJWT's strict decode raises for TOKEN, or None."""
    try:
        key = client.keys[jwt.get_unverified_header(token)["kid"]]
        jwt.decode(token, key, algorithms=["RS256"], audience=CLIENT, issuer=client.base)
        return None
    except jwt.PyJWTError as e:
        return type(e)


def main():
    started = time.time()
    forge = subprocess.Popen([sys.executable, os.path.join(HERE, "forge.py"), "--port", "0",
                              "--client-secret", SECRET], stdout=subprocess.PIPE, text=True)
    try:
        line = forge.stdout.readline().strip()
        check(line.startswith("listening http://127.0.0.1:"), f"first line: {line!r}")
        run(line.split()[1])
    finally:
        forge.terminate()
        forge.wait(timeout=10)
    check(forge.stdout.read() == "", "forge printed exactly one line")
    print(f"{passed[0]} passed, {len(failures)} failed ({time.time() - started:.1f}s)")
    sys.exit(1 if failures else 0)


def run(base):
    status, _, body = request(base, "GET", "/healthz")
    check(status == 200, "healthz")
    client = Client(base)
    meta = client.meta
    check(meta["issuer"] == base, "issuer is the base URL")
    for field, value in {
        "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
        "jwks_uri": base + "/jwks", "response_types_supported": ["code"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }.items():
        check(meta.get(field) == value, f"discovery {field}")
    check("openid" in meta.get("scopes_supported", []), "discovery scopes_supported")
    check({"sub", "email", "nonce"} <= set(meta.get("claims_supported", [])), "discovery claims_supported")
    keys = client.jwks["keys"]
    check(len(keys) == 1 and keys[0]["kid"] == "k1" and keys[0]["kty"] == "RSA"
          and keys[0]["alg"] == "RS256" and keys[0]["use"] == "sig", "jwks: one RS256 key k1")

    for case, expected in EXPECTED.items():
        flow = client.authorize(case)
        check(flow["status"] == 302 and flow["location"].startswith(REDIRECT + "?code="),
              f"{case}: authorize redirects to redirect_uri")
        if flow["status"] != 302:
            continue
        status, answer = client.token(flow)
        check(status == 200 and answer.get("token_type") == "Bearer" and answer.get("access_token")
              and answer.get("expires_in") == 300, f"{case}: token answer")
        found = client.faults(flow, answer)
        check(found == expected, f"{case}: faults {sorted(found)} == {sorted(expected)}")
        token = answer.get("id_token")
        if case in PYJWT:
            verdict = pyjwt_verdict(client, token)
            check(verdict is PYJWT[case], f"{case}: PyJWT says {verdict}, expected {PYJWT[case]}")
        if token is None:
            continue
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        check(claims["sub"] == "forge-sub" and claims["email"] == "forge@example.com"
              and claims["email_verified"] is True and claims["given_name"] and claims["family_name"],
              f"{case}: default sub and profile claims")
        check(header.get("kid") == "k1", f"{case}: kid k1")
        if case == "rogue-key":
            check(header["alg"] == "RS256", "rogue-key: RS256 header")
        if case == "expired":
            now = time.time()
            check(abs(claims["iat"] - (now - 3600)) < 10 and abs(claims["exp"] - (now - 1800)) < 10,
                  "expired: iat now-3600, exp now-1800")
        if case == "extra-audience":
            check(claims["aud"] == [CLIENT, "someone-else"] and "azp" not in claims,
                  "extra-audience: aud [client, someone-else], no azp")
        if case == "wrong-audience":
            check(claims["aud"] == "someone-else", "wrong-audience: aud someone-else")
        if case == "wrong-issuer":
            check(claims["iss"] == base + "/other", "wrong-issuer: iss base/other")
        if case == "valid":
            check(claims["exp"] - claims["iat"] == 300, "valid: exp = iat + 300")

    # Test-only parameters, client_secret_post, and a redirect_uri that has a query.
    flow = client.authorize(sub="alice", email="alice@example.com", groups="eng,ops",
                            redirect=REDIRECT + "?x=1")
    check(flow["status"] == 302 and flow["location"].startswith(REDIRECT + "?x=1&code="),
          "redirect_uri query kept")
    status, answer = client.token(flow, auth="post")
    check(status == 200, "client_secret_post accepted")
    claims = jwt.decode(answer["id_token"], client.keys["k1"], algorithms=["RS256"],
                        audience=CLIENT, issuer=base)
    check((claims["sub"], claims["email"], claims["groups"]) == ("alice", "alice@example.com", ["eng", "ops"]),
          "sub, email and groups parameters")
    check(client.faults(flow, answer) == set(), "client_secret_post: a valid token")

    # What a real provider refuses at /token. Every code is single use, so one per try.
    def refused(what, want_status, want_error, **token_args):
        flow = client.authorize()
        status, answer = client.token(flow, **token_args)
        check(status == want_status and answer.get("error") == want_error and "id_token" not in answer,
              f"{what}: {status} {answer.get('error')}")
        return flow

    refused("bad code_verifier", 400, "invalid_grant", verifier=secrets.token_urlsafe(48))
    refused("malformed code_verifier", 400, "invalid_grant", verifier="short")
    refused("other redirect_uri", 400, "invalid_grant", redirect=REDIRECT + "/other")
    refused("wrong client secret", 401, "invalid_client", secret="not-the-secret")
    refused("no client authentication", 401, "invalid_client", auth=None)
    refused("code of another client", 400, "invalid_grant", client_id="someone-else")
    flow = client.authorize()
    check(client.token(flow)[0] == 200, "first redemption")
    status, answer = client.token(flow)
    check(status == 400 and answer.get("error") == "invalid_grant", "replayed code refused")
    flow = refused("code after a failed try", 400, "invalid_grant", redirect=REDIRECT + "/other")
    check(client.token(flow)[0] == 400, "a refused code stays used")

    # What a real provider refuses at /authorize (JSON errors, no redirect).
    for what, extra, error in [
        ("unknown case", {"case": "no-such-case"}, "invalid_request"),
        ("no PKCE", {"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ("PKCE plain", {"code_challenge_method": "plain"}, "invalid_request"),
        ("no openid scope", {"scope": "email"}, "invalid_scope"),
        ("implicit flow", {"response_type": "id_token"}, "unsupported_response_type"),
        ("relative redirect_uri", {"redirect_uri": "/callback"}, "invalid_request"),
    ]:
        flow = client.authorize(**extra)
        check(flow["status"] == 400 and (flow.get("error") or {}).get("error") == error,
              f"authorize refuses {what}")
    status, _, _ = request(base, "GET", "/nope")
    check(status == 404, "unknown path 404")


if __name__ == "__main__":
    main()
