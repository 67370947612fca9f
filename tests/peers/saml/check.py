"""Self-test of the SAML test IdP (idp.py): starts it, registers a hand-written SP,
sends a hand-built HTTP-Redirect AuthnRequest, fetches every case and checks its
shape and, with the xmlsec1 CLI, which signatures verify against /cert.
Run: target/venv-identity/bin/python tests/peers/saml/check.py  (or check.sh)"""

import base64
import hashlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS, "md": "urn:oasis:names:tc:SAML:2.0:metadata"}
SP = "http://sluice.test/saml/TEST/metadata"
ACS = "http://sluice.test/saml/TEST/acs"
SP_METADATA = f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{SP}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="{ACS}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"""

failures = []
passed = [0]


def check(cond, what):
    passed[0] += bool(cond)
    if not cond:
        failures.append(what)
        print("FAIL", what)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def authn_request(base, req_id, sp=SP, acs=ACS):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (f'<samlp:AuthnRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{req_id}" '
           f'Version="2.0" IssueInstant="{now}" Destination="{base}/sso" '
           f'AssertionConsumerServiceURL="{acs}" '
           f'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">'
           f'<saml:Issuer>{sp}</saml:Issuer>'
           f'<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" '
           f'AllowCreate="true"/></samlp:AuthnRequest>')
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml.encode()) + c.flush()).decode()


def verify(path, cert, nth):
    """True when the NTH (1-based) ds:Signature of PATH verifies with CERT."""
    r = subprocess.run(
        ["xmlsec1", "--verify", "--pubkey-cert-pem", cert,
         "--id-attr:ID", f"{SAML}:Assertion", "--id-attr:ID", f"{SAMLP}:Response",
         "--node-xpath", f"(//*[local-name()='Signature' and namespace-uri()='{DS}'])[{nth}]", path],
        capture_output=True, text=True)
    return r.returncode == 0 and "\nOK\n" in "\n" + r.stdout + r.stderr


def naive_verify(root, sig, cert_path):
    """Verifies SIG in-process the way many SPs do: the enveloped transform just drops
    SIG from the referenced subtree (when it is inside it), then exclusive c14n."""
    ref = sig.find("ds:SignedInfo/ds:Reference", NS)
    targets = root.xpath("//*[@ID=$id]", id=ref.get("URI")[1:])
    if len(targets) != 1:
        return False
    target, parent = targets[0], sig.getparent()
    inside = any(a is target for a in sig.iterancestors())
    if inside:
        index = parent.index(sig)
        parent.remove(sig)
    try:
        data = etree.tostring(target, method="c14n", exclusive=True, with_comments=False)
    finally:
        if inside:
            parent.insert(index, sig)
    sha1 = ref.find("ds:DigestMethod", NS).get("Algorithm").endswith("sha1")
    digest = hashlib.sha1(data) if sha1 else hashlib.sha256(data)
    if base64.b64encode(digest.digest()).decode() != ref.find("ds:DigestValue", NS).text.strip():
        return False
    info = etree.tostring(sig.find("ds:SignedInfo", NS), method="c14n", exclusive=True, with_comments=False)
    alg = sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm")
    value = base64.b64decode("".join(sig.find("ds:SignatureValue", NS).text.split()))
    with open(cert_path, "rb") as f:
        key = x509.load_pem_x509_certificate(f.read()).public_key()
    try:
        key.verify(value, info, padding.PKCS1v15(), hashes.SHA1() if alg.endswith("sha1") else hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def main():
    work = tempfile.mkdtemp(prefix="saml-idp-check-")
    idp = subprocess.Popen([sys.executable, os.path.join(HERE, "idp.py"), "--port", "0", "--dir", work],
                           stdout=subprocess.PIPE, text=True)
    try:
        line = idp.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:"), line
        run(line.split()[1], work)
    finally:
        idp.terminate()
        idp.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed[0]} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


def run(base, work):
    cert, other = os.path.join(work, "idp-cert.pem"), os.path.join(work, "other-cert.pem")
    status, body = get(base + "/metadata")
    md = etree.fromstring(body)
    check(status == 200 and md.get("entityID") == base + "/metadata", "metadata entityID")
    sso = md.find("md:IDPSSODescriptor/md:SingleSignOnService", NS)
    check(sso is not None and sso.get("Location") == base + "/sso", "metadata SSO location")
    pem = get(base + "/cert")[1].decode()
    mdcert = md.find(".//ds:X509Certificate", NS).text
    check(mdcert == "".join(l for l in pem.splitlines() if "---" not in l), "metadata cert == /cert")

    req = urllib.request.Request(base + "/sp", data=SP_METADATA.encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        check(r.status == 204, "POST /sp -> 204")
    req = urllib.request.Request(base + "/sp", data=SP_METADATA.replace("TEST", "OTHER").encode(),
                                 method="POST")
    with urllib.request.urlopen(req) as r:
        check(r.status == 204, "POST second /sp -> 204")

    def fetch(case, path="/sso", **params):
        if path == "/sso":
            params.setdefault("SAMLRequest", authn_request(base, "_req" + case.replace("-", "")))
            params.setdefault("RelayState", "relay-" + case)
        q = urllib.parse.urlencode(dict(params, case=case), doseq=True)
        status, body = get(f"{base}{path}?{q}")
        check(status == 200, f"{case}: status {status} {body[:300]!r}")
        out = json.loads(body)
        xml = base64.b64decode(out["SAMLResponse"])
        fd, p = tempfile.mkstemp(suffix=".xml", dir=work)
        os.write(fd, xml)
        os.close(fd)
        return out, xml, p

    def sigs_ok(case, path, root, expect_owner_tags, certfile=cert, ok=True):
        sigs = root.xpath("//ds:Signature", namespaces=NS)
        owners = [etree.QName(s.getparent()).localname for s in sigs]
        check(owners == expect_owner_tags, f"{case}: signatures under {owners}, want {expect_owner_tags}")
        for i in range(1, len(sigs) + 1):
            check(verify(path, certfile, i) == ok, f"{case}: signature {i} verify != {ok}")
        return sigs

    def first_nameid(root):
        return "".join(root.xpath("//saml:NameID", namespaces=NS)[0].itertext())

    # the valid case in detail
    out, xml, p = fetch("valid")
    root = etree.fromstring(xml)
    check(out["acs"] == ACS and out["RelayState"] == "relay-valid", "valid: acs/RelayState")
    check(root.get("InResponseTo") == "_reqvalid" and root.get("Destination") == ACS, "valid: Response attrs")
    a = root.find("saml:Assertion", NS)
    check(list(root)[1].tag == f"{{{DS}}}Signature" and list(a)[1].tag == f"{{{DS}}}Signature",
          "valid: Signature right after Issuer")
    sigs = sigs_ok("valid", p, root, ["Response", "Assertion"])
    check(all(naive_verify(root, s, cert) for s in sigs), "valid: in-process verifier agrees")
    check(not naive_verify(root, sigs[0], os.path.join(work, "other-cert.pem")), "valid: wrong key fails")
    nameid = root.find(".//saml:NameID", NS)
    nameid.text = "eve@evil.example"
    check(not any(naive_verify(root, s, cert) for s in sigs), "valid: tampered NameID fails")
    nameid.text = "ada@example.com"
    refs = [s.find(".//ds:Reference", NS).get("URI") for s in sigs]
    check(refs == ["#" + root.get("ID"), "#" + a.get("ID")], f"valid: references {refs}")
    algs = {e.get("Algorithm") for e in root.xpath("//ds:SignedInfo//*[@Algorithm]", namespaces=NS)}
    check(algs == {"http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                   "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
                   "http://www.w3.org/2001/04/xmlenc#sha256"}, f"valid: algorithms {algs}")
    check(first_nameid(root) == "ada@example.com", "valid: NameID")
    scd = a.find(".//saml:SubjectConfirmationData", NS)
    check(scd.get("Recipient") == ACS and scd.get("InResponseTo") == "_reqvalid", "valid: SCD")
    check(a.find(".//saml:Audience", NS).text == SP, "valid: Audience")
    check(a.find("saml:AuthnStatement", NS) is not None, "valid: AuthnStatement")
    attrs = {x.get("Name"): [v.text for v in x] for x in a.iterfind(".//saml:Attribute", NS)}
    check(attrs == {"email": ["ada@example.com"], "firstName": ["Ada"], "lastName": ["Example"]},
          f"valid: attributes {attrs}")

    out, xml, p = fetch("valid", email="grace.hopper@navy.example",
                        **{"attr.firstName": "Amazing", "attr.groups": ["eng", "ops"]})
    root = etree.fromstring(xml)
    attrs = {x.get("Name"): [v.text for v in x] for x in root.iterfind(".//saml:Attribute", NS)}
    check(attrs == {"email": ["grace.hopper@navy.example"], "firstName": ["Amazing"],
                    "lastName": ["Hopper"], "groups": ["eng", "ops"]}, f"attr overrides: {attrs}")
    check(first_nameid(root) == "grace.hopper@navy.example", "email param -> NameID")

    out, xml, p = fetch("valid", "/initiate", sp=SP)
    root = etree.fromstring(xml)
    check(out["acs"] == ACS and out["RelayState"] is None, "initiate: acs/RelayState")
    check(not root.xpath("//@InResponseTo"), "initiate: no InResponseTo")
    sigs_ok("initiate", p, root, ["Response", "Assertion"])
    out, xml, p = fetch("valid", "/initiate", sp=SP.replace("TEST", "OTHER"))
    check(out["acs"] == ACS.replace("TEST", "OTHER"), "initiate: second SP's ACS")

    status, _ = get(f"{base}/initiate?sp=http://nobody.example/")
    check(status == 400, "initiate: unknown SP -> 400")
    status, _ = get(f"{base}/sso?case=nope&" + urllib.parse.urlencode({"SAMLRequest": authn_request(base, "_r")}))
    check(status == 400, "unknown case -> 400")

    simple = {
        "valid-assertion-signed": ["Assertion"],
        "valid-response-signed": ["Response"],
        "unsigned": [],
        "sha1": ["Response", "Assertion"],
        "expired": ["Response", "Assertion"],
        "not-yet-valid": ["Response", "Assertion"],
        "wrong-audience": ["Response", "Assertion"],
        "wrong-recipient": ["Response", "Assertion"],
        "wrong-destination": ["Response", "Assertion"],
        "wrong-issuer": ["Response", "Assertion"],
        "failed-status": ["Response"],
        "comment-in-nameid": ["Response", "Assertion"],
        "huge": ["Response", "Assertion"],
        "two-assertions": ["Response", "Assertion", "Assertion"],
    }
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for case, owners in simple.items():
        out, xml, p = fetch(case)
        root = etree.fromstring(xml, etree.XMLParser(huge_tree=True))
        sigs_ok(case, p, root, owners)
        cond = root.find(".//saml:Conditions", NS)
        if case == "sha1":
            check(root.find(".//ds:SignatureMethod", NS).get("Algorithm").endswith("rsa-sha1"), "sha1 alg")
        if case == "expired":
            check(cond.get("NotOnOrAfter") < now, "expired: NotOnOrAfter in the past")
        if case == "not-yet-valid":
            check(cond.get("NotBefore") > now, "not-yet-valid: NotBefore in the future")
        if case == "wrong-audience":
            check(root.find(".//saml:Audience", NS).text == "https://evil.example/sp", case)
        if case == "wrong-recipient":
            check(root.find(".//saml:SubjectConfirmationData", NS).get("Recipient") == "https://evil.example/acs"
                  and root.get("Destination") == ACS, case)
        if case == "wrong-destination":
            check(root.get("Destination") == "https://evil.example/acs", case)
        if case == "wrong-issuer":
            check({i.text for i in root.iterfind(".//saml:Issuer", NS)} == {"https://evil.example/idp"}, case)
        if case == "failed-status":
            codes = [c.get("Value").rsplit(":", 1)[1] for c in root.iter(f"{{{SAMLP}}}StatusCode")]
            check(codes == ["Responder", "AuthnFailed"] and root.find("saml:Assertion", NS) is None, case)
        if case == "comment-in-nameid":
            nid = root.find(".//saml:NameID", NS)
            check(nid.text == "victim@example.com" and "".join(nid.itertext()) ==
                  "victim@example.com.attacker.example", case)
        if case == "huge":
            check(len(xml) > 2 * 1024 * 1024, "huge: size")
        if case == "two-assertions":
            ids = [x.get("ID") for x in root.iterfind("saml:Assertion", NS)]
            check(len(set(ids)) == 2, case)

    out, xml, p = fetch("wrong-cert")
    root = etree.fromstring(xml)
    sigs_ok("wrong-cert", p, root, ["Response", "Assertion"], ok=False)
    sigs_ok("wrong-cert/other", p, root, ["Response", "Assertion"], certfile=other, ok=True)

    # XSW: one signature, whose Reference resolves to the genuine (victim) element; it
    # verifies under "remove the Signature from the referenced subtree" enveloped
    # semantics, and xmlsec1 (spec semantics + Signature content model) still accepts
    # 2,3,4,5,7. The identity a naive SP reads is the forged one.
    xmlsec_ok = {1: False, 2: True, 3: True, 4: True, 5: True, 6: False, 7: True, 8: False}
    for n in range(1, 9):
        case = f"xsw{n}"
        out, xml, p = fetch(case)
        root = etree.fromstring(xml)
        sigs = root.xpath("//ds:Signature", namespaces=NS)
        check(len(sigs) == 1, f"{case}: one signature")
        check(naive_verify(root, sigs[0], cert), f"{case}: genuine signature verifies (DOM semantics)")
        check(verify(p, cert, 1) == xmlsec_ok[n], f"{case}: xmlsec1 verify != {xmlsec_ok[n]}")
        target = root.xpath("//*[@ID=$id]", id=sigs[0].find(".//ds:Reference", NS).get("URI")[1:])
        check(len(target) == 1, f"{case}: Reference resolves once")
        check("victim@example.com" in list(target[0].itertext()), f"{case}: signed content is victim")
        naive = "(//saml:Assertion)[1]" if n == 7 else "/samlp:Response/saml:Assertion[1]"
        nid = root.xpath(naive + "/saml:Subject/saml:NameID", namespaces=NS)[0].text
        check(nid == "eve@evil.example", f"{case}: naive NameID is {nid}")
        check(root.xpath("count(//saml:Assertion)", namespaces=NS) == 2, f"{case}: two assertions")
    out, xml, p = fetch("xsw3", email="mallory@evil.example")
    check(first_nameid(etree.fromstring(xml)) == "mallory@evil.example", "xsw3: email param is forged id")

    out, xml, p = fetch("doctype")
    check(b"<!DOCTYPE" in xml and b"&lol9;" in xml and b"<!ENTITY lol9" in xml, "doctype")
    out, xml, p = fetch("malformed")
    try:
        etree.fromstring(xml)
        check(False, "malformed parses")
    except etree.XMLSyntaxError:
        pass


if __name__ == "__main__":
    main()
