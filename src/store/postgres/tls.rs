//! TLS for the PostgreSQL connection on the rustls stack the agent already
//! builds (aws-lc-rs provider, OS trust store through the platform verifier).
//!
//! tokio-postgres only knows `disable`/`prefer`/`require` and leaves
//! certificate checks to the TLS connector, so the libpq modes are mapped
//! here, in one place:
//!
//! | `sslmode`     | TLS       | certificate chain | host name |
//! |---------------|-----------|-------------------|-----------|
//! | `disable`     | never     | -                 | -         |
//! | `require`     | mandatory | only with `sslrootcert` (as libpq) | no |
//! | `verify-ca`   | mandatory | yes               | no        |
//! | `verify-full` | mandatory | yes               | yes       |
//!
//! `prefer` and `allow` are refused (see `url.rs`): they fall back to plain
//! text without telling anyone, which this agent never does silently.
//!
//! Roots for the chain check: the PEM file named by `sslrootcert`, or the OS
//! trust store when it is absent or `system`.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`) is not offered: the
//! `tls-server-end-point` hash depends on the certificate's signature
//! algorithm, and a wrong one fails authentication; tokio-postgres then uses
//! plain SCRAM, which is what libpq does without channel binding too.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What the server's certificate is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Encryption only (libpq `require` without a root certificate): protects
    /// against eavesdropping, not against an active man in the middle.
    Nothing,
    /// The chain up to a trusted root (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// Builds the rustls client configuration for `check`; `roots` is the
/// `sslrootcert` PEM file (`None`: the OS trust store).
pub fn client_config(check: Check, roots: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = crate::tls::provider();
    let inner: Option<Arc<dyn ServerCertVerifier>> = match (check, roots) {
        (Check::Nothing, _) => None,
        (_, Some(path)) => Some(file_verifier(path, provider.clone())?),
        (_, None) => Some(crate::tls::platform_verifier().map_err(|e| e.to_string())?),
    };
    let verifier = Arc::new(Verifier {
        inner,
        check_name: check == Check::ChainAndName,
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn file_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let why = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| why(&e))? {
        roots.add(cert.map_err(|e| why(&e))?).map_err(|e| why(&e))?;
    }
    if roots.is_empty() {
        return Err(why(&"holds no certificate"));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| why(&e))?;
    Ok(verifier)
}

/// Applies `Check`: delegates to a real verifier, and for `verify-ca`
/// forgives only a host name mismatch. Handshake signatures are always
/// verified, so even `Check::Nothing` talks to whoever holds the key of the
/// certificate it was shown.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<dyn ServerCertVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres' TLS hook over tokio-rustls.
#[derive(Clone)]
pub struct MakeRustls(pub Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            connector: TlsConnector::from(self.0.clone()),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

pub struct RustlsConnect {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<RustlsStream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
