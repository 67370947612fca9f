//! The process's TLS crypto provider. rustls (under reqwest, the webhook sink, the
//! remote catalog client and the HTTPS listener) refuses to build a client or server
//! without one, and a missing one is a panic, not an error; `sluice` installs it where
//! the binary starts, before any subcommand runs, and the library's own clients install
//! it again for embedders and tests.

/// Installs ring as rustls's process-wide crypto provider. Idempotent: a later call,
/// or one after another provider was installed, changes nothing.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: the state wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for a node's calls to its control plane (the crypto provider installed
/// first), each request bounded by `timeout` in all.
pub fn node_client(timeout: std::time::Duration) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_default()
}
