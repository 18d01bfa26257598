//! TLS for broker connections, with rustls and its ring provider (no
//! OpenSSL): the client configuration built once per client from a
//! [`TlsConfig`], and the handshake on a fresh TCP stream.
//!
//! Trust roots, client certificates and keys are read and parsed when the
//! client starts, so a missing file or a PEM without certificates fails
//! `build()`/`connect()` with the field named, not the first connection.
//! A failed handshake is [`ErrorKind::Tls`] (fatal) with the reason in
//! words: unknown issuer, expired, issued for another host, refused by the
//! broker.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, ErrorKind};
use crate::security::{ClientIdentity, TlsConfig, TrustSource};

/// Where Linux distributions keep the system CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Builds the connector every connection of one client uses.
pub(crate) fn connector(config: &TlsConfig) -> Result<TlsConnector, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::config("tls", format!("TLS versions: {e}")))?;
    let builder = if config.verify_certificates && config.verify_hostname {
        builder.with_root_certificates(Arc::new(root_store(config)?))
    } else {
        let inner = if config.verify_certificates {
            let roots = Arc::new(root_store(config)?);
            Some(
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| Error::config("tls", format!("trust roots: {e}")))?,
            )
        } else {
            tracing::warn!(
                "TLS certificate verification is OFF (danger_accept_invalid_certificates): \
                 anyone on the network path can read and change this client's traffic"
            );
            None
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LaxVerifier { inner, provider }))
    };
    let client = match &config.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain_pem, key_pem) = identity_pem(identity)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| Error::config("tls", format!("client certificate PEM: {e}")))?;
            if chain.is_empty() {
                return Err(Error::config(
                    "tls",
                    "the client certificate PEM holds no certificate",
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                Error::config(
                    "tls",
                    format!("client key PEM (PKCS#8, RSA or EC expected): {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config("tls", format!("client certificate and key: {e}")))?
        }
    };
    Ok(TlsConnector::from(Arc::new(client)))
}

fn read(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(field, format!("reading {}: {e}", path.display())))
}

fn identity_pem(identity: &ClientIdentity) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Ok(match identity {
        ClientIdentity::Pem { chain, key } => (chain.clone(), key.clone()),
        ClientIdentity::Files { chain, key } => (read("tls", chain)?, read("tls", key)?),
    })
}

fn add_pem(store: &mut RootCertStore, pem: &[u8], what: &str) -> Result<(), Error> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::config("tls", format!("{what}: {e}")))?;
        store
            .add(cert)
            .map_err(|e| Error::config("tls", format!("{what}: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(Error::config(
            "tls",
            format!("{what} holds no PEM certificate"),
        ));
    }
    Ok(())
}

fn root_store(config: &TlsConfig) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    let sources: &[TrustSource] = if config.roots.is_empty() {
        &[TrustSource::System]
    } else {
        &config.roots
    };
    for source in sources {
        match source {
            TrustSource::WebPki => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            TrustSource::Pem(pem) => add_pem(&mut store, pem, "the CA PEM")?,
            TrustSource::File(path) => add_pem(
                &mut store,
                &read("tls", path)?,
                &format!("CA file {}", path.display()),
            )?,
            TrustSource::System => {
                let path = std::env::var_os("SSL_CERT_FILE")
                    .map(std::path::PathBuf::from)
                    .or_else(|| {
                        SYSTEM_BUNDLES
                            .iter()
                            .map(std::path::PathBuf::from)
                            .find(|p| p.is_file())
                    })
                    .ok_or_else(|| {
                        Error::config(
                            "tls",
                            "no system CA bundle found (SSL_CERT_FILE unset, none of the usual \
                             paths exists): give a CA with ca_file/ca_pem, or use webpki_roots",
                        )
                    })?;
                add_pem(
                    &mut store,
                    &read("tls", &path)?,
                    &format!("system CA bundle {}", path.display()),
                )?;
            }
        }
    }
    Ok(store)
}

/// The TLS handshake with `addr` on `tcp`, within `timeout`.
pub(crate) async fn handshake(
    connector: &TlsConnector,
    addr: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, Error> {
    let host = host_of(addr);
    let name = ServerName::try_from(host.to_string()).map_err(|_| {
        Error::config(
            "bootstrap_servers",
            format!("`{host}` is not a TLS server name"),
        )
    })?;
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(handshake_error(addr, host, e)),
        Err(_) => Err(Error::new(
            ErrorKind::ConnectTimeout,
            format!("TLS handshake with {addr}: no answer within {timeout:?}"),
        )),
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn handshake_error(addr: &str, host: &str, error: std::io::Error) -> Error {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        // The socket failed mid-handshake: a broker that closes on a
        // ClientHello is often a plaintext listener.
        return Error::io(
            format_args!(
                "TLS handshake with {addr} (is this a TLS listener? a plaintext one closes the connection)"
            ),
            error,
        );
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the broker's certificate is not signed by a trusted CA (unknown issuer)"
                    .to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the broker's certificate is not valid for host `{host}` (wrong host)")
            }
            CertificateError::Revoked => "the broker's certificate is revoked".to_string(),
            other => format!("the broker's certificate is invalid: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the broker refused the handshake ({alert:?}); does it require a client certificate?"
        ),
        other => format!("{other}"),
    };
    Error::new(
        ErrorKind::Tls,
        format!("TLS handshake with {addr} failed: {why}"),
    )
}

/// Verifies certificates without the host name check, or not at all, as
/// the configuration asks.
#[derive(Debug)]
struct LaxVerifier {
    /// The standard verifier; `None` accepts any certificate.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LaxVerifier {
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
            )) => Ok(ServerCertVerified::assertion()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_come_from_addresses() {
        assert_eq!(host_of("broker-1.example.com:9093"), "broker-1.example.com");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
    }

    #[test]
    fn bad_trust_material_is_a_configuration_error() {
        let cases = [
            TlsConfig::new().ca_pem("not a certificate"),
            TlsConfig::new().ca_file("/nonexistent/ca.pem"),
            TlsConfig::new()
                .webpki_roots()
                .client_cert_pem("no cert here", "no key here"),
        ];
        for case in cases {
            let err = connector(&case).err().expect("refused");
            assert_eq!(err.kind(), &ErrorKind::Config { field: "tls" }, "{err}");
        }
        // The bundled roots always load.
        connector(&TlsConfig::new().webpki_roots()).unwrap();
        connector(&TlsConfig::new().danger_accept_invalid_certificates()).unwrap();
    }
}
