//! Keys are data: a key becomes a file name, and no key may ever name a file
//! outside its dataset directory or collide with Kiln's own files.
//!
//! File stems live in three disjoint namespaces, told apart by the first byte:
//!
//! * **plain** — the key itself, when it is 1..=[`MAX_PLAIN_LEN`] bytes of
//!   `[A-Za-z0-9._-]` starting with a letter or digit (`01022500`, `600519.SH`);
//! * **escaped** — starts with `%`: every byte not allowed in a plain stem at
//!   that position is written `%XX` (`../etc` → `%%2E.%2Fetc`), reversible by
//!   [`decode_stem`];
//! * **hashed** — starts with `%~`: keys whose escaped form is too long for a
//!   file name become `%~` + 40 hex digits of SHA-256; the index keeps the key.
//!
//! Kiln's own files start with `_` (`_index.parquet`) or `.` (temp files), which
//! no stem can.

use sha2::{Digest, Sha256};

/// Longest stem (before the extension) written as-is or escaped; beyond this a
/// key is hashed. 200 leaves room for extensions within the common 255-byte limit.
pub const MAX_PLAIN_LEN: usize = 200;

const HASHED_PREFIX: &str = "%~";

fn allowed(byte: u8, first: bool) -> bool {
    byte.is_ascii_alphanumeric() || (!first && matches!(byte, b'.' | b'_' | b'-'))
}

/// Whether `key` is used verbatim as its file stem.
pub fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_PLAIN_LEN
        && key.bytes().enumerate().all(|(i, b)| allowed(b, i == 0))
}

/// The file stem for `key`. Never empty, never contains `/` or NUL, never `.`
/// or `..`, never starts with `_` or `.`.
pub fn file_stem(key: &str) -> String {
    if is_plain(key) {
        return key.to_owned();
    }
    let mut escaped = String::with_capacity(key.len() + 8);
    escaped.push('%');
    for (i, b) in key.bytes().enumerate() {
        if allowed(b, i == 0) {
            escaped.push(b as char);
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    if escaped.len() <= MAX_PLAIN_LEN {
        return escaped;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// The key a stem encodes, or `None` when the stem is hashed (look the key up
/// in the index) or is not a stem [`file_stem`] can produce.
pub fn decode_stem(stem: &str) -> Option<String> {
    if is_plain(stem) {
        return Some(stem.to_owned());
    }
    let rest = stem.strip_prefix('%')?;
    if rest.starts_with('~') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = rest.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(out).ok()?;
    (file_stem(&key) == stem).then_some(key)
}

/// Whether `name` is a single, harmless file name inside a dataset directory:
/// what a reader checks before joining an index entry's file name to the
/// directory, so that a tampered index cannot point outside it.
pub fn is_contained_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.starts_with('_')
        && !name.bytes().any(|b| b == b'/' || b == b'\\' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_stay_as_written() {
        for key in ["01022500", "600519.SH", "a-b_c", "COMID9"] {
            assert_eq!(file_stem(key), key);
            assert_eq!(decode_stem(key).as_deref(), Some(key));
        }
    }

    #[test]
    fn unsafe_keys_are_escaped_reversibly_and_contained() {
        for key in [
            "../etc",
            "..",
            ".",
            "a/b",
            "/abs",
            "_index",
            ".hidden",
            "-rf",
            "tab\there",
            "nul\0byte",
            "ünïcode",
            "a b",
            "%41",
            "%~abc",
            "\\windows\\path",
        ] {
            let stem = file_stem(key);
            assert!(stem.starts_with('%'), "{key:?} -> {stem}");
            assert!(is_contained_file_name(&format!("{stem}.parquet")), "{stem}");
            assert!(stem.len() <= MAX_PLAIN_LEN, "{stem}");
            assert_eq!(decode_stem(&stem).as_deref(), Some(key), "{key:?}");
        }
    }

    #[test]
    fn very_long_keys_are_hashed_and_distinct() {
        let plain_but_long = "x".repeat(MAX_PLAIN_LEN + 1);
        assert!(file_stem(&plain_but_long).starts_with("%~"));
        let a = "é".repeat(200);
        let b = format!("{a}x");
        let (sa, sb) = (file_stem(&a), file_stem(&b));
        assert!(sa.starts_with("%~") && sb.starts_with("%~"));
        assert_ne!(sa, sb);
        assert_eq!(decode_stem(&sa), None);
        assert!(is_contained_file_name(&sa));
    }

    #[test]
    fn namespaces_are_disjoint() {
        // A plain key can never look escaped, and an escaped stem never decodes
        // to a key whose stem differs (so two keys cannot share a file).
        assert_eq!(file_stem(".."), "%%2E.");
        assert_eq!(decode_stem("%%2E."), Some("..".into()));
        assert_eq!(decode_stem("%2E%2E"), None, "not what file_stem writes");
        assert_eq!(
            decode_stem("%61"),
            None,
            "'a' is plain, so %61 is not a stem"
        );
        assert_eq!(decode_stem("%zz"), None);
        assert!(!is_contained_file_name("../x.parquet"));
        assert!(!is_contained_file_name("_index.parquet"));
    }
}
