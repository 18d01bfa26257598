//! Bootstrap server addresses: the one parser every client configuration
//! (producer, admin, reader) validates `bootstrap_servers` with.
//!
//! An entry is `host:port` or `[ipv6]:port`, as in the Java client's
//! `bootstrap.servers`. A URL scheme (`http://...`), a missing or invalid
//! port, an unbracketed IPv6 address and an empty entry (a stray comma)
//! are configuration errors, reported when the configuration is validated
//! rather than as a connection failure later.

use std::net::Ipv6Addr;

/// Checks one entry of `bootstrap_servers`; the error says what is wrong
/// with it and quotes it.
pub(crate) fn check(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("an entry is empty (a stray comma?)".to_string());
    }
    if let Some((scheme, _)) = entry.split_once("://") {
        return Err(format!(
            "`{entry}` has a URL scheme (`{scheme}://`): give host:port only"
        ));
    }
    let port = if let Some(rest) = entry.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(format!("`{entry}`: `[` without a closing `]`"));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{entry}`: `{ip}` is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("`{entry}` has no port: write [{ip}]:9092"));
        };
        port
    } else {
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(format!("`{entry}` has no port: write {entry}:9092"));
        };
        if host.contains(':') {
            return Err(format!(
                "`{entry}`: an IPv6 address goes in brackets, as in [::1]:9092"
            ));
        }
        if host.is_empty() {
            return Err(format!("`{entry}` has no host"));
        }
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!(
                "`{entry}`: the host `{host}` contains `{bad}`, which no host name or IP address has"
            ));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{entry}`: `{port}` is not a port (1 to 65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn host_port_and_bracketed_ipv6_are_accepted() {
        for ok in [
            "localhost:9092",
            "127.0.0.1:1",
            "broker-1.example.com:65535",
            "kafka_0:9092",
            "[::1]:9092",
            "[fe80::1]:19092",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("http://localhost:9092", "URL scheme"),
            ("PLAINTEXT://broker:9092", "URL scheme"),
            ("localhost", "no port"),
            ("localhost:", "is not a port"),
            ("localhost:0", "is not a port"),
            ("localhost:99999", "is not a port"),
            ("localhost:90x", "is not a port"),
            (":9092", "no host"),
            ("::1:9092", "brackets"),
            ("[::1]", "no port"),
            ("[::1:9092", "closing"),
            ("[not-v6]:9092", "not an IPv6 address"),
            ("local host:9092", "contains ` `"),
            ("localhost/kafka:9092", "contains `/`"),
        ];
        for (entry, says) in cases {
            let err = check(entry).expect_err(entry);
            assert!(err.contains(says), "{entry}: {err}");
            if !entry.is_empty() {
                assert!(err.contains(entry), "names the entry: {err}");
            }
        }
    }
}
