//! TLS for the source connection: the `SSLRequest` exchange and the rustls client
//! configuration for each `tls.mode`.
//!
//! - `prefer` / `require`: encrypt, but accept any certificate (as libpq does), unless a
//!   `ca_file` is set with `require`, which then checks the chain like `verify-ca`.
//! - `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
//! - `verify-full`: chain and host name are both checked.
//!
//! Trusted roots are `tls.ca_file` (PEM) when set, else the bundled web PKI roots. Only the ring
//! crypto provider is used, passed explicitly, so nothing global is installed.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connection::Io;
use super::error::Error;
use crate::config::{PgConnection, TlsMode};

/// The outcome of `SSLRequest` + handshake.
pub(super) enum Negotiated {
    Tls(Box<dyn Io>),
    /// The server said `N` and the mode allows a plain connection.
    Plain(TcpStream),
}

/// Sends `SSLRequest` and, when the server agrees, performs the TLS handshake.
pub(super) async fn negotiate(
    mut tcp: TcpStream,
    conn: &PgConnection,
    target: &str,
) -> Result<Negotiated, Error> {
    let mode = conn.tls.mode;
    let config = client_config(conn, target)?;
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    let io_err = |source| Error::Io {
        target: target.to_owned(),
        source,
    };
    tcp.write_all(&request).await.map_err(io_err)?;
    let answer = tcp.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => {}
        b'N' if mode == TlsMode::Prefer => return Ok(Negotiated::Plain(tcp)),
        b'N' => {
            return Err(Error::TlsRefused {
                target: target.to_owned(),
                mode: mode.as_str(),
            });
        }
        other => {
            return Err(Error::Protocol {
                target: target.to_owned(),
                message: format!("unexpected answer {other:#04x} to SSLRequest"),
            });
        }
    }
    let server_name = ServerName::try_from(conn.host.clone()).map_err(|e| Error::TlsConfig {
        target: target.to_owned(),
        message: format!("host `{}` is not a valid TLS server name: {e}", conn.host),
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|source| Error::TlsHandshake {
            target: target.to_owned(),
            mode: mode.as_str(),
            source,
        })?;
    Ok(Negotiated::Tls(Box::new(stream)))
}

fn client_config(conn: &PgConnection, target: &str) -> Result<ClientConfig, Error> {
    let config_err = |message: String| Error::TlsConfig {
        target: target.to_owned(),
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?;
    let check_chain = match conn.tls.mode {
        TlsMode::Disable | TlsMode::Prefer => false,
        TlsMode::Require => conn.tls.ca_file.is_some(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => true,
    };
    let mut config = if !check_chain {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth()
    } else {
        let roots = Arc::new(root_store(conn, target)?);
        if conn.tls.mode == TlsMode::VerifyFull {
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| config_err(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(IgnoreHostName { inner }))
                .with_no_client_auth()
        }
    };
    // PostgreSQL 17 checks the ALPN name when one is sent; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn root_store(conn: &PgConnection, target: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    match &conn.tls.ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |message: String| Error::TlsConfig {
                target: target.to_owned(),
                message: format!("tls.ca_file `{}`: {message}", path.display()),
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("holds no PEM certificate".into()));
            }
        }
    }
    Ok(roots)
}

/// `prefer`/`require`: encryption without authentication of the server (libpq semantics).
/// Handshake signatures are still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// `verify-ca`: the full web PKI check, except that a certificate issued for another name passes.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(NotValidForName))
            | Err(rustls::Error::InvalidCertificate(NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
