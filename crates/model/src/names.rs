//! Name rules, as Kubernetes and OpenShift validate them.

use crate::FieldError;

/// OpenShift's limit on `namespace/name` of an image stream (it becomes a repository path).
pub const MAX_NAMESPACED_NAME: usize = 255;

/// A DNS-1123 label: lowercase alphanumerics and `-`, at most 63 characters, starting and
/// ending with an alphanumeric. Namespaces and token names follow it.
pub fn check_dns_label(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "name is required"));
    }
    if name.len() > 63 {
        return Err(FieldError::new(field, format!("{name:?} is longer than 63 characters")));
    }
    if !is_label(name) {
        return Err(FieldError::new(
            field,
            format!("{name:?} is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit"),
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters. Image stream and
/// secret names follow it.
pub fn check_dns_subdomain(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "name is required"));
    }
    if name.len() > 253 {
        return Err(FieldError::new(field, format!("{name:?} is longer than 253 characters")));
    }
    if !name.split('.').all(is_label) {
        return Err(FieldError::new(
            field,
            format!("{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        ));
    }
    Ok(())
}

/// An image stream name: a DNS subdomain whose `namespace/name` fits in 255 characters.
pub fn check_stream_name(field: &str, namespace: &str, name: &str) -> Result<(), FieldError> {
    check_dns_subdomain(field, name)?;
    if namespace.len() + 1 + name.len() > MAX_NAMESPACED_NAME {
        return Err(FieldError::new(field, format!("'{namespace}/{name}' is longer than {MAX_NAMESPACED_NAME} characters")));
    }
    Ok(())
}

/// A tag: a letter, digit or `_`, then up to 127 letters, digits, `_`, `.` or `-` (the
/// rule of the OCI distribution spec, which OpenShift follows).
pub fn check_tag(field: &str, tag: &str) -> Result<(), FieldError> {
    let mut bytes = tag.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(FieldError::new(
            field,
            format!("{tag:?} is not a valid tag: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"),
        ));
    }
    Ok(())
}

/// Splits `stream:tag`, the name of an ImageStreamTag or ImageTag.
pub fn split_stream_tag(name: &str) -> Option<(&str, &str)> {
    let (stream, tag) = name.split_once(':')?;
    if stream.is_empty() || tag.is_empty() || tag.contains(':') {
        return None;
    }
    Some((stream, tag))
}

/// Splits `stream@digest`, the name of an ImageStreamImage.
pub fn split_stream_image(name: &str) -> Option<(&str, &str)> {
    let (stream, id) = name.split_once('@')?;
    if stream.is_empty() || id.is_empty() {
        return None;
    }
    Some((stream, id))
}

fn is_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    let inner_ok = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !part.is_empty() && part.len() <= 63 && inner_ok && ends_ok(bytes.first()) && ends_ok(bytes.last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_dns_subdomain_and_length_rules() {
        assert!(check_stream_name("metadata.name", "ns", "ruby").is_ok());
        assert!(check_stream_name("metadata.name", "ns", "my.app-2").is_ok());
        for bad in ["", "Ruby", "-ruby", "ruby-", "ru_by", "a..b", "ruby:latest"] {
            assert!(check_stream_name("metadata.name", "ns", bad).is_err(), "{bad:?}");
        }
        let long = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(58));
        assert_eq!(long.len(), 250);
        assert!(check_stream_name("metadata.name", "team", &long).is_ok());
        let err = check_stream_name("metadata.name", "teams", &long).unwrap_err();
        assert!(err.message.contains("longer than 255"), "{}", err.message);
    }

    #[test]
    fn tags_follow_the_distribution_rule() {
        for good in ["latest", "1.2.3", "_x", "v1-rc.2", &"a".repeat(128)] {
            assert!(check_tag("tag", good).is_ok(), "{good:?}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a@b", &"a".repeat(129)] {
            assert!(check_tag("tag", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn splits_virtual_names() {
        assert_eq!(split_stream_tag("ruby:2.7"), Some(("ruby", "2.7")));
        assert_eq!(split_stream_tag("ruby"), None);
        assert_eq!(split_stream_tag("ruby:a:b"), None);
        assert_eq!(split_stream_image("ruby@sha256:ab"), Some(("ruby", "sha256:ab")));
        assert_eq!(split_stream_image("@sha256:ab"), None);
    }
}
