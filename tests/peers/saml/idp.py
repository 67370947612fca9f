#!/usr/bin/env python3
"""A real SAML 2.0 identity provider on loopback, for Sluice's SAML SP tests.

Run:  target/venv-identity/bin/python tests/peers/saml/idp.py --port 0 --dir SCRATCH
It prints one line, `listening http://127.0.0.1:PORT`, then serves until killed.
Offline: idp.py make --case CASE --sp-metadata FILE [--email E] [--in-response-to ID]
prints the base64 SAMLResponse (keys are made in --dir, a temp dir by default).

pysaml2 parses the AuthnRequests and builds the Responses; lxml mutates them for the
negative cases; the xmlsec1 CLI signs (enveloped, exclusive c14n, RSA-SHA256/SHA-256,
one Reference "#ID" per Signature, the Signature placed right after the Issuer).

Endpoints (base = http://127.0.0.1:PORT, IdP entityID = base/metadata):
  GET  /metadata   IdP metadata XML
  GET  /cert       the IdP signing certificate (PEM)
  POST /sp         body = SP metadata XML; registers or replaces that SP; 204
  GET  /sso        ?SAMLRequest=..&RelayState=..&email=..&case=..&attr.NAME=VALUE..
  GET  /initiate   ?sp=SP_ENTITY_ID&RelayState=..&email=..&case=..&attr.NAME=VALUE..
       both answer 200 {"acs": URL, "SAMLResponse": base64, "RelayState": str|null}

XML Signature Wrapping cases (the permutations of Somorovsky et al., "On Breaking
SAML: Be Whoever You Want to Be", 2012, as SAML Raider's XSW1..XSW8 arrange them).
In every one the genuine, validly signed content is for victim@example.com and the
forged content is for the `email` parameter (default eve@evil.example); the forged
element gets a fresh ID "_evil_..." and the genuine signature still verifies over
the element its Reference names. "copy" below means the genuine element without its
own Signature, which is exactly what the enveloped transform digested.
  xsw1  Response signed. The root Response becomes the forged one (new ID, forged
        assertion) and keeps the Signature; the genuine Response copy is appended
        as the last child of that Signature.
  xsw2  as xsw1, but the genuine Response copy is inserted as a sibling just before
        the Signature (a detached signature over it).
  xsw3  Assertion signed. A forged, unsigned Assertion is inserted before the
        genuine signed Assertion: Response/{Issuer, Status, forged, genuine}.
  xsw4  Assertion signed. The forged, unsigned Assertion replaces the genuine one as
        the Response child, and the genuine signed Assertion becomes the forged
        Assertion's last child.
  xsw5  Assertion signed. The first Assertion is rewritten into the forged one (new
        ID) but keeps the genuine Signature; a copy of the genuine Assertion is
        appended as the Response's last child.
  xsw6  as xsw5, but the genuine copy is appended inside the forged Assertion's
        Signature element.
  xsw7  Assertion signed. A samlp:Extensions element (right after the Response
        Issuer) holds a forged, unsigned Assertion; the genuine signed Assertion
        stays where it was. An SP taking the first Assertion in document order
        reads the forged one. (SAML Raider puts the forged copy in Extensions too.)
  xsw8  as xsw6, but the genuine copy sits in a ds:Object inside the forged
        Assertion's Signature.
"""

import argparse
import base64
import copy
import datetime
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

warnings.filterwarnings("ignore")  # pysaml2 pulls in deprecated cryptography names

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from lxml import etree  # noqa: E402
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # noqa: E402
from saml2.authn_context import PASSWORD  # noqa: E402
from saml2.config import IdPConfig  # noqa: E402
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID  # noqa: E402
from saml2.server import Server  # noqa: E402

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS, "md": MD}
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
ATTR_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
EVIL = "https://evil.example"
VICTIM = "victim@example.com"
XMLSEC = os.environ.get("XMLSEC1") or shutil.which("xmlsec1") or "/usr/bin/xmlsec1"

CASES = [
    "valid", "valid-assertion-signed", "valid-response-signed", "unsigned",
    "wrong-cert", "sha1", "expired", "not-yet-valid", "wrong-audience",
    "wrong-recipient", "wrong-destination", "wrong-issuer", "failed-status",
    "comment-in-nameid", "xsw1", "xsw2", "xsw3", "xsw4", "xsw5", "xsw6", "xsw7",
    "xsw8", "doctype", "malformed", "huge", "two-assertions",
]


class CaseError(Exception):
    pass


# ---------------------------------------------------------------- keys


def keypair(directory, name, common_name):
    """DIR/NAME-key.pem and DIR/NAME-cert.pem: RSA-2048, self-signed, made once."""
    key_path = os.path.join(directory, f"{name}-key.pem")
    cert_path = os.path.join(directory, f"{name}-cert.pem")
    if not (os.path.exists(key_path) and os.path.exists(cert_path)):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def cert_base64(cert_path):
    with open(cert_path) as f:
        return "".join(line for line in f.read().splitlines() if "-----" not in line)


# ---------------------------------------------------------------- signing


def q(ns, tag):
    return f"{{{ns}}}{tag}"


def ds(tag, parent=None, **attrs):
    if parent is None:
        return etree.Element(q(DS, tag), nsmap={"ds": DS}, **attrs)
    return etree.SubElement(parent, q(DS, tag), **attrs)


def signature_template(ref_id, sha1=False):
    sig = ds("Signature")
    info = ds("SignedInfo", sig)
    ds("CanonicalizationMethod", info, Algorithm=EXC_C14N)
    ds("SignatureMethod", info, Algorithm=RSA_SHA1 if sha1 else RSA_SHA256)
    ref = ds("Reference", info, URI="#" + ref_id)
    transforms = ds("Transforms", ref)
    ds("Transform", transforms, Algorithm=ENVELOPED)
    ds("Transform", transforms, Algorithm=EXC_C14N)
    ds("DigestMethod", ref, Algorithm=SHA1 if sha1 else SHA256)
    ds("DigestValue", ref)
    ds("SignatureValue", sig)
    ds("X509Data", ds("KeyInfo", sig))
    return sig


def by_id(root, ident):
    found = root.xpath("//*[@ID=$id]", id=ident)
    if len(found) != 1:
        raise CaseError(f"{len(found)} elements with ID {ident}")
    return found[0]


def sign(root, ref_id, keys, sha1=False, workdir=None):
    """Signs the element with ID ref_id (enveloped, Signature right after its Issuer)
    with the xmlsec1 CLI; returns the new document root."""
    target = by_id(root, ref_id)
    target.find(q(SAML, "Issuer")).addnext(signature_template(ref_id, sha1))
    key, cert = keys
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src, out = os.path.join(tmp, "in.xml"), os.path.join(tmp, "out.xml")
        with open(src, "wb") as f:
            f.write(etree.tostring(root.getroottree()))
        run = subprocess.run(
            [XMLSEC, "--sign", "--privkey-pem", f"{key},{cert}",
             "--id-attr:ID", f"{SAML}:Assertion", "--id-attr:ID", f"{SAMLP}:Response",
             "--node-xpath",
             "//*[local-name()='Signature'][*[local-name()='SignatureValue'][not(normalize-space())]]",
             "--output", out, src],
            capture_output=True, text=True)
        if run.returncode != 0:
            raise CaseError("xmlsec1 --sign failed: " + run.stderr.strip()[-600:])
        with open(out, "rb") as f:
            return parse(f.read())


def parse(data):
    return etree.fromstring(data, etree.XMLParser(huge_tree=True, remove_blank_text=False))


def serialize(root):
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


# ---------------------------------------------------------------- building


def utc(minutes=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix="_"):
    return prefix + secrets.token_hex(16)


def default_names(email):
    local, _, domain = email.partition("@")
    parts = [p for p in local.replace("_", ".").split(".") if p]
    if len(parts) >= 2:
        return parts[0].title(), " ".join(parts[1:]).title()
    return (local or "user").title(), (domain.split(".")[0] or "user").title()


def attributes_for(email, extra):
    """[(name, [values])]: email, firstName, lastName (derived from the email) and
    then the attr.NAME parameters, which override or add, in their order."""
    first, last = default_names(email)
    attrs = {"email": [email], "firstName": [first], "lastName": [last]}
    for name, values in extra:
        attrs[name] = list(values)
    return list(attrs.items())


def attribute_statement(attrs):
    stmt = etree.Element(q(SAML, "AttributeStatement"))
    for name, values in attrs:
        attr = etree.SubElement(stmt, q(SAML, "Attribute"), Name=name, NameFormat=ATTR_BASIC)
        for value in values:
            v = etree.SubElement(attr, q(SAML, "AttributeValue"), nsmap={"xs": XS, "xsi": XSI})
            v.set(q(XSI, "type"), "xs:string")
            v.text = value
    return stmt


def set_identity(assertion, email, extra):
    """Makes ASSERTION about EMAIL: its NameID and its AttributeStatement."""
    assertion.find("saml:Subject/saml:NameID", NS).text = email
    for old in assertion.findall(q(SAML, "AttributeStatement")):
        assertion.remove(old)
    assertion.append(attribute_statement(attributes_for(email, extra)))


class Idp:
    def __init__(self, base, directory):
        self.base = base
        self.entity_id = base + "/metadata"
        self.dir = directory
        self.keys = keypair(directory, "idp", "Sluice test IdP")
        self.other = keypair(directory, "other", "Unrelated signer")
        self.sps = {}  # entityID -> metadata XML
        self.lock = threading.Lock()
        self.server = self._server()

    def _server(self):
        conf = {
            "entityid": self.entity_id,
            "service": {"idp": {
                "name": "Sluice test IdP",
                "endpoints": {"single_sign_on_service": [(self.base + "/sso", BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "want_authn_requests_signed": False,
                "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None}},
            }},
            "key_file": self.keys[0],
            "cert_file": self.keys[1],
            "xmlsec_binary": XMLSEC,
            "accepted_time_diff": 120,
            "metadata": {"inline": list(self.sps.values())} if self.sps else {},
        }
        return Server(config=IdPConfig().load(conf))

    def metadata(self):
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="{self.entity_id}">'
            f'<md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="{SAMLP}">'
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f'{cert_base64(self.keys[1])}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
            f'<md:NameIDFormat>{NAMEID_FORMAT_EMAILADDRESS}</md:NameIDFormat>'
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" Location="{self.base}/sso"/>'
            f'</md:IDPSSODescriptor></md:EntityDescriptor>\n'
        )

    def register(self, xml):
        root = parse(xml)
        if root.tag != q(MD, "EntityDescriptor") or root.find("md:SPSSODescriptor", NS) is None:
            raise CaseError("expected an md:EntityDescriptor with an md:SPSSODescriptor")
        entity = root.get("entityID")
        if not entity:
            raise CaseError("EntityDescriptor has no entityID")
        text = xml.decode() if isinstance(xml, bytes) else xml
        with self.lock:
            previous = dict(self.sps)
            self.sps[entity] = text
            try:
                self.server = self._server()
            except Exception:
                self.sps = previous
                raise
        return entity

    def acs_of(self, sp):
        with self.lock:
            if sp not in self.sps:
                raise CaseError(f"unknown SP {sp}; POST its metadata to /sp first")
            services = self.server.metadata.assertion_consumer_service(sp, binding=BINDING_HTTP_POST)
        if not services:
            raise CaseError(f"SP {sp} has no HTTP-POST AssertionConsumerService")
        return services[0]["location"]

    def sso(self, saml_request):
        """(sp entityID, ACS URL, request ID) from a HTTP-Redirect AuthnRequest."""
        with self.lock:
            req = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
            if req is None:
                raise CaseError("AuthnRequest did not parse")
            args = self.server.response_args(req.message, [BINDING_HTTP_POST])
        return args["sp_entity_id"], args["destination"], args["in_response_to"]

    # ------------------------------------------------------------ responses

    def base_response(self, sp, acs, in_response_to, email, extra, issuer=None):
        """An unsigned Response built by pysaml2, with our attribute statement."""
        with self.lock:
            resp = self.server.create_authn_response(
                {}, in_response_to, acs, sp,
                name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
                authn={"class_ref": PASSWORD, "authn_auth": self.entity_id},
                sign_response=False, sign_assertion=False, issuer=issuer)
        root = parse(str(resp).encode())
        if in_response_to is None:  # IdP-initiated: pysaml2 writes no InResponseTo anyway
            for el in root.xpath("//*[@InResponseTo]"):
                del el.attrib["InResponseTo"]
        set_identity(root.find(q(SAML, "Assertion")), email, extra)
        return root

    def make(self, case, sp, acs, in_response_to, email, extra):
        """The Response XML (bytes) for CASE."""
        if case not in CASES:
            raise CaseError(f"unknown case {case!r}; one of {', '.join(CASES)}")
        xsw = case.startswith("xsw")
        if email is None:
            email = "eve@evil.example" if xsw else "ada@example.com"
        wd = self.dir

        def build(who=email):
            return self.base_response(sp, acs, in_response_to, who, extra)

        def ids(root):
            return root.get("ID"), root.find(q(SAML, "Assertion")).get("ID")

        def both(root, keys=self.keys, sha1=False):
            rid, aid = ids(root)
            root = sign(root, aid, keys, sha1, wd)
            return sign(root, rid, keys, sha1, wd)

        if case == "valid":
            return serialize(both(build()))
        if case == "valid-assertion-signed":
            root = build()
            return serialize(sign(root, ids(root)[1], self.keys, workdir=wd))
        if case == "valid-response-signed":
            root = build()
            return serialize(sign(root, ids(root)[0], self.keys, workdir=wd))
        if case == "unsigned":
            return serialize(build())
        if case == "wrong-cert":
            return serialize(both(build(), keys=self.other))
        if case == "sha1":
            return serialize(both(build(), sha1=True))
        if case in ("expired", "not-yet-valid"):
            root = build()
            if case == "expired":
                issued, before, after = utc(-20), utc(-20), utc(-10)
            else:
                issued, before, after = utc(), utc(10), utc(15)
            for el in root.xpath("//*[@IssueInstant]"):
                el.set("IssueInstant", issued)
            for el in root.xpath("//saml:AuthnStatement", namespaces=NS):
                el.set("AuthnInstant", issued)
            cond = root.find("saml:Assertion/saml:Conditions", NS)
            cond.set("NotBefore", before)
            cond.set("NotOnOrAfter", after)
            for el in root.xpath("//saml:SubjectConfirmationData", namespaces=NS):
                el.set("NotOnOrAfter", after)
            return serialize(both(root))
        if case == "wrong-audience":
            root = build()
            root.find(".//saml:Audience", NS).text = EVIL + "/sp"
            return serialize(both(root))
        if case == "wrong-recipient":
            root = build()
            root.find(".//saml:SubjectConfirmationData", NS).set("Recipient", EVIL + "/acs")
            return serialize(both(root))
        if case == "wrong-destination":
            root = build()
            root.set("Destination", EVIL + "/acs")
            return serialize(both(root))
        if case == "wrong-issuer":
            root = self.base_response(sp, acs, in_response_to, email, extra)
            for issuer in root.xpath("//saml:Issuer", namespaces=NS):
                issuer.text = EVIL + "/idp"
            return serialize(both(root))
        if case == "failed-status":
            root = build()
            root.remove(root.find(q(SAML, "Assertion")))
            code = root.find("samlp:Status/samlp:StatusCode", NS)
            code.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")
            etree.SubElement(code, q(SAMLP, "StatusCode"),
                             Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed")
            msg = etree.SubElement(root.find(q(SAMLP, "Status")), q(SAMLP, "StatusMessage"))
            msg.text = "authentication failed"
            return serialize(sign(root, root.get("ID"), self.keys, workdir=wd))
        if case == "comment-in-nameid":
            root = build(VICTIM)
            for el in [root.find(".//saml:NameID", NS)] + root.xpath(
                    ".//saml:Attribute[@Name='email']/saml:AttributeValue", namespaces=NS):
                el.text = VICTIM
                comment = etree.Comment(" x ")
                comment.tail = ".attacker.example"
                el.append(comment)
            return serialize(both(root))
        if case == "two-assertions":
            root = build()
            first = root.find(q(SAML, "Assertion"))
            second = copy.deepcopy(first)
            second.set("ID", new_id())
            first.addnext(second)
            for a in (first.get("ID"), second.get("ID")):
                root = sign(root, a, self.keys, workdir=wd)
            return serialize(sign(root, root.get("ID"), self.keys, workdir=wd))
        if case == "huge":
            extra = list(extra) + [("blob", ["A" * (2 * 1024 * 1024)])]
            return serialize(both(self.base_response(sp, acs, in_response_to, email, extra)))
        if case == "doctype":
            body = serialize(build()).decode().split("?>", 1)[1].lstrip()
            ents = ['<!ENTITY lol0 "lol">'] + [
                f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10)]
            tag = body[1:body.index(" ")]
            body = body.replace(f">{email}</", ">&lol9;</", 1)
            doc = f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE {tag} [\n{"".join(ents)}\n]>\n{body}'
            return doc.encode()
        if case == "malformed":
            data = serialize(both(build()))
            return data[: len(data) // 2]
        if xsw:
            return serialize(self.xsw(int(case[3:]), sp, acs, in_response_to, email, extra))
        raise CaseError(f"case {case} not implemented")

    def xsw(self, n, sp, acs, in_response_to, evil, extra):
        wd = self.dir
        root = self.base_response(sp, acs, in_response_to, VICTIM, extra)
        if n in (1, 2):
            root = sign(root, root.get("ID"), self.keys, workdir=wd)
            genuine = copy.deepcopy(root)
            genuine.remove(genuine.find(q(DS, "Signature")))
            sig = root.find(q(DS, "Signature"))
            root.set("ID", new_id("_evil_"))
            set_identity(root.find(q(SAML, "Assertion")), evil, extra)
            root.find(q(SAML, "Assertion")).set("ID", new_id("_evil_"))
            if n == 1:
                sig.append(genuine)
            else:
                sig.addprevious(genuine)
            return root
        aid = root.find(q(SAML, "Assertion")).get("ID")
        root = sign(root, aid, self.keys, workdir=wd)
        signed = root.find(q(SAML, "Assertion"))
        forged = copy.deepcopy(signed)
        forged.set("ID", new_id("_evil_"))
        set_identity(forged, evil, extra)
        if n in (3, 4, 7):
            forged.remove(forged.find(q(DS, "Signature")))
            if n == 3:
                signed.addprevious(forged)
            elif n == 4:
                signed.addprevious(forged)
                forged.append(signed)  # moves it
            else:
                ext = etree.Element(q(SAMLP, "Extensions"))
                ext.append(forged)
                root.find(q(SAML, "Issuer")).addnext(ext)
            return root
        # 5, 6, 8: the forged assertion carries the genuine Signature.
        genuine = copy.deepcopy(signed)
        genuine.remove(genuine.find(q(DS, "Signature")))
        signed.addprevious(forged)
        root.remove(signed)
        sig = forged.find(q(DS, "Signature"))
        if n == 5:
            root.append(genuine)
        elif n == 6:
            sig.append(genuine)
        else:
            ds("Object", sig).append(genuine)
        return root


# ---------------------------------------------------------------- HTTP


def response_params(query):
    email = query.get("email", [None])[0]
    case = query.get("case", ["valid"])[0]
    extra = [(k[5:], v) for k, v in query.items() if k.startswith("attr.") and len(k) > 5]
    relay = query.get("RelayState", [None])[0]
    return email, case, extra, relay


class Handler(BaseHTTPRequestHandler):
    idp = None  # set by main
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("SAML_IDP_LOG"):
            sys.stderr.write("idp: " + fmt % args + "\n")

    def send(self, status, body=b"", ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)) if status != 204 else "0")
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def json(self, status, obj):
        self.send(status, json.dumps(obj), "application/json")

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            if url.path == "/metadata":
                return self.send(200, self.idp.metadata(), "application/samlmetadata+xml")
            if url.path == "/cert":
                with open(self.idp.keys[1]) as f:
                    return self.send(200, f.read(), "application/x-pem-file")
            if url.path in ("/sso", "/initiate"):
                email, case, extra, relay = response_params(query)
                if url.path == "/sso":
                    if "SAMLRequest" not in query:
                        raise CaseError("SAMLRequest is missing")
                    sp, acs, req_id = self.idp.sso(query["SAMLRequest"][0])
                else:
                    sp = query.get("sp", [None])[0]
                    if not sp:
                        raise CaseError("sp is missing")
                    acs, req_id = self.idp.acs_of(sp), None
                xml = self.idp.make(case, sp, acs, req_id, email, extra)
                return self.json(200, {"acs": acs, "SAMLResponse": base64.b64encode(xml).decode(),
                                       "RelayState": relay})
            return self.json(404, {"error": f"no route {url.path}"})
        except CaseError as e:
            return self.json(400, {"error": str(e)})
        except Exception as e:  # pysaml2 raises many kinds on bad requests
            return self.json(400, {"error": f"{type(e).__name__}: {e}"})

    def do_POST(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path != "/sp":
            return self.json(404, {"error": f"no route {url.path}"})
        try:
            self.idp.register(body)
        except Exception as e:
            return self.json(400, {"error": f"{type(e).__name__}: {e}"})
        return self.send(204)


def serve(args):
    if not os.environ.get("SAML_IDP_LOG"):  # errors reach the client as JSON anyway
        logging.getLogger("saml2").setLevel(logging.CRITICAL)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    os.makedirs(args.dir, exist_ok=True)
    Handler.idp = Idp(base, args.dir)
    print(f"listening {base}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


def make_offline(args):
    directory = args.dir or tempfile.mkdtemp(prefix="saml-idp-")
    os.makedirs(directory, exist_ok=True)
    idp = Idp(args.base, directory)
    with open(args.sp_metadata, "rb") as f:
        sp = idp.register(f.read())
    extra = {}
    for item in args.attr:
        name, _, value = item.partition("=")
        extra.setdefault(name, []).append(value)
    xml = idp.make(args.case, sp, idp.acs_of(sp), args.in_response_to, args.email,
                   list(extra.items()))
    print(base64.b64encode(xml).decode())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir")
    sub = p.add_subparsers(dest="cmd")
    m = sub.add_parser("make", help="print one base64 SAMLResponse and exit")
    m.add_argument("--case", default="valid", choices=CASES)
    m.add_argument("--sp-metadata", required=True)
    m.add_argument("--email")
    m.add_argument("--in-response-to")
    m.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE")
    m.add_argument("--base", default="http://127.0.0.1:0", help="IdP base URL (issuer = BASE/metadata)")
    m.add_argument("--dir", dest="dir")
    args = p.parse_args()
    if args.cmd == "make":
        return make_offline(args)
    if not args.dir:
        p.error("--dir is required")
    serve(args)


if __name__ == "__main__":
    main()
