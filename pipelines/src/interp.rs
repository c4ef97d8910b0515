//! `${NAME}` and `${NAME:-default}` in manifest strings.
//!
//! Only the braced form is a reference, so a `$1` in an awk program or a
//! `$HOME` meant for a shell stays literal; `$$` is a literal `$`. A default
//! may itself hold references: `${DATA:-${ROOT}/data}`.

/// Replaces every reference in `text` by `lookup(name)`; a name without a
/// value and without a default is an error naming it.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix("${") {
            let end = closing_brace(body).ok_or_else(|| format!("unclosed '${{' in {text:?}"))?;
            out.push_str(&reference(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a reference, nested ones skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn reference(body: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match body.find(":-") {
        Some(i) => (&body[..i], Some(&body[i + 2..])),
        None => (body, None),
    };
    if !valid_name(name) {
        return Err(format!(
            "'${{{body}}}': a name is letters, digits, '_' and '.' (not starting with a digit)"
        ));
    }
    match (lookup(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => expand(default, lookup),
        (None, None) => Err(format!(
            "undefined variable '{name}' (set it in vars or the environment, or write ${{{name}:-default}})"
        )),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "ROOT" => Some("/r".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_defaults_and_literals() {
        assert_eq!(expand("${ROOT}/x", &vars).unwrap(), "/r/x");
        assert_eq!(expand("${NOPE:-d}", &vars).unwrap(), "d");
        assert_eq!(expand("${NOPE:-${ROOT}/data}", &vars).unwrap(), "/r/data");
        assert_eq!(expand("${EMPTY:-d}", &vars).unwrap(), "");
        assert_eq!(
            expand("awk '{print $1}' $$HOME $HOME", &vars).unwrap(),
            "awk '{print $1}' $HOME $HOME"
        );
        assert!(expand("${NOPE}", &vars)
            .unwrap_err()
            .contains("undefined variable 'NOPE'"));
        assert!(expand("${ROOT", &vars).unwrap_err().contains("unclosed"));
        assert!(expand("${1x}", &vars).is_err());
    }
}
