//! The security settings by their Java and librdkafka property names:
//! `security.protocol`, `sasl.*` and `ssl.*`.

use crate::config::ClientConfig;
use crate::error::Error;
use crate::properties::{boolean, not_one_of};
use crate::security::{SaslConfig, SaslMechanism, SecurityProtocol, TlsConfig};

/// The keys [`set_security_key`] knows.
pub(crate) const SECURITY_KEYS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.keystore.type",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
];

fn sasl(config: &mut ClientConfig) -> &mut SaslConfig {
    config
        .sasl_config
        .get_or_insert_with(|| SaslConfig::plain("", ""))
}

fn tls(config: &mut ClientConfig) -> &mut TlsConfig {
    config.tls_config.get_or_insert_with(TlsConfig::new)
}

/// Sets one security key; `Ok(false)`, with nothing changed, for a key that
/// is not one. Unlike the typed setters, these never change
/// `security.protocol` on their own: as in the Java client, it is set
/// explicitly (a mismatch is an error at validation).
pub(crate) fn set_security_key(
    config: &mut ClientConfig,
    key: &str,
    value: &str,
) -> Result<bool, Error> {
    match key {
        "security.protocol" => {
            config.security_protocol = SecurityProtocol::from_name(value).ok_or_else(|| {
                not_one_of(
                    "security_protocol",
                    key,
                    value,
                    "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                )
            })?;
        }
        "sasl.mechanism" | "sasl.mechanisms" => {
            sasl(config).mechanism = SaslMechanism::from_name(value).ok_or_else(|| {
                not_one_of("sasl", key, value, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
            })?;
        }
        "sasl.username" => sasl(config).username = value.to_string(),
        "sasl.password" => sasl(config).password = value.to_string(),
        "sasl.jaas.config" => set_jaas(sasl(config), value)?,
        "ssl.ca.location" | "ssl.truststore.location" => {
            let settings = tls(config).clone().ca_file(value);
            config.tls_config = Some(settings);
        }
        "ssl.ca.pem" | "ssl.truststore.certificates" => {
            let settings = tls(config).clone().ca_pem(value.as_bytes().to_vec());
            config.tls_config = Some(settings);
        }
        "ssl.truststore.type" | "ssl.keystore.type" => {
            if !value.eq_ignore_ascii_case("PEM") {
                return Err(Error::config(
                    "tls",
                    format!("`{key}`: `{value}` stores are not read; convert them to PEM"),
                ));
            }
        }
        "ssl.certificate.location" | "ssl.key.location" => {
            set_identity_file(tls(config), key == "ssl.key.location", value);
        }
        "ssl.certificate.pem"
        | "ssl.key.pem"
        | "ssl.keystore.certificate.chain"
        | "ssl.keystore.key" => {
            let is_key = key.ends_with("key.pem") || key == "ssl.keystore.key";
            set_identity_pem(tls(config), is_key, value);
        }
        "ssl.endpoint.identification.algorithm" => {
            let verify = match value.to_ascii_lowercase().as_str() {
                "https" => true,
                "" | "none" => false,
                _ => return Err(not_one_of("tls", key, value, "https, or empty")),
            };
            tls(config).verify_hostname = verify;
        }
        "enable.ssl.certificate.verification" => {
            tls(config).verify_certificates = boolean("tls", key, value)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

use crate::security::ClientIdentity;

fn set_identity_file(tls: &mut TlsConfig, is_key: bool, path: &str) {
    let (mut chain, mut key) = match tls.identity.take() {
        Some(ClientIdentity::Files { chain, key }) => (chain, key),
        _ => Default::default(),
    };
    if is_key {
        key = path.into();
    } else {
        chain = path.into();
    }
    tls.identity = Some(ClientIdentity::Files { chain, key });
}

fn set_identity_pem(tls: &mut TlsConfig, is_key: bool, pem: &str) {
    let (mut chain, mut key) = match tls.identity.take() {
        Some(ClientIdentity::Pem { chain, key }) => (chain, key),
        _ => Default::default(),
    };
    if is_key {
        key = pem.as_bytes().to_vec();
    } else {
        chain = pem.as_bytes().to_vec();
    }
    tls.identity = Some(ClientIdentity::Pem { chain, key });
}

/// Java's `sasl.jaas.config`: `<LoginModule class> required username="u"
/// password="p";`. The PLAIN module implies PLAIN; the SCRAM module keeps
/// the `sasl.mechanism` given (SCRAM-SHA-512 if none names SCRAM yet).
fn set_jaas(sasl: &mut SaslConfig, value: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::config("sasl", format!("`sasl.jaas.config`: {why}"));
    let mut words = value.trim().trim_end_matches(';').split_whitespace();
    let module = words.next().ok_or_else(|| bad("empty"))?;
    if module.ends_with(".PlainLoginModule") {
        sasl.mechanism = SaslMechanism::Plain;
    } else if module.ends_with(".ScramLoginModule") {
        if sasl.mechanism == SaslMechanism::Plain {
            sasl.mechanism = SaslMechanism::ScramSha512;
        }
    } else {
        return Err(bad(&format!(
            "login module `{module}` is not supported (PlainLoginModule, ScramLoginModule)"
        )));
    }
    let rest = value.trim().trim_end_matches(';');
    let rest = rest[rest.find(module).unwrap_or(0) + module.len()..].trim_start();
    let rest = rest
        .strip_prefix("required")
        .ok_or_else(|| bad("expected `required` after the login module"))?;
    for (name, option) in jaas_options(rest).ok_or_else(|| bad("malformed options"))? {
        match name.as_str() {
            "username" => sasl.username = option,
            "password" => sasl.password = option,
            _ => {}
        }
    }
    Ok(())
}

/// `name="value"` pairs (quotes optional, `\"` inside quotes).
fn jaas_options(text: &str) -> Option<Vec<(String, String)>> {
    let mut options = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(options);
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || name.is_empty() {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        options.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confluent_cloud_style_configuration_reads() {
        let config = ClientConfig::from_properties([
            ("bootstrap.servers", "pkc-1.example.cloud:9092"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="KEY" password="se\"cret";"#,
            ),
        ])
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
        let sasl = config.sasl_config.as_ref().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::Plain);
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("KEY", "se\"cret")
        );
        assert!(!format!("{config:?}").contains("cret"));
    }

    #[test]
    fn librdkafka_style_keys_read_in_any_order() {
        let config = ClientConfig::from_properties([
            ("bootstrap.servers", "b:9093"),
            ("sasl.username", "alice"),
            ("sasl.password", "pw"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ("ssl.certificate.location", "/etc/kafka/client.pem"),
            ("ssl.key.location", "/etc/kafka/client.key"),
            ("ssl.endpoint.identification.algorithm", ""),
        ])
        .unwrap();
        config.validate().unwrap();
        let sasl = config.sasl_config.as_ref().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha256);
        let tls = config.tls_config.as_ref().unwrap();
        assert!(!tls.verify_hostname && tls.verify_certificates);
        assert!(matches!(tls.identity, Some(ClientIdentity::Files { .. })));
    }

    #[test]
    fn mismatches_and_bad_values_name_their_field() {
        let field = |pairs: &[(&str, &str)]| {
            let err = ClientConfig::from_properties(
                [("bootstrap.servers", "b:1")].iter().chain(pairs).copied(),
            )
            .and_then(|c| c.validate().map(|()| c))
            .unwrap_err();
            match err.kind() {
                crate::ErrorKind::Config { field } => *field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(&[("security.protocol", "TLS")]), "security_protocol");
        assert_eq!(field(&[("security.protocol", "SASL_SSL")]), "sasl");
        assert_eq!(field(&[("sasl.username", "a")]), "security_protocol");
        assert_eq!(field(&[("sasl.mechanism", "GSSAPI")]), "sasl");
        assert_eq!(field(&[("ssl.truststore.type", "JKS")]), "tls");
        assert_eq!(
            field(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN")
            ]),
            "sasl"
        );
        assert_eq!(
            field(&[("sasl.jaas.config", "com.example.Kerberos required;")]),
            "sasl"
        );
    }
}
