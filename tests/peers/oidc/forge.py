#!/usr/bin/env python3
"""A forging OpenID Connect provider on loopback, for Sluice's OIDC relying-party tests.

A real provider (oidc-provider-mock) only ever issues good ID tokens; this one issues
a chosen bad one, so the tests can show Sluice refuses it. Everything else behaves like
a strict provider: PKCE S256, exact redirect_uri, single-use codes, client auth.

Run:  target/venv-identity/bin/python tests/peers/oidc/forge.py --port 0 [--client-secret S]
It prints one line, `listening http://127.0.0.1:PORT`, then serves until killed. The
issuer is exactly that URL (no trailing slash). With --client-secret the token endpoint
requires that secret; without it any secret (or none, a public client) is accepted.
Set OIDC_FORGE_LOG=1 to log requests to stderr.

Endpoints:
  GET  /.well-known/openid-configuration   discovery
  GET  /jwks                               the published key (RSA, kid "k1" until rotated) only
  GET  /authorize  the usual code-flow parameters (response_type=code, client_id,
       redirect_uri, scope with openid, state, nonce, code_challenge,
       code_challenge_method=S256) plus test-only case=, sub=, email=, groups=a,b.
       No login page: answers 302 to redirect_uri?code=..&state=..
  POST /token      grant_type=authorization_code, code, redirect_uri, code_verifier;
       client auth client_secret_basic or client_secret_post.
       Answers {access_token, token_type, expires_in, scope, id_token}.
  GET  /healthz    200
  POST /rotate     a new signing key (kid "k2", "k3", ...) replaces the published one
  GET  /stats      how many times discovery and the keys were fetched

Cases (chosen at /authorize, applied to the ID token the code is redeemed for):
  valid           a correct ID token
  wrong-issuer    iss = issuer + "/other"
  wrong-audience  aud = "someone-else"
  extra-audience  aud = [client_id, "someone-else"], no azp
  expired         iat = now-3600, exp = now-1800
  wrong-nonce     nonce is not the one sent to /authorize
  wrong-state     the redirect carries another state (the ID token is correct)
  rogue-key       signed RS256 by an unpublished key, still with the published kid
  alg-none        unsigned JWT, header alg "none" (the published kid), empty signature
  hs256           HS256 with the client secret (as sent to /token) as the key
  bad-at-hash     at_hash of some other access token
  no-id-token     the token response has no id_token
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CASES = ("valid", "wrong-issuer", "wrong-audience", "extra-audience", "expired",
         "wrong-nonce", "wrong-state", "rogue-key", "alg-none", "hs256", "bad-at-hash",
         "no-id-token")
CODE_LIFETIME = 120  # seconds a code may wait to be redeemed
TOKEN_LIFETIME = 300  # exp - iat of good tokens, and expires_in
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1

# The published signing key and a second one nobody can look up (rogue-key signs with it).
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROGUE = rsa.generate_private_key(public_exponent=65537, key_size=2048)

signing = {"key": KEY, "kid": "k1", "n": 1}  # the published key, replaced by /rotate
hits = {"discovery": 0, "jwks": 0}  # fetches, for the relying party's cache tests
codes = {}  # code -> what /authorize was asked, until /token redeems it (once)
lock = threading.Lock()
settings = {"issuer": "", "client_secret": None}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rotate():
    """Publishes a new signing key in place of the old one; its kid."""
    with lock:
        signing["n"] += 1
        signing["key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing["kid"] = f"k{signing['n']}"
        return signing["kid"]


def jwks():
    with lock:
        key, kid = signing["key"], signing["kid"]
    pub = key.public_key().public_numbers()
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                      "n": b64url_uint(pub.n), "e": b64url_uint(pub.e)}]}


def discovery():
    base = settings["issuer"]
    return {
        "issuer": base,
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/token",
        "jwks_uri": base + "/jwks",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "at_hash", "email",
                             "email_verified", "given_name", "family_name", "groups"],
    }


def at_hash(access_token):
    """OIDC Core 3.1.3.6: the left half of SHA-256 (RS256's hash) of the token, base64url."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


def id_token(grant, access_token, client_secret):
    """The ID token for GRANT (what /authorize stored), forged as its case says."""
    case, now = grant["case"], int(time.time())
    claims = {
        "iss": settings["issuer"],
        "sub": grant["sub"],
        "aud": grant["client_id"],
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "email": grant["email"],
        "email_verified": True,
        "given_name": "Forge",
        "family_name": "User",
        "at_hash": at_hash(access_token),
    }
    if grant["nonce"] is not None:
        claims["nonce"] = grant["nonce"]
    if grant["groups"] is not None:
        claims["groups"] = grant["groups"]
    if case == "wrong-issuer":
        claims["iss"] = settings["issuer"] + "/other"
    elif case == "wrong-audience":
        claims["aud"] = "someone-else"
    elif case == "extra-audience":
        claims["aud"] = [grant["client_id"], "someone-else"]
    elif case == "expired":
        claims["iat"], claims["exp"] = now - 3600, now - 1800
    elif case == "wrong-nonce":
        claims["nonce"] = "forged-" + secrets.token_urlsafe(16)
    elif case == "bad-at-hash":
        claims["at_hash"] = at_hash(secrets.token_urlsafe(32))
    with lock:
        key, kid = signing["key"], signing["kid"]
    header = {"kid": kid}
    if case == "rogue-key":
        return jwt.encode(claims, ROGUE, algorithm="RS256", headers=header)
    if case == "alg-none":
        return jwt.encode(claims, None, algorithm="none", headers=header)
    if case == "hs256":
        # Deliberately weak (a short client secret as HMAC key): silence PyJWT's warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return jwt.encode(claims, client_secret.encode(), algorithm="HS256", headers=header)
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


class OAuthError(Exception):
    """An OAuth error answer: HTTP status, `error` and `error_description`."""

    def __init__(self, status, error, description):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def one(params, name, required=True):
    """The single value of NAME in parsed query/form PARAMS (None when absent and optional)."""
    values = params.get(name, [])
    if len(values) > 1:
        raise OAuthError(400, "invalid_request", f"{name} given more than once")
    if not values or values[0] == "":
        if required:
            raise OAuthError(400, "invalid_request", f"{name} is missing")
        return None
    return values[0]


def authorize(params):
    """Checks an authorization request, stores a code for it; returns the redirect URL."""
    if one(params, "response_type") != "code":
        raise OAuthError(400, "unsupported_response_type", "only response_type=code")
    client_id = one(params, "client_id")
    redirect_uri = one(params, "redirect_uri")
    target = urlparse(redirect_uri)
    if target.scheme not in ("http", "https") or not target.netloc or target.fragment:
        raise OAuthError(400, "invalid_request", "redirect_uri must be an absolute URL")
    if "openid" not in one(params, "scope").split():
        raise OAuthError(400, "invalid_scope", "scope must include openid")
    challenge = one(params, "code_challenge")
    if one(params, "code_challenge_method") != "S256":
        raise OAuthError(400, "invalid_request", "code_challenge_method must be S256")
    if len(challenge) != 43:
        raise OAuthError(400, "invalid_request", "code_challenge is not a SHA-256 in base64url")
    case = one(params, "case", required=False) or "valid"
    if case not in CASES:
        raise OAuthError(400, "invalid_request", f"unknown case {case!r}; known: {', '.join(CASES)}")
    groups = one(params, "groups", required=False)
    code = secrets.token_urlsafe(32)
    with lock:
        codes[code] = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "challenge": challenge,
            "scope": one(params, "scope"),
            "nonce": one(params, "nonce", required=False),
            "case": case,
            "sub": one(params, "sub", required=False) or "forge-sub",
            "email": one(params, "email", required=False) or "forge@example.com",
            "groups": groups.split(",") if groups is not None else None,
            "expires": time.time() + CODE_LIFETIME,
        }
    state = one(params, "state", required=False)
    if case == "wrong-state":
        state = "forged-" + secrets.token_urlsafe(16)
    back = {"code": code}
    if state is not None:
        back["state"] = state
    return redirect_uri + ("&" if target.query else "?") + urlencode(back)


def client_auth(headers, form):
    """(client_id, client_secret or None) from HTTP Basic (RFC 6749 2.3.1: each part
    form-urlencoded) or the form body; refuses both at once and neither."""
    basic = headers.get("Authorization")
    body_id = one(form, "client_id", required=False)
    body_secret = one(form, "client_secret", required=False)
    if basic is not None:
        if body_secret is not None:
            raise OAuthError(400, "invalid_request", "more than one client authentication")
        scheme, _, value = basic.partition(" ")
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except ValueError:
            user, sep = "", ""
        if scheme.lower() != "basic" or not sep:
            raise OAuthError(401, "invalid_client", "malformed Authorization header")
        client_id, secret = unquote_plus(user), unquote_plus(password)
        if body_id is not None and body_id != client_id:
            raise OAuthError(400, "invalid_request", "client_id differs from the Basic user")
    elif body_id is not None:
        client_id, secret = body_id, body_secret
    else:
        raise OAuthError(401, "invalid_client", "no client authentication")
    expected = settings["client_secret"]
    if expected is not None and secret != expected:
        raise OAuthError(401, "invalid_client", "wrong client secret")
    return client_id, secret


def token(headers, form):
    """Redeems a code (once) like a strict provider; returns the token response."""
    client_id, secret = client_auth(headers, form)
    if one(form, "grant_type") != "authorization_code":
        raise OAuthError(400, "unsupported_grant_type", "only authorization_code")
    with lock:
        grant = codes.pop(one(form, "code"), None)  # single use, even when refused below
    if grant is None or grant["expires"] < time.time():
        raise OAuthError(400, "invalid_grant", "unknown, used or expired code")
    if grant["client_id"] != client_id:
        raise OAuthError(400, "invalid_grant", "the code was issued to another client")
    if one(form, "redirect_uri", required=False) != grant["redirect_uri"]:
        raise OAuthError(400, "invalid_grant", "redirect_uri differs from the authorization request")
    verifier = one(form, "code_verifier", required=False)
    if verifier is None or not VERIFIER.fullmatch(verifier):
        raise OAuthError(400, "invalid_grant", "code_verifier is missing or malformed")
    if b64url(hashlib.sha256(verifier.encode("ascii")).digest()) != grant["challenge"]:
        raise OAuthError(400, "invalid_grant", "code_verifier does not match code_challenge")
    if grant["case"] == "hs256" and not secret:
        raise OAuthError(400, "invalid_request", "case hs256 needs a client secret")
    access = secrets.token_urlsafe(32)
    answer = {"access_token": access, "token_type": "Bearer",
              "expires_in": TOKEN_LIFETIME, "scope": grant["scope"]}
    if grant["case"] != "no-id-token":
        answer["id_token"] = id_token(grant, access, secret)
    return answer


class Handler(BaseHTTPRequestHandler):
    server_version = "oidc-forge"

    def send(self, status, body=b"", ctype="application/json", extra=()):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj, extra=()):
        self.send(status, json.dumps(obj).encode(), extra=extra)

    def send_error_json(self, e):
        extra = [("WWW-Authenticate", 'Basic realm="oidc-forge"')] if e.status == 401 else []
        self.send_json(e.status, {"error": e.error, "error_description": e.description}, extra)

    def do_GET(self):
        url = urlparse(self.path)
        try:
            if url.path == "/.well-known/openid-configuration":
                with lock:
                    hits["discovery"] += 1
                self.send_json(200, discovery())
            elif url.path == "/jwks":
                with lock:
                    hits["jwks"] += 1
                self.send_json(200, jwks())
            elif url.path == "/stats":
                with lock:
                    self.send_json(200, dict(hits))
            elif url.path == "/authorize":
                self.send(302, extra=[("Location", authorize(parse_qs(url.query)))])
            elif url.path == "/healthz":
                self.send(200, b"ok\n", "text/plain")
            else:
                self.send_json(404, {"error": "not_found"})
        except OAuthError as e:
            self.send_error_json(e)

    def do_POST(self):
        url = urlparse(self.path)
        if url.path == "/rotate":
            return self.send_json(200, {"kid": rotate()})
        if url.path != "/token":
            return self.send_json(404, {"error": "not_found"})
        try:
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                raise OAuthError(400, "invalid_request", "the body must be a form")
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            self.send_json(200, token(self.headers, form), [("Pragma", "no-cache")])
        except OAuthError as e:
            self.send_error_json(e)

    def log_message(self, fmt, *args):
        if os.environ.get("OIDC_FORGE_LOG"):
            sys.stderr.write("forge: " + fmt % args + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--client-secret", help="require this client secret at /token")
    args = p.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    settings["issuer"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    settings["client_secret"] = args.client_secret
    print(f"listening {settings['issuer']}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
