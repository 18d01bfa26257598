// Logic of the `scram` fuzz target, shared with the corpus replay test
// (`tests/fuzz_corpus.rs`), which `include!`s this file.
//
// Input layout: byte 0 bit 0 chooses SCRAM-SHA-512 (set) or SCRAM-SHA-256;
// the rest is the server-first message, a newline, then the server-final
// message. The client is RFC 7677's test user (`user`, `pencil`, nonce
// `rOprNGfwEbeRWgbNEkqO`), so the RFC's server messages complete the
// exchange and mutations of them reach every check.

use smartkafka::security::fuzzing::scram_exchange;

/// The client nonce the exchange starts with.
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

/// What one input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The server-first message was accepted and a client-final made.
    pub client_final: bool,
    /// The server-final message proved the password.
    pub verified: bool,
}

/// The value of attribute `name` in a SCRAM message, if present.
fn attribute(message: &[u8], name: u8) -> Option<&[u8]> {
    message
        .split(|b| *b == b',')
        .find(|part| part.len() >= 2 && part[0] == name && part[1] == b'=')
        .map(|part| &part[2..])
}

/// Where the value of the first `v=` attribute of `message` begins, if it
/// has one and it is not empty.
fn signature_start(message: &[u8]) -> Option<usize> {
    let mut at = 0;
    for part in message.split(|b| *b == b',') {
        if part.len() > 2 && part.starts_with(b"v=") {
            return Some(at + 2);
        }
        at += part.len() + 1;
    }
    None
}

/// Runs one input. Never panics on any input.
pub fn run(data: &[u8]) -> Outcome {
    let Some((&flags, rest)) = data.split_first() else {
        return Outcome::default();
    };
    let sha512 = flags & 1 == 1;
    let (server_first, server_final) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let exchange = scram_exchange(sha512, server_first, server_final);
    let mut outcome = Outcome::default();
    let Ok(client_final) = exchange.client_final else {
        assert!(exchange.server_final.is_none(), "server-final read after a refusal");
        return outcome;
    };
    outcome.client_final = true;

    // Accepted: the nonce extends ours and the iteration count is in
    // Kafka's range; the reply is bounded by what it echoes.
    let nonce = attribute(server_first, b'r').expect("accepted without a nonce");
    assert!(nonce.len() > CLIENT_NONCE.len() && nonce.starts_with(CLIENT_NONCE.as_bytes()));
    let iterations: u32 = std::str::from_utf8(attribute(server_first, b'i').expect("no count"))
        .expect("count is text")
        .parse()
        .expect("count is a number");
    assert!((4096..=16384).contains(&iterations), "{iterations} iterations accepted");
    assert!(client_final.starts_with(b"c=biws,r="), "client-final layout");
    assert!(client_final.len() <= server_first.len() + 128, "client-final too long");
    assert!(client_final.is_ascii());

    let verified = exchange
        .server_final
        .expect("server-final checked after a client-final");
    if verified.is_ok() {
        outcome.verified = true;
        // The proof is what made it pass: any change to the signature's
        // first character must be refused.
        let start = signature_start(server_final).expect("verified without a signature");
        let mut forged = server_final.to_vec();
        forged[start] = if forged[start] == b'A' { b'B' } else { b'A' };
        let again = scram_exchange(sha512, server_first, &forged);
        assert!(
            matches!(again.server_final, Some(Err(_))),
            "a changed server signature was accepted"
        );
    }
    outcome
}
