//! Kubernetes' own rules for names, Secret keys, label keys and values: one place, used by
//! validation (the CRD's rules say the same in CEL) and by Secret rendering.

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn check_object_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be a valid object name (DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
        ))
    }
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && !s.contains('.') && check_object_name(s).is_ok()
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters (letters, digits, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && check_object_name(p).is_err()
    {
        return Err("the prefix before / must be a DNS subdomain like example.com".into());
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("must be a qualified name: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally prefixed by a DNS subdomain and /".into())
    }
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn check_label_value(v: &str) -> Result<(), String> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "value {v:?} is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Kubernetes' rule for Secret and ConfigMap data keys (`IsConfigMapKey`).
pub fn check_data_key(key: &str) -> Result<(), String> {
    let fix = "use letters, digits, '-', '_' and '.' (at most 253 characters), like CLIENT_ID";
    if key.is_empty() {
        return Err(format!("a key name must not be empty; {fix}"));
    }
    if key.len() > 253 {
        let head: String = key.chars().take(32).collect();
        return Err(format!("key name {head:?}… is {} bytes long; {fix}", key.len()));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err(format!("{key:?} is not a valid Secret data key; {fix}"));
    }
    if key == "." || key.starts_with("..") {
        return Err(format!("{key:?} is not a valid Secret data key (it must not be '.' or start with '..'); {fix}"));
    }
    Ok(())
}
