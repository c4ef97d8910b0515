//! Keeping the password out of everything kiln-preheat prints or records.

/// `text` with every occurrence of `secret` (as typed, and percent-encoded
/// as it appears in a URL) replaced by `***`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(secret, "***");
    let encoded = percent_encode(secret);
    if encoded != secret {
        out = out.replace(&encoded, "***");
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A command line with the password of any `--url` removed, for the
/// manifest's record of how the cache was made.
pub fn redact_args(args: &[String], secret: Option<&str>) -> Vec<String> {
    args.iter().map(|a| redact(a, secret)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encoded_passwords_vanish() {
        assert_eq!(
            redact("mysql://u:p@ss w@h/db failed", Some("p@ss w")),
            "mysql://u:***@h/db failed"
        );
        assert_eq!(
            redact("mysql://u:p%40ss%20w@h/db", Some("p@ss w")),
            "mysql://u:***@h/db"
        );
        assert_eq!(redact("no secret", None), "no secret");
        assert_eq!(redact("x", Some("")), "x");
    }
}
