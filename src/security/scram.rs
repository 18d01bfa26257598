//! The client side of SCRAM (RFC 5802; SHA-256 per RFC 7677, SHA-512 as
//! Kafka uses it), without I/O: it makes the client's messages and checks
//! the server's. Channel binding is off (`n,,`), as Kafka uses SCRAM.
//!
//! Every server message is bounded and checked before use: the nonce must
//! extend ours, the iteration count must lie in Kafka's range (4096 to
//! 16384), and the server's final signature must prove it knows the
//! password, or the exchange fails.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use crate::error::{Error, ErrorKind};
use crate::security::SaslMechanism;

/// The fewest PBKDF2 iterations accepted (Kafka's minimum).
pub(crate) const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations accepted (Kafka's maximum): a server asking
/// for more would make the client burn CPU for it.
pub(crate) const MAX_ITERATIONS: u32 = 16384;
/// The longest server message accepted, in bytes.
pub(crate) const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

fn failure(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

/// One SCRAM exchange, from the client's first message to the check of the
/// server's last.
pub(crate) struct ScramClient {
    hash: Hash,
    password: String,
    nonce: String,
    client_first_bare: String,
    /// The signature the server must send back, once computed.
    expected_server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// An exchange for `mechanism` (a SCRAM one) with a fresh random nonce.
    pub(crate) fn new(
        mechanism: SaslMechanism,
        username: &str,
        password: &str,
    ) -> Result<ScramClient, Error> {
        let mut raw = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| failure("no randomness for the SCRAM nonce"))?;
        ScramClient::with_nonce(mechanism, username, password, BASE64.encode(raw))
    }

    /// An exchange with a given nonce (the RFC test vectors use one).
    pub(crate) fn with_nonce(
        mechanism: SaslMechanism,
        username: &str,
        password: &str,
        nonce: String,
    ) -> Result<ScramClient, Error> {
        let hash = match mechanism {
            SaslMechanism::ScramSha256 => Hash::Sha256,
            SaslMechanism::ScramSha512 => Hash::Sha512,
            SaslMechanism::Plain | SaslMechanism::OAuthBearer => {
                return Err(failure(format!(
                    "{} is not a SCRAM mechanism",
                    mechanism.name()
                )));
            }
        };
        let client_first_bare = format!("n={},r={nonce}", escape_name(username));
        Ok(ScramClient {
            hash,
            password: password.to_string(),
            nonce,
            client_first_bare,
            expected_server_signature: None,
        })
    }

    /// The client-first message: no channel binding, no authorisation id.
    pub(crate) fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Reads the server-first message and returns the client-final one.
    pub(crate) fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, Error> {
        let server_first = text(server_first, "server-first")?;
        let fields = Fields::parse(server_first)?;
        if let Some(error) = fields.get('e') {
            return Err(failure(format!("the server refused: {error}")));
        }
        if server_first.starts_with("m=") {
            return Err(failure(
                "the server asks for a SCRAM extension this client does not know",
            ));
        }
        let nonce = fields.require('r')?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(failure(
                "the server's nonce does not extend the client's: refusing the exchange",
            ));
        }
        if nonce.contains(',') || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(failure("the server's nonce holds characters SCRAM forbids"));
        }
        let salt = BASE64
            .decode(fields.require('s')?)
            .map_err(|_| failure("the server's salt is not base64"))?;
        if salt.is_empty() {
            return Err(failure("the server's salt is empty"));
        }
        let iterations: u32 = fields
            .require('i')?
            .parse()
            .map_err(|_| failure("the server's iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(failure(format!(
                "the server asks for {iterations} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            )));
        }
        let iterations = std::num::NonZeroU32::new(iterations)
            .ok_or_else(|| failure("the server's iteration count is zero"))?;

        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.expected_server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server must prove it knows the
    /// password, or report why it refused.
    pub(crate) fn verify_server_final(&self, server_final: &[u8]) -> Result<(), Error> {
        let server_final = text(server_final, "server-final")?;
        let fields = Fields::parse(server_final)?;
        if let Some(error) = fields.get('e') {
            return Err(failure(format!("the server refused: {error}")));
        }
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or_else(|| failure("server-final before server-first"))?;
        let signature = BASE64
            .decode(fields.require('v')?)
            .map_err(|_| failure("the server's signature is not base64"))?;
        // Compared in full, whatever differs first.
        let same = signature.len() == expected.len()
            && signature
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(failure(
                "the server's signature is wrong: it did not prove it knows the password",
            ));
        }
        Ok(())
    }
}

/// A server message as text, bounded.
fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Error> {
    if bytes.len() > MAX_MESSAGE {
        return Err(failure(format!(
            "the SCRAM {what} message is {} bytes, more than {MAX_MESSAGE}",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes)
        .map_err(|_| failure(format!("the SCRAM {what} message is not UTF-8")))
}

/// `a=value` attributes, comma-separated.
struct Fields<'a>(Vec<(char, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(message: &'a str) -> Result<Fields<'a>, Error> {
        let mut fields = Vec::new();
        for part in message.split(',') {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(name), Some('=')) if name.is_ascii_alphabetic() => {
                    fields.push((name, &part[2..]));
                }
                _ => return Err(failure("a SCRAM message attribute is malformed")),
            }
        }
        Ok(Fields(fields))
    }

    fn get(&self, name: char) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn require(&self, name: char) -> Result<&'a str, Error> {
        self.get(name)
            .ok_or_else(|| failure(format!("the SCRAM message has no `{name}=` attribute")))
    }
}

/// A user name as SCRAM writes it: `=` as `=3D`, `,` as `=2C`.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_client() -> ScramClient {
        ScramClient::with_nonce(SaslMechanism::ScramSha256, "user", "pencil", NONCE.into()).unwrap()
    }

    #[test]
    fn the_rfc_7677_exchange_is_reproduced() {
        let mut client = rfc_client();
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), CLIENT_FINAL);
        client.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_wrong_server_signature_fails() {
        let mut client = rfc_client();
        client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let err = client.verify_server_final(forged.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Authentication);
        assert!(err.to_string().contains("did not prove"), "{err}");
        // A server-final without any signature fails too.
        assert!(client.verify_server_final(b"x=1").is_err());
        // And one before server-first.
        assert!(
            rfc_client()
                .verify_server_final(SERVER_FINAL.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn hostile_server_first_messages_fail() {
        let cases = [
            // The nonce does not extend ours, or only repeats it.
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Iterations outside Kafka's range, or not a number.
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000000",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
            // Salt missing, empty or not base64.
            "r=rOprNGfwEbeRWgbNEkqOxx,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=***,i=4096",
            // Malformed attributes, extensions, errors.
            "garbage",
            "",
            "m=ext,r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "e=other-error",
        ];
        for case in cases {
            let err = rfc_client().client_final(case.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Authentication, "{case}: {err}");
        }
        let huge = vec![b'a'; MAX_MESSAGE + 1];
        assert!(rfc_client().client_final(&huge).is_err());
        assert!(rfc_client().client_final(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn names_are_escaped_and_nonces_are_fresh() {
        let a = ScramClient::new(SaslMechanism::ScramSha512, "a=b,c", "p").unwrap();
        let first = String::from_utf8(a.client_first()).unwrap();
        assert!(first.starts_with("n,,n=a=3Db=2Cc,r="), "{first}");
        let b = ScramClient::new(SaslMechanism::ScramSha512, "a", "p").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert!(ScramClient::new(SaslMechanism::Plain, "a", "p").is_err());
    }

    #[test]
    fn sha512_round_trips_against_a_server_computed_here() {
        // The server side of RFC 5802, computed independently of the
        // client's code path, with SHA-512.
        let mut client =
            ScramClient::with_nonce(SaslMechanism::ScramSha512, "u", "pw", "abc".into()).unwrap();
        let salt = b"0123456789abcdef";
        let server_first = format!("r=abcdef,s={},i=4096", BASE64.encode(salt));
        let client_final = client.client_final(server_first.as_bytes()).unwrap();
        let mut salted = [0u8; 64];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            std::num::NonZeroU32::new(4096).unwrap(),
            salt,
            b"pw",
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA512, &salted);
        let auth = format!("n=u,r=abc,{server_first},c=biws,r=abcdef");
        let client_key = hmac::sign(&key, b"Client Key");
        let stored = digest::digest(&digest::SHA512, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, stored.as_ref()),
            auth.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            format!("c=biws,r=abcdef,p={}", BASE64.encode(proof))
        );
        let server_key = hmac::sign(&key, b"Server Key");
        let v = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, server_key.as_ref()),
            auth.as_bytes(),
        );
        client
            .verify_server_final(format!("v={}", BASE64.encode(v.as_ref())).as_bytes())
            .unwrap();
    }
}
