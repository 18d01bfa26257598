//! The security settings by their Java and librdkafka property names:
//! `security.protocol`, `sasl.*` and `ssl.*`.

use super::{boolean, not_one_of};
use crate::client_config::ClientConfig;
use crate::error::Error;
use crate::security::{SaslConfig, SaslMechanism, SecurityProtocol, TlsConfig};

/// The keys [`set_security_key`] knows.
pub(crate) const SECURITY_KEYS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.method",
    "enable.sasl.oauthbearer.unsecure.jwt",
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
                not_one_of(
                    "sasl",
                    key,
                    value,
                    "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
                )
            })?;
        }
        "sasl.username" => sasl(config).username = value.to_string(),
        "sasl.password" => sasl(config).password = value.to_string(),
        "sasl.jaas.config" => set_jaas(sasl(config), value)?,
        // librdkafka's unsecured tokens: `principal=alice lifeSeconds=3600`.
        "sasl.oauthbearer.config" => set_unsecured_tokens(sasl(config), key, value)?,
        "sasl.oauthbearer.method" => {
            if !value.eq_ignore_ascii_case("default") {
                return Err(Error::config(
                    "sasl",
                    format!(
                        "`{key}`: `{value}` is not built in; fetch tokens in a \
                         TokenProvider and give it with SaslConfig::oauthbearer"
                    ),
                ));
            }
        }
        // Unsecured tokens are what `sasl.oauthbearer.config` makes; the
        // switch librdkafka wants beside it is accepted as it is.
        "enable.sasl.oauthbearer.unsecure.jwt" => {
            boolean("sasl", key, value)?;
        }
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
    let oauth = module.ends_with(".OAuthBearerLoginModule");
    if oauth {
        sasl.mechanism = SaslMechanism::OAuthBearer;
    } else if module.ends_with(".PlainLoginModule") {
        sasl.mechanism = SaslMechanism::Plain;
    } else if module.ends_with(".ScramLoginModule") {
        if sasl.mechanism == SaslMechanism::Plain {
            sasl.mechanism = SaslMechanism::ScramSha512;
        }
    } else {
        return Err(bad(&format!(
            "login module `{module}` is not supported \
             (PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule)"
        )));
    }
    let rest = value.trim().trim_end_matches(';');
    let rest = rest[rest.find(module).unwrap_or(0) + module.len()..].trim_start();
    let rest = rest
        .strip_prefix("required")
        .ok_or_else(|| bad("expected `required` after the login module"))?;
    let options = jaas_options(rest).ok_or_else(|| bad("malformed options"))?;
    if oauth {
        // The Java client's unsecured tokens: the `sub` claim and the
        // lifetime; anything else needs a TokenProvider of the caller's.
        let option = |name: &str| options.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let Some(principal) = option("unsecuredLoginStringClaim_sub") else {
            return Err(bad(
                "OAuthBearerLoginModule without `unsecuredLoginStringClaim_sub`: \
                 tokens from an identity provider come from a TokenProvider \
                 (SaslConfig::oauthbearer)",
            ));
        };
        let lifetime = match option("unsecuredLoginLifetimeSeconds") {
            Some(seconds) => Some(
                seconds
                    .parse()
                    .map_err(|_| bad("`unsecuredLoginLifetimeSeconds` is not a number"))?,
            ),
            None => None,
        };
        return unsecured_tokens(sasl, principal, lifetime);
    }
    for (name, option) in options {
        match name.as_str() {
            "username" => sasl.username = option,
            "password" => sasl.password = option,
            _ => {}
        }
    }
    Ok(())
}

/// librdkafka's `sasl.oauthbearer.config` for unsecured tokens:
/// space-separated `principal=`, `lifeSeconds=`, `scope=` (kept out of the
/// token) and `extension_*=` settings.
fn set_unsecured_tokens(sasl: &mut SaslConfig, key: &str, value: &str) -> Result<(), Error> {
    let bad = |why: String| Error::config("sasl", format!("`{key}`: {why}"));
    let mut principal = None;
    let mut lifetime = None;
    for setting in value.split_whitespace() {
        let (name, v) = setting
            .split_once('=')
            .ok_or_else(|| bad(format!("`{setting}` is not name=value")))?;
        match name {
            "principal" => principal = Some(v.to_string()),
            "lifeSeconds" => {
                lifetime = Some(
                    v.parse()
                        .map_err(|_| bad(format!("lifeSeconds `{v}` is not a number")))?,
                );
            }
            "scope" => {}
            _ if name.starts_with("extension_") => {}
            _ => return Err(bad(format!("unknown setting `{name}`"))),
        }
    }
    let principal = principal.ok_or_else(|| bad("no `principal=`".to_string()))?;
    sasl.mechanism = SaslMechanism::OAuthBearer;
    unsecured_tokens(sasl, &principal, lifetime)
}

/// Makes `sasl` use Kafka's unsecured JWS tokens for `principal`.
#[cfg(feature = "tokio-runtime")]
fn unsecured_tokens(
    sasl: &mut SaslConfig,
    principal: &str,
    lifetime_seconds: Option<u64>,
) -> Result<(), Error> {
    let mut provider = crate::security::UnsecuredJwsProvider::new(principal);
    if let Some(seconds) = lifetime_seconds {
        provider = provider.lifetime(std::time::Duration::from_secs(seconds));
    }
    sasl.token_provider = Some(std::sync::Arc::new(provider));
    Ok(())
}

#[cfg(not(feature = "tokio-runtime"))]
fn unsecured_tokens(_: &mut SaslConfig, _: &str, _: Option<u64>) -> Result<(), Error> {
    Err(Error::config(
        "sasl",
        "OAUTHBEARER tokens need the `tokio-runtime` feature",
    ))
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

    /// The `sub` claim of the token an OAUTHBEARER configuration makes.
    fn token_subject(config: &ClientConfig) -> String {
        use base64::Engine as _;
        let sasl = config.sasl_config.as_ref().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::OAuthBearer);
        let provider = sasl.token_provider.as_ref().expect("a token provider");
        let token = futures_util::FutureExt::now_or_never(provider.token())
            .expect("made at once")
            .unwrap();
        let claims = token.value.split('.').nth(1).unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap();
        let claims = String::from_utf8(claims).unwrap();
        let start = claims.find(r#""sub":""#).unwrap() + 7;
        claims[start..].split('"').next().unwrap().to_string()
    }

    #[test]
    fn unsecured_oauthbearer_tokens_read_from_java_and_librdkafka_properties() {
        let java = ClientConfig::from_properties([
            ("bootstrap.servers", "b:9092"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice" unsecuredLoginLifetimeSeconds="600";"#,
            ),
        ])
        .unwrap();
        java.validate().unwrap();
        assert_eq!(token_subject(&java), "alice");

        let librdkafka = ClientConfig::from_properties([
            ("bootstrap.servers", "b:9092"),
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            (
                "sasl.oauthbearer.config",
                "principal=bob lifeSeconds=60 scope=write extension_traceId=7",
            ),
        ])
        .unwrap();
        librdkafka.validate().unwrap();
        assert_eq!(token_subject(&librdkafka), "bob");
    }

    #[test]
    fn oauthbearer_settings_that_need_an_identity_provider_are_refused_by_name() {
        let err = |pairs: &[(&str, &str)]| {
            ClientConfig::from_properties(
                [("bootstrap.servers", "b:1")].iter().chain(pairs).copied(),
            )
            .and_then(|c| c.validate().map(|()| c))
            .unwrap_err()
        };
        let oidc = err(&[("sasl.oauthbearer.method", "oidc")]);
        assert_eq!(oidc.kind(), &crate::ErrorKind::Config { field: "sasl" });
        assert!(oidc.to_string().contains("TokenProvider"), "{oidc}");
        let no_sub = err(&[(
            "sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId=\"x\";",
        )]);
        assert!(
            no_sub.to_string().contains("unsecuredLoginStringClaim_sub"),
            "{no_sub}"
        );
        let no_principal = err(&[("sasl.oauthbearer.config", "lifeSeconds=60")]);
        assert!(
            no_principal.to_string().contains("principal"),
            "{no_principal}"
        );
        let unknown = err(&[("sasl.oauthbearer.config", "principal=a colour=blue")]);
        assert!(unknown.to_string().contains("colour"), "{unknown}");
        // Without a token source the mechanism alone is refused at validation.
        let bare = err(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
        ]);
        assert!(bare.to_string().contains("token provider"), "{bare}");
    }
}
