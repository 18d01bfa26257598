//! Opening a connection to a broker, in order: resolve and dial TCP within
//! the connect timeout, the TLS handshake, the ApiVersions exchange (the
//! connection's own [`BrokerConnection::handshake`]), then SASL
//! authentication, starting re-authentication ([`super::reauth`]) when the
//! broker limits the session. [`Transport`] is what a client decides once
//! for all its connections: the TLS connector and the SASL credentials.

use tokio::net::TcpStream;

use super::connection::BrokerConnection;
use crate::client_config::ClientConfig;
use crate::error::{Error, ErrorKind};

/// How every connection of one client is made after TCP: the TLS connector
/// (built once from the client's TLS settings) and the SASL credentials.
#[derive(Default)]
pub(crate) struct Transport {
    tls: Option<tokio_rustls::TlsConnector>,
    sasl: Option<crate::security::SaslConfig>,
}

impl Transport {
    /// The transport `config` (validated) asks for; reads and parses the
    /// TLS trust roots and client certificate now, so a bad one fails here
    /// with the field named.
    pub(crate) fn from_config(config: &ClientConfig) -> Result<Transport, Error> {
        let protocol = config.security_protocol;
        let tls = if protocol.uses_tls() {
            let settings = config.tls_config.clone().unwrap_or_default();
            Some(super::tls::connector(&settings)?)
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            config.sasl_config.clone()
        } else {
            None
        };
        Ok(Transport { tls, sasl })
    }
}

/// Connects over TCP within the connect timeout, then runs the TLS
/// handshake and SASL authentication `transport` asks for, and
/// negotiates versions.
pub(crate) async fn connect(
    addr: &str,
    config: &ClientConfig,
    transport: &Transport,
) -> Result<BrokerConnection, Error> {
    let stream = dial(addr, config).await?;
    establish(stream, addr, config, transport).await
}

/// Everything after TCP on a dialled `stream`: TLS, ApiVersions, SASL.
pub(crate) async fn establish(
    stream: TcpStream,
    addr: &str,
    config: &ClientConfig,
    transport: &Transport,
) -> Result<BrokerConnection, Error> {
    let conn = match &transport.tls {
        Some(connector) => {
            let stream =
                super::tls::handshake(connector, addr, stream, config.connect_timeout).await?;
            BrokerConnection::handshake(stream, addr.to_string(), config).await?
        }
        None => BrokerConnection::handshake(stream, addr.to_string(), config).await?,
    };
    if let Some(sasl) = &transport.sasl {
        let began = crate::clock::now();
        let lifetime = super::sasl::authenticate(&conn, sasl, addr).await?;
        if let Some(lifetime) = lifetime {
            tracing::debug!(%addr, ?lifetime, "the broker limits the SASL session");
            super::reauth::start(&conn, sasl.clone(), addr, began, lifetime);
        }
    }
    Ok(conn)
}

/// Resolves `addr` and opens a TCP connection to it (to the first of
/// its addresses that accepts), all within the connect timeout.
///
/// A failure is [`ErrorKind::Io`] when the name does not resolve
/// ("resolving ...") or every address refused ("connecting to ...",
/// with the OS error), and [`ErrorKind::ConnectTimeout`] when no answer
/// came in time. Failures are logged at WARN, rate-limited per address
/// (see [`super::connect_log`]).
pub(crate) async fn dial(addr: &str, config: &ClientConfig) -> Result<TcpStream, Error> {
    let timeout = config.connect_timeout;
    let attempt = async {
        let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::io(format_args!("resolving {addr}"), e))?
            .collect();
        if resolved.is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("resolving {addr}: the name has no address"),
            ));
        }
        TcpStream::connect(&resolved[..])
            .await
            .map_err(|e| Error::io(format_args!("connecting to {addr}"), e))
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::ConnectTimeout,
            format!("connecting to {addr}: no answer within {timeout:?}"),
        )),
    };
    match &result {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            super::connect_log::reached(addr);
        }
        Err(error) => super::connect_log::failed(addr, error),
    }
    result
}
