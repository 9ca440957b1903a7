//! The process's one TLS client configuration: every outgoing HTTPS client
//! (Talkdesk, notifications, HTTP-speaking probes, the self-check, the CLI)
//! starts from it, and so does the PostgreSQL connection's OS trust store.
//!
//! Why one: building a verifier over the OS trust store reads and parses the
//! whole certificate bundle (`rustls-native-certs`), about 107 KiB of heap
//! and a few milliseconds of CPU each time. reqwest does that for every
//! `Client` it builds, so with two clients per account and one per probe it
//! was half the CPU of starting 300 accounts and about 200 KiB per account
//! (BENCHMARKS.md, "Several accounts on one replica"). Here the bundle is
//! read once, on first use, and every client shares the parsed roots (and
//! the TLS session cache).
//!
//! The trust store is therefore read once per process: a root added to the
//! OS bundle while the agent runs is used after a restart (a configuration
//! reload does not re-read it).

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::{self, ClientConfig};

/// The OS trust store could not be used (no bundle, or none of it parsed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot load the OS trust store: {0}")]
pub struct TlsError(String);

/// The crypto provider every TLS connection of the process uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(aws_lc_rs::default_provider()))
        .clone()
}

/// Verifies server certificates against the OS trust store (the platform
/// verifier), parsed on the first call and shared by every later one. A
/// failure is remembered too: the bundle does not appear mid-run.
pub fn platform_verifier() -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    static VERIFIER: OnceLock<Result<Arc<dyn ServerCertVerifier>, TlsError>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            rustls_platform_verifier::Verifier::new(provider())
                .map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
                .map_err(|e| TlsError(e.to_string()))
        })
        .clone()
}

/// The configuration of an HTTPS client: TLS 1.2 and 1.3, the OS trust
/// store, ALPN offering HTTP/2 and HTTP/1.1 (what reqwest offers when it
/// builds its own). Cloning it is cheap: the verifier, provider and session
/// cache are shared.
pub fn http_config() -> Result<ClientConfig, TlsError> {
    static CONFIG: OnceLock<Result<ClientConfig, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e: rustls::Error| TlsError(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(platform_verifier()?)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(config)
        })
        .clone()
}

/// A reqwest builder on the shared configuration: what every HTTP client of
/// the agent starts from instead of `reqwest::Client::builder()`.
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(http_config()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_shares_one_parsed_trust_store() {
        let a = platform_verifier().unwrap();
        let b = platform_verifier().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the OS bundle was parsed twice");
        let c1 = http_config().unwrap();
        let c2 = http_config().unwrap();
        assert!(Arc::ptr_eq(c1.crypto_provider(), c2.crypto_provider()));
        // What reqwest would offer on its own.
        assert_eq!(
            c1.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_client_on_the_shared_configuration_builds() {
        http_client_builder().unwrap().build().unwrap();
    }
}
