//! Which addresses destinations may reach: the rules of the SSRF guard, shared by the
//! delivery workers (which check every send, after DNS) and the control plane's API
//! (which refuses, when a destination is made, what the guard would always refuse).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is not on the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || a == 0
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF 192.0.0/24 (a cloud's metadata address among them)
                || (a == 192 && b == 88 && v4.octets()[2] == 99) // 6to4 relays 192.88.99/24
                || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
                || a >= 240 // reserved 240/4
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                // Tunnels and translators that carry an IPv4 address we cannot vet by
                // its v6 form alone when the embedding is obfuscated: refuse outright.
                || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
                || s[0] == 0x2002 // 6to4 2002::/16
        }
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped `::ffff:a.b.c.d`, SIIT's
/// IPv4-translated `::ffff:0:a.b.c.d`, the deprecated IPv4-compatible `::a.b.c.d`, and
/// NAT64 `64:ff9b::a.b.c.d` (and the local-use NAT64 prefix `64:ff9b:1::/48`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = || {
        let [.., a, b, c, d] = v6.octets();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    let compatible = s[..6].iter().all(|&x| x == 0) && (s[6] != 0 || s[7] > 1);
    let translated = s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && (s[2..6].iter().all(|&x| x == 0) || s[2] == 1);
    (compatible || translated || nat64).then(tail)
}

/// A resolver that drops private addresses (so DNS answers that change between the
/// guard's look-up and the connection cannot reach one).
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = addrs.filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err("every address of this host is private".into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Why the guard refuses `url` whatever DNS says (`None`: it may pass): not an http(s)
/// URL, or a host that is a private address by its very text. The control plane's API
/// refuses such a destination up front with this reason.
pub fn refusal_by_text(url: &str) -> Option<String> {
    refusal_of(url, &["http", "https"])
}

/// [`refusal_by_text`] for a NATS destination's server list (comma-separated
/// `nats://`, `tls://`, `ws://` or `wss://` URLs): each server is checked, and a bare
/// `host:port` is read as `nats://host:port`, as the client reads it.
pub fn nats_refusal_by_text(urls: &str) -> Option<String> {
    urls.split(',').map(str::trim).find_map(|url| {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("nats://{url}")
        };
        refusal_of(&url, &["nats", "tls", "ws", "wss"])
    })
}

fn refusal_of(url: &str, schemes: &[&str]) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("not a URL: {e}")),
    };
    if !schemes.contains(&parsed.scheme()) {
        let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        return Some(format!("must be a {} URL", names.join(" or ")));
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    if host.is_empty() {
        return Some("has no host".into());
    }
    // `localhost.` is `localhost`, fully qualified.
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let local_name = name == "localhost" || name.ends_with(".localhost");
    if local_name || host.parse::<IpAddr>().is_ok_and(is_private) {
        return Some(format!(
            "{host} is a private address (set delivery.allow_private_destinations to allow)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name whose addresses are all private resolves to nothing (this machine's
    /// `localhost` among them), whatever a URL's text said.
    #[tokio::test]
    async fn the_resolver_hands_out_no_private_address() {
        let name: Name = "localhost".parse().expect("a name");
        let resolved = PublicOnly.resolve(name).await;
        let refused = resolved.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("private"), "{refused}");
    }
}
