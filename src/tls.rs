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
