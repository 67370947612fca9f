//! SAML 2.0 service provider (Web Browser SSO profile): SP metadata, the AuthnRequest
//! (HTTP-Redirect binding) and the verification of a Response posted to the ACS
//! (HTTP-POST binding).
//!
//! XML signatures are checked by `bergshamra-dsig` against the connection's IdP
//! certificates only (never a key the document carries). Around it sits Sluice's own
//! narrow profile, which is what keeps XML signature wrapping out:
//! - the document has no DTD, its root is a `samlp:Response`, and it holds exactly one
//!   `saml:Assertion` (no encrypted one), a direct child of the root;
//! - a signature counts only if it is a direct child of the element its single
//!   Reference points at, and that element is the root or that Assertion; its
//!   algorithms are RSA/ECDSA with SHA-256 or stronger, exclusive C14N, and only the
//!   enveloped-signature and exclusive C14N transforms;
//! - every value is read from the covered element by walking its children, never by a
//!   search of the whole document; a value element holding anything but text (a
//!   comment, an element) is refused.

use std::io::Write as _;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uppsala::{Document, NodeId, NodeKind};

/// Longest Response read (decoded XML).
pub const MAX_RESPONSE: usize = 256 * 1024;
/// Clock skew allowed against the identity provider's times.
pub const SKEW: TimeDelta = TimeDelta::seconds(120);
/// How old an IdP-initiated assertion may be (it answers no request of ours).
pub const UNSOLICITED_AGE: TimeDelta = TimeDelta::minutes(5);
/// Most attributes and values read from one assertion.
const MAX_VALUES: usize = 2_000;
/// Most attributes (namespace declarations included) on one element: checked before
/// parsing, which compares each attribute with the element's others.
const MAX_ATTRIBUTES: usize = 64;
/// Longest text of the document's own quoted back in a refusal (and the audit trail).
const MAX_ECHO: usize = 200;

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Signature algorithms accepted (RSA or ECDSA with SHA-256 or stronger).
const SIGNATURE_METHODS: [&str; 6] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
/// Digest algorithms accepted.
const DIGEST_METHODS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const EXC_C14N: [&str; 2] = [
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
];
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// A SAML connection's settings: the identity provider as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlSettings {
    /// The identity provider's entity id (the Issuer of its responses).
    pub idp_entity_id: String,
    /// Its single sign-on URL (HTTP-Redirect binding).
    pub sso_url: String,
    /// Its signing certificates (PEM); a response signed by any of them is accepted
    /// (two during a certificate rollover).
    pub certificates: Vec<String>,
    /// Accept sign-ins started at the identity provider (an app tile) as well as ones
    /// started here. Off by default: such a sign-in answers no request of Sluice's, so
    /// it cannot be bound to the browser that receives it.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Require the assertion itself to be signed (a signed Response alone is not
    /// enough). Off by default: either signature covers the assertion.
    #[serde(default)]
    pub want_assertions_signed: bool,
}

/// Why a SAML setting or response is refused.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    /// The settings or metadata are not usable.
    #[error("connection settings: {0}")]
    Settings(String),
    /// The posted form is not a base64 SAML response of a sane size.
    #[error("the SAML response is not readable: {0}")]
    Encoding(String),
    /// The XML does not parse (or has a DTD).
    #[error("the SAML response is not well-formed XML without a DTD: {0}")]
    Xml(String),
    /// The document is not the shape this profile accepts.
    #[error("the SAML response is not of the accepted shape: {0}")]
    Shape(String),
    /// The identity provider answered a failure.
    #[error("the identity provider answered {0}")]
    Status(String),
    /// No acceptable signature covers the assertion.
    #[error("the SAML response is not signed by the identity provider: {0}")]
    Signature(String),
    /// A signed value is not what this service provider expects.
    #[error("the SAML assertion is not for this sign-in: {0}")]
    Mismatch(String),
    /// Outside its validity window.
    #[error("the SAML assertion is {0}")]
    Time(String),
}

/// What a verified assertion says.
#[derive(Debug, Clone)]
pub struct Asserted {
    /// The assertion's ID (for replay detection).
    pub id: String,
    /// The request it answers (`None` when IdP-initiated).
    pub in_response_to: Option<String>,
    /// The NameID.
    pub name_id: String,
    /// Whether the NameID's format is email (then it stands in for a missing email).
    pub name_id_is_email: bool,
    /// Attributes by name, each a list of string values.
    pub attributes: Map<String, Value>,
    /// The assertion is no longer good after this.
    pub expires: DateTime<Utc>,
}

/// What the response must match, from this service provider's side.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The ACS URL (Destination, Recipient).
    pub acs: &'a str,
    /// The SP entity id (Audience).
    pub audience: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
}

/// This service provider's entity id for a connection (its metadata URL).
pub fn sp_entity_id(public_url: &str, connection: &str) -> String {
    format!(
        "{}/auth/saml/{connection}/metadata",
        public_url.trim_end_matches('/')
    )
}

/// The assertion consumer service URL for a connection.
pub fn acs_url(public_url: &str, connection: &str) -> String {
    format!(
        "{}/auth/saml/{connection}/acs",
        public_url.trim_end_matches('/')
    )
}

/// Escapes text for an XML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// This service provider's metadata, to give the identity provider.
pub fn sp_metadata(entity_id: &str, acs: &str, want_assertions_signed: bool) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"{METADATA}\" entityID=\"{entity}\">\
         <md:SPSSODescriptor AuthnRequestsSigned=\"false\" WantAssertionsSigned=\"{want_assertions_signed}\" \
         protocolSupportEnumeration=\"{PROTOCOL}\">\
         <md:NameIDFormat>{EMAIL_FORMAT}</md:NameIDFormat>\
         <md:AssertionConsumerService Binding=\"{HTTP_POST}\" Location=\"{acs}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>\n",
        entity = escape(entity_id),
        acs = escape(acs),
    )
}

/// A new AuthnRequest id (`_` and 32 hex digits: an NCName).
pub fn request_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format!("_{}", hex::encode(bytes)))
}

/// The URL that sends the browser to the identity provider with an AuthnRequest
/// (HTTP-Redirect binding: raw DEFLATE, base64, in the query). No RelayState: the
/// stored request, found by the response's `InResponseTo`, keeps where to go after.
pub fn authn_request_url(
    settings: &SamlSettings,
    sp_entity: &str,
    acs: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<String, SamlError> {
    let xml = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" \
         Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{destination}\" \
         AssertionConsumerServiceURL=\"{acs}\" ProtocolBinding=\"{HTTP_POST}\">\
         <saml:Issuer>{issuer}</saml:Issuer>\
         <samlp:NameIDPolicy Format=\"{EMAIL_FORMAT}\" AllowCreate=\"true\"/>\
         </samlp:AuthnRequest>",
        id = escape(id),
        instant = now.to_rfc3339_opts(SecondsFormat::Secs, true),
        destination = escape(&settings.sso_url),
        acs = escape(acs),
        issuer = escape(sp_entity),
    );
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate
        .write_all(xml.as_bytes())
        .map_err(|e| SamlError::Settings(e.to_string()))?;
    let packed = deflate
        .finish()
        .map_err(|e| SamlError::Settings(e.to_string()))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(packed);
    let mut url = reqwest::Url::parse(&settings.sso_url)
        .map_err(|e| SamlError::Settings(format!("ssoUrl: {e}")))?;
    url.query_pairs_mut().append_pair("SAMLRequest", &encoded);
    Ok(url.into())
}

/// Checks settings as an owner gives them: URLs, and certificates that load.
pub fn checked(settings: &SamlSettings) -> Result<SamlSettings, SamlError> {
    let entity = settings.idp_entity_id.trim();
    if entity.is_empty() || entity.len() > 1024 || entity.chars().any(char::is_control) {
        return Err(SamlError::Settings(
            "idpEntityId: 1 to 1024 characters".into(),
        ));
    }
    let sso = settings.sso_url.trim();
    let parsed =
        reqwest::Url::parse(sso).map_err(|e| SamlError::Settings(format!("ssoUrl: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.host_str().is_none()
        || sso.len() > 2048
    {
        return Err(SamlError::Settings(
            "ssoUrl: an http(s) URL of at most 2048 bytes".into(),
        ));
    }
    if settings.certificates.is_empty() || settings.certificates.len() > 4 {
        return Err(SamlError::Settings(
            "certificates: one to four PEM certificates".into(),
        ));
    }
    let mut certificates = Vec::new();
    for (i, pem) in settings.certificates.iter().enumerate() {
        let pem = pem.trim();
        if pem.len() > 16 * 1024 {
            return Err(SamlError::Settings(format!(
                "certificates[{i}]: at most 16 KiB"
            )));
        }
        bergshamra_keys::loader::load_x509_cert_pem(pem.as_bytes())
            .map_err(|e| SamlError::Settings(format!("certificates[{i}]: {e}")))?;
        certificates.push(format!("{pem}\n"));
    }
    Ok(SamlSettings {
        idp_entity_id: entity.to_owned(),
        sso_url: sso.to_owned(),
        certificates,
        allow_idp_initiated: settings.allow_idp_initiated,
        want_assertions_signed: settings.want_assertions_signed,
    })
}

/// Reads an identity provider's metadata XML: its entity id, HTTP-Redirect SSO URL
/// and signing certificates (the other settings off).
pub fn from_metadata(xml: &str) -> Result<SamlSettings, SamlError> {
    if xml.len() > MAX_RESPONSE {
        return Err(SamlError::Settings(format!(
            "metadataXml: at most {MAX_RESPONSE} bytes"
        )));
    }
    let doc = parse(xml).map_err(|e| SamlError::Settings(format!("metadataXml: {e}")))?;
    let bad = |why: &str| SamlError::Settings(format!("metadataXml: {why}"));
    let root = doc.document_element().ok_or_else(|| bad("empty"))?;
    if !is(&doc, root, METADATA, "EntityDescriptor") {
        return Err(bad("the root is not an md:EntityDescriptor"));
    }
    let entity = attr(&doc, root, "entityID").ok_or_else(|| bad("no entityID"))?;
    let idp = child(&doc, root, METADATA, "IDPSSODescriptor")
        .ok_or_else(|| bad("no md:IDPSSODescriptor"))?;
    let sso = children(&doc, idp, METADATA, "SingleSignOnService")
        .into_iter()
        .find(|&s| attr(&doc, s, "Binding") == Some(HTTP_REDIRECT))
        .and_then(|s| attr(&doc, s, "Location"))
        .ok_or_else(|| bad("no HTTP-Redirect SingleSignOnService"))?;
    let mut certificates = Vec::new();
    for key in children(&doc, idp, METADATA, "KeyDescriptor") {
        if attr(&doc, key, "use").is_some_and(|u| u != "signing") {
            continue;
        }
        let cert = child(&doc, key, DSIG, "KeyInfo")
            .and_then(|k| child(&doc, k, DSIG, "X509Data"))
            .and_then(|d| child(&doc, d, DSIG, "X509Certificate"));
        if let Some(cert) = cert {
            let b64: String = text(&doc, cert)
                .map_err(|_| bad("an X509Certificate holds more than text"))?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            certificates.push(format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ));
        }
    }
    checked(&SamlSettings {
        idp_entity_id: entity.to_owned(),
        sso_url: sso.to_owned(),
        certificates,
        allow_idp_initiated: false,
        want_assertions_signed: false,
    })
}

/// Decodes the ACS form's `SAMLResponse` (base64, whitespace allowed) into XML text.
pub fn decode(form_value: &str) -> Result<String, SamlError> {
    let compact: String = form_value
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() > MAX_RESPONSE / 3 * 4 + 4 {
        return Err(SamlError::Encoding(format!(
            "longer than {MAX_RESPONSE} bytes"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| SamlError::Encoding(format!("not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| SamlError::Encoding("not UTF-8".into()))
}

/// At most `MAX_ECHO` characters of text that came from outside.
fn echo(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_ECHO).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Whether an element carries more than [`MAX_ATTRIBUTES`] attributes: a linear scan
/// of the tags (comments, CDATA, PIs and the DOCTYPE skipped), made before parsing.
fn too_many_attributes(xml: &str) -> bool {
    let bytes = xml.as_bytes();
    let mut i = 0;
    while let Some(open) = bytes[i..].iter().position(|&b| b == b'<') {
        i += open + 1;
        let rest = &xml[i..];
        let skip_to = if rest.starts_with("!--") {
            Some("-->")
        } else if rest.starts_with("![CDATA[") {
            Some("]]>")
        } else if rest.starts_with('?') {
            Some("?>")
        } else if rest.starts_with('!') {
            Some(">")
        } else {
            None
        };
        if let Some(end) = skip_to {
            match rest.find(end) {
                Some(at) => i += at + end.len(),
                None => return false,
            }
            continue;
        }
        let mut quote = None;
        let mut attributes = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            match (quote, b) {
                (Some(q), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'=') => {
                    attributes += 1;
                    if attributes > MAX_ATTRIBUTES {
                        return true;
                    }
                }
                (None, b'>') => break,
                _ => {}
            }
        }
    }
    false
}

fn parse(xml: &str) -> Result<Document<'_>, String> {
    if too_many_attributes(xml) {
        return Err(format!(
            "an element has more than {MAX_ATTRIBUTES} attributes"
        ));
    }
    uppsala::Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(64)
        .parse(xml)
        .map_err(|e| e.to_string())
}

fn is(doc: &Document<'_>, node: NodeId, ns: &str, local: &str) -> bool {
    doc.element(node)
        .is_some_and(|e| e.name.matches(Some(ns), local))
}

/// An attribute without a namespace.
fn attr<'d>(doc: &'d Document<'_>, node: NodeId, name: &str) -> Option<&'d str> {
    doc.element(node)?
        .attributes
        .iter()
        .find(|a| a.name.namespace_uri.is_none() && *a.name.local_name == *name)
        .map(|a| &*a.value)
}

fn children(doc: &Document<'_>, node: NodeId, ns: &str, local: &str) -> Vec<NodeId> {
    doc.children_iter(node)
        .filter(|&c| is(doc, c, ns, local))
        .collect()
}

fn child(doc: &Document<'_>, node: NodeId, ns: &str, local: &str) -> Option<NodeId> {
    doc.children_iter(node).find(|&c| is(doc, c, ns, local))
}

/// Exactly one such child.
fn only(doc: &Document<'_>, node: NodeId, ns: &str, local: &str) -> Result<NodeId, SamlError> {
    match children(doc, node, ns, local)[..] {
        [one] => Ok(one),
        [] => Err(SamlError::Shape(format!("no {local}"))),
        _ => Err(SamlError::Shape(format!("more than one {local}"))),
    }
}

/// An element's text: its children must all be text (no comment, no element).
fn text(doc: &Document<'_>, node: NodeId) -> Result<String, SamlError> {
    let mut out = String::new();
    for c in doc.children_iter(node) {
        match doc.node_kind(c) {
            Some(NodeKind::Text(t) | NodeKind::CData(t)) => out.push_str(t),
            _ => {
                return Err(SamlError::Shape(
                    "a value holds more than text (a comment or an element)".into(),
                ));
            }
        }
    }
    Ok(out.trim().to_owned())
}

fn time(doc: &Document<'_>, node: NodeId, name: &str) -> Result<Option<DateTime<Utc>>, SamlError> {
    attr(doc, node, name)
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| SamlError::Shape(format!("{name} is not a dateTime")))
        })
        .transpose()
}

fn count(doc: &Document<'_>, root: NodeId, ns: &str, local: &str) -> usize {
    doc.descendants(root)
        .into_iter()
        .filter(|&n| is(doc, n, ns, local))
        .count()
}

/// The keys of the identity provider's certificates.
fn keys(settings: &SamlSettings) -> Result<bergshamra_keys::KeysManager, SamlError> {
    let mut keys = bergshamra_keys::KeysManager::new();
    for pem in &settings.certificates {
        let key = bergshamra_keys::loader::load_x509_cert_pem(pem.as_bytes())
            .map_err(|e| SamlError::Settings(format!("certificate: {e}")))?;
        keys.add_key(key);
    }
    Ok(keys)
}

/// Whether a signature's SignedInfo uses only what this profile accepts.
fn acceptable_algorithms(doc: &Document<'_>, signature: NodeId) -> Result<(), String> {
    let info = child(doc, signature, DSIG, "SignedInfo").ok_or("no SignedInfo")?;
    let of = |node: Option<NodeId>| node.and_then(|n| attr(doc, n, "Algorithm"));
    let c14n = of(child(doc, info, DSIG, "CanonicalizationMethod"));
    if !c14n.is_some_and(|a| EXC_C14N.contains(&a)) {
        return Err(format!("canonicalization {c14n:?} is not exclusive C14N"));
    }
    let method = of(child(doc, info, DSIG, "SignatureMethod"));
    if !method.is_some_and(|a| SIGNATURE_METHODS.contains(&a)) {
        return Err(format!(
            "signature method {} is not RSA or ECDSA with SHA-256 or stronger",
            method.unwrap_or("none")
        ));
    }
    let references = children(doc, info, DSIG, "Reference");
    let [reference] = references[..] else {
        return Err("a signature must have exactly one Reference".into());
    };
    let digest = of(child(doc, reference, DSIG, "DigestMethod"));
    if !digest.is_some_and(|a| DIGEST_METHODS.contains(&a)) {
        return Err(format!(
            "digest {} is not SHA-256 or stronger",
            digest.unwrap_or("none")
        ));
    }
    if let Some(transforms) = child(doc, reference, DSIG, "Transforms") {
        for t in doc.children_iter(transforms) {
            if doc.element(t).is_none() {
                continue;
            }
            let a = of(Some(t)).unwrap_or_default();
            if !is(doc, t, DSIG, "Transform") || !(a == ENVELOPED || EXC_C14N.contains(&a)) {
                return Err(format!("transform {a} is not accepted"));
            }
        }
    }
    Ok(())
}

/// Which of the root and the assertion a valid, acceptable signature covers.
struct Covered {
    response: bool,
    assertion: bool,
}

/// The profile's rules for signatures, checked before any digest is computed (so a
/// document cannot make the verifier read files, follow URIs or canonicalize the
/// document many times over): at most two signatures, each a direct child of the
/// Response or the Assertion, each with one Reference to its parent's ID and only the
/// accepted algorithms and transforms.
fn signature_shape(doc: &Document<'_>, root: NodeId, assertion: NodeId) -> Result<(), String> {
    let all: Vec<NodeId> = doc
        .descendants(root)
        .into_iter()
        .filter(|&n| is(doc, n, DSIG, "Signature"))
        .collect();
    if all.is_empty() {
        return Err("it carries no signature".into());
    }
    if all.len() > 2 {
        return Err(format!(
            "{} signatures where at most two are accepted",
            all.len()
        ));
    }
    for signature in all {
        let parent = doc
            .parent(signature)
            .filter(|&p| p == root || p == assertion);
        let Some(parent) = parent else {
            return Err("a signature is neither the Response's nor the Assertion's".into());
        };
        acceptable_algorithms(doc, signature)?;
        let reference = child(doc, signature, DSIG, "SignedInfo")
            .and_then(|info| child(doc, info, DSIG, "Reference"))
            .ok_or("a signature has no Reference")?;
        let id = attr(doc, parent, "ID").unwrap_or_default();
        if id.is_empty() || attr(doc, reference, "URI") != Some(&format!("#{id}")) {
            return Err("a signature's Reference is not the ID of the element it is in".into());
        }
    }
    Ok(())
}

fn signatures(
    doc: &Document<'_>,
    xml: &str,
    settings: &SamlSettings,
    root: NodeId,
    assertion: NodeId,
) -> Result<Covered, SamlError> {
    signature_shape(doc, root, assertion).map_err(SamlError::Signature)?;
    let context = bergshamra_dsig::DsigContext::new(keys(settings)?);
    let results =
        bergshamra_dsig::verify::verify_all_document_with_source(&context, doc, Some(xml))
            .map_err(|e| SamlError::Signature(echo(&e.to_string())))?;
    let mut covered = Covered {
        response: false,
        assertion: false,
    };
    let mut refused = Vec::new();
    for result in &results {
        let bergshamra_dsig::VerifyResult::Valid {
            signature_node,
            references,
            ..
        } = result
        else {
            if let bergshamra_dsig::VerifyResult::Invalid { reason } = result {
                refused.push(echo(reason));
            }
            continue;
        };
        if !result.all_reference_digests_verified() {
            refused.push("a reference was not digested".into());
            continue;
        }
        let parent = doc.parent(*signature_node);
        let [reference] = &references[..] else {
            refused.push("a signature must have exactly one Reference".into());
            continue;
        };
        let Some(target) = reference.resolved_node.filter(|t| Some(*t) == parent) else {
            refused.push("a signature does not sign the element it sits in".into());
            continue;
        };
        // Its URI and algorithms passed `signature_shape`; what is left to check is
        // that the verifier resolved it to the element the shape check read.
        if target == root {
            covered.response = true;
        } else if target == assertion {
            covered.assertion = true;
        } else {
            refused.push("a signature covers neither the Response nor its Assertion".into());
        }
    }
    if !covered.response && !covered.assertion {
        return Err(SamlError::Signature(
            refused
                .first()
                .cloned()
                .unwrap_or_else(|| "no signature covers the assertion".into()),
        ));
    }
    if settings.want_assertions_signed && !covered.assertion {
        return Err(SamlError::Signature(
            "the connection requires the assertion itself to be signed".into(),
        ));
    }
    Ok(covered)
}

/// Verifies a Response (XML text) for a connection: the profile, the signatures, and
/// every condition (issuer, destination, recipient, audience, times). `InResponseTo`
/// is returned for the caller to match against its stored request; replay is the
/// caller's too (by [`Asserted::id`]).
pub fn verify(
    xml: &str,
    settings: &SamlSettings,
    expected: Expected<'_>,
) -> Result<Asserted, SamlError> {
    if xml.len() > MAX_RESPONSE {
        return Err(SamlError::Encoding(format!(
            "longer than {MAX_RESPONSE} bytes"
        )));
    }
    let doc = parse(xml).map_err(SamlError::Xml)?;
    let root = doc
        .document_element()
        .ok_or_else(|| SamlError::Shape("empty".into()))?;
    if !is(&doc, root, PROTOCOL, "Response") {
        return Err(SamlError::Shape("the root is not a samlp:Response".into()));
    }
    let status = child(&doc, root, PROTOCOL, "Status")
        .and_then(|s| child(&doc, s, PROTOCOL, "StatusCode"))
        .and_then(|c| attr(&doc, c, "Value"))
        .unwrap_or_default()
        .to_owned();
    if status != SUCCESS {
        // Unsigned failures are only ever a reason to refuse.
        return Err(SamlError::Status(if status.is_empty() {
            "no status".into()
        } else {
            echo(&status)
        }));
    }
    if count(&doc, root, ASSERTION, "EncryptedAssertion") > 0 {
        return Err(SamlError::Shape(
            "encrypted assertions are not supported".into(),
        ));
    }
    let assertions = count(&doc, root, ASSERTION, "Assertion");
    if assertions != 1 {
        return Err(SamlError::Shape(format!(
            "{assertions} assertions where exactly one is accepted"
        )));
    }
    let assertion = only(&doc, root, ASSERTION, "Assertion")
        .map_err(|_| SamlError::Shape("the assertion is not a child of the response".into()))?;
    let covered = signatures(&doc, xml, settings, root, assertion)?;
    read(&doc, settings, expected, root, assertion, &covered)
}

fn read(
    doc: &Document<'_>,
    settings: &SamlSettings,
    expected: Expected<'_>,
    root: NodeId,
    assertion: NodeId,
    covered: &Covered,
) -> Result<Asserted, SamlError> {
    let mismatch = |what: &str| SamlError::Mismatch(what.into());
    let now = expected.now;
    // The Response's own attributes: trusted when signed; otherwise they may only
    // refuse (a wrong Destination is wrong either way).
    let destination = attr(doc, root, "Destination");
    if covered.response && destination.is_none() {
        return Err(mismatch("a signed response must name its Destination"));
    }
    if destination.is_some_and(|d| d != expected.acs) {
        return Err(mismatch("Destination is not this connection's ACS URL"));
    }
    if let Some(issuer) = child(doc, root, ASSERTION, "Issuer")
        && text(doc, issuer)? != settings.idp_entity_id
    {
        return Err(mismatch(
            "the response's Issuer is not the identity provider",
        ));
    }
    let issuer = only(doc, assertion, ASSERTION, "Issuer")?;
    if text(doc, issuer)? != settings.idp_entity_id {
        return Err(mismatch(
            "the assertion's Issuer is not the identity provider",
        ));
    }
    let id = attr(doc, assertion, "ID")
        .filter(|i| !i.is_empty() && i.len() <= 256)
        .ok_or_else(|| SamlError::Shape("the assertion has no ID".into()))?
        .to_owned();
    let issued = time(doc, assertion, "IssueInstant")?
        .ok_or_else(|| SamlError::Shape("the assertion has no IssueInstant".into()))?;

    // Subject: NameID and a bearer confirmation for this ACS.
    let subject = only(doc, assertion, ASSERTION, "Subject")?;
    let name_id_node = only(doc, subject, ASSERTION, "NameID")?;
    let name_id = text(doc, name_id_node)?;
    let name_id_is_email = attr(doc, name_id_node, "Format") == Some(EMAIL_FORMAT);
    if name_id.is_empty() || name_id.len() > 512 {
        return Err(SamlError::Shape("the NameID is empty or too long".into()));
    }
    let mut confirmed = None;
    for confirmation in children(doc, subject, ASSERTION, "SubjectConfirmation") {
        if attr(doc, confirmation, "Method") != Some(BEARER) {
            continue;
        }
        let Some(data) = child(doc, confirmation, ASSERTION, "SubjectConfirmationData") else {
            continue;
        };
        if attr(doc, data, "Recipient") != Some(expected.acs) {
            return Err(mismatch("Recipient is not this connection's ACS URL"));
        }
        let until = time(doc, data, "NotOnOrAfter")?
            .ok_or_else(|| SamlError::Shape("the confirmation has no NotOnOrAfter".into()))?;
        if now - SKEW >= until {
            return Err(SamlError::Time("expired".into()));
        }
        if time(doc, data, "NotBefore")?.is_some_and(|t| now + SKEW < t) {
            return Err(SamlError::Time("not valid yet".into()));
        }
        confirmed = Some((attr(doc, data, "InResponseTo").map(str::to_owned), until));
        break;
    }
    let Some((in_response_to, confirmed_until)) = confirmed else {
        return Err(SamlError::Shape(
            "no bearer SubjectConfirmation with its data".into(),
        ));
    };
    if covered.response
        && let Some(answered) = attr(doc, root, "InResponseTo")
        && in_response_to.as_deref() != Some(answered)
    {
        return Err(mismatch(
            "the response and assertion answer different requests",
        ));
    }
    if in_response_to.is_none() && now - issued > UNSOLICITED_AGE + SKEW {
        return Err(SamlError::Time(
            "too old for a sign-in started at the identity provider".into(),
        ));
    }

    // Conditions: times and audience.
    let conditions = only(doc, assertion, ASSERTION, "Conditions")?;
    if time(doc, conditions, "NotBefore")?.is_some_and(|t| now + SKEW < t) {
        return Err(SamlError::Time("not valid yet".into()));
    }
    let until = time(doc, conditions, "NotOnOrAfter")?.unwrap_or(confirmed_until);
    if now - SKEW >= until {
        return Err(SamlError::Time("expired".into()));
    }
    let restrictions = children(doc, conditions, ASSERTION, "AudienceRestriction");
    if restrictions.is_empty() {
        return Err(mismatch("the assertion names no audience"));
    }
    for restriction in restrictions {
        let mut ours = false;
        for audience in children(doc, restriction, ASSERTION, "Audience") {
            ours |= text(doc, audience)? == expected.audience;
        }
        if !ours {
            return Err(mismatch("the audience is not this service provider"));
        }
    }
    if child(doc, assertion, ASSERTION, "AuthnStatement").is_none() {
        return Err(SamlError::Shape("no AuthnStatement".into()));
    }

    // Attributes, each a list of text values.
    let mut attributes = Map::new();
    let mut read_values = 0;
    for statement in children(doc, assertion, ASSERTION, "AttributeStatement") {
        for attribute in children(doc, statement, ASSERTION, "Attribute") {
            let Some(name) = attr(doc, attribute, "Name") else {
                continue;
            };
            let mut values = Vec::new();
            for value in children(doc, attribute, ASSERTION, "AttributeValue") {
                read_values += 1;
                if read_values > MAX_VALUES {
                    return Err(SamlError::Shape(format!(
                        "more than {MAX_VALUES} attribute values"
                    )));
                }
                values.push(Value::String(text(doc, value)?));
            }
            attributes.insert(name.to_owned(), Value::Array(values));
        }
    }
    Ok(Asserted {
        id,
        in_response_to,
        name_id,
        name_id_is_email,
        attributes,
        expires: until.min(confirmed_until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SamlSettings {
        SamlSettings {
            idp_entity_id: "https://idp.example/metadata".into(),
            sso_url: "https://idp.example/sso?tenant=1".into(),
            certificates: Vec::new(),
            allow_idp_initiated: false,
            want_assertions_signed: false,
        }
    }

    #[test]
    fn an_authn_request_inflates_to_what_was_asked() {
        let now = Utc::now();
        let url =
            authn_request_url(&settings(), "sp&1", "https://sp/acs", "_ab", now).expect("url");
        let parsed = reqwest::Url::parse(&url).expect("a URL");
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().collect();
        assert_eq!(pairs["tenant"], "1", "the IdP's own query is kept");
        let packed = base64::engine::general_purpose::STANDARD
            .decode(pairs["SAMLRequest"].as_bytes())
            .expect("base64");
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::DeflateDecoder::new(&packed[..]),
            &mut xml,
        )
        .expect("inflate");
        let doc = parse(&xml).expect("well-formed");
        let root = doc.document_element().expect("root");
        assert!(is(&doc, root, PROTOCOL, "AuthnRequest"));
        assert_eq!(attr(&doc, root, "ID"), Some("_ab"));
        let issuer = child(&doc, root, ASSERTION, "Issuer").expect("issuer");
        assert_eq!(
            text(&doc, issuer).expect("text"),
            "sp&1",
            "escaped, then read back"
        );
    }

    #[test]
    fn a_value_with_a_comment_or_an_element_is_refused() {
        let doc = parse("<a><b>x<!-- c -->y</b><c><d/></c><e>plain</e></a>").expect("xml");
        let root = doc.document_element().expect("root");
        let kids: Vec<NodeId> = doc
            .children_iter(root)
            .filter(|&c| doc.element(c).is_some())
            .collect();
        assert!(text(&doc, kids[0]).is_err());
        assert!(text(&doc, kids[1]).is_err());
        assert_eq!(text(&doc, kids[2]).expect("text"), "plain");
    }

    #[test]
    fn a_dtd_is_refused_before_anything_expands() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">\
                      <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><r>&b;</r>";
        assert!(parse(laughs).is_err());
        let err = verify(
            laughs,
            &settings(),
            Expected {
                acs: "a",
                audience: "b",
                now: Utc::now(),
            },
        )
        .expect_err("refused");
        assert!(matches!(err, SamlError::Xml(_)), "{err}");
    }

    #[test]
    fn an_element_with_too_many_attributes_is_refused_before_parsing() {
        let many: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"1\""))
            .collect();
        assert!(too_many_attributes(&format!("<r{many}/>")));
        let quoted = format!("<r a=\"{}\"/>", "=".repeat(500));
        assert!(
            !too_many_attributes(&quoted),
            "'=' inside a value is no attribute"
        );
        let comment = format!("<r><!--{}--></r>", " x=1".repeat(500));
        assert!(!too_many_attributes(&comment), "nor inside a comment");
        assert!(parse(&format!("<r{many}/>")).is_err());
    }

    #[test]
    fn metadata_needs_a_redirect_service_and_a_certificate() {
        let xml = format!(
            "<md:EntityDescriptor xmlns:md=\"{METADATA}\" entityID=\"https://idp\">\
             <md:IDPSSODescriptor protocolSupportEnumeration=\"{PROTOCOL}\">\
             <md:SingleSignOnService Binding=\"{HTTP_POST}\" Location=\"https://idp/post\"/>\
             </md:IDPSSODescriptor></md:EntityDescriptor>"
        );
        let err = from_metadata(&xml).expect_err("no redirect binding");
        assert!(err.to_string().contains("HTTP-Redirect"), "{err}");
    }
}
