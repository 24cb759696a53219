//! Image references as container tools write them: `[registry/]path[:tag][@digest]`.

use std::fmt;

use crate::Digest;

/// A parsed image reference. `registry` is empty when the reference names none (a
/// runtime would use its default registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    pub registry: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageReference {
    pub fn parse(text: &str) -> Result<ImageReference, String> {
        if text.is_empty() {
            return Err("an image reference is required".to_string());
        }
        if text.len() > 4096 || text.chars().any(char::is_whitespace) {
            return Err(format!("{text:?} is not an image reference"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>().map_err(|err| format!("{text:?}: {err}"))?)),
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |idx| idx + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(idx) => (&rest[..last_slash + idx], Some(rest[last_slash + idx + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            crate::names::check_tag("", tag).map_err(|err| format!("{text:?}: {}", err.message))?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => (first, path),
            _ => ("", name),
        };
        if !registry.is_empty() && !valid_registry(registry) {
            return Err(format!("{text:?}: {registry:?} is not a valid registry host"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(format!(
                "{text:?}: the repository path must be lowercase letters and digits separated by '/', '.', '_', '__' or '-'"
            ));
        }
        Ok(ImageReference { registry: registry.to_string(), path: path.to_string(), tag, digest })
    }

    /// `registry/path:tag` with Docker Hub's names made canonical (`docker.io`,
    /// `library/` for single names): the key under which streams that track this tag are
    /// found when the registry says it changed. `None` for a reference by digest, which
    /// never moves.
    pub fn tracking_key(&self) -> Option<String> {
        if self.digest.is_some() {
            return None;
        }
        Some(tracking_key(&self.registry, &self.path, self.tag.as_deref().unwrap_or("latest")))
    }

    /// The same repository, by digest, as a tag's history records an image.
    pub fn with_digest(&self, digest: &Digest) -> ImageReference {
        ImageReference { tag: None, digest: Some(digest.clone()), ..self.clone() }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.registry.is_empty() {
            write!(f, "{}/", self.registry)?;
        }
        f.write_str(&self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The canonical `registry/path:tag` of a tag of a repository (see
/// [`ImageReference::tracking_key`]).
pub fn tracking_key(registry: &str, path: &str, tag: &str) -> String {
    let registry = canonical_registry(registry);
    format!("{}/{}:{tag}", registry, canonical_path(&registry, path))
}

/// A registry host as berth names it: lowercase, and `docker.io` for every name Docker
/// Hub goes by (none at all included, as runtimes default to it).
pub fn canonical_registry(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => lower,
    }
}

/// A repository path as its registry stores it: Docker Hub keeps single names (official
/// images) under `library/`.
pub fn canonical_path(registry: &str, path: &str) -> String {
    if registry == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path.to_string() }
}

fn valid_registry(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => (name, Some(port)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    port_ok && name_ok
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut idx = 0;
    while idx < bytes.len() {
        let b = bytes[idx];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            idx += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', always followed by an alphanumeric.
        let run_end = match b {
            b'.' => idx + 1,
            b'_' if bytes.get(idx + 1) == Some(&b'_') => idx + 2,
            b'_' => idx + 1,
            b'-' => idx + bytes[idx..].iter().take_while(|c| **c == b'-').count(),
            _ => return false,
        };
        if !bytes.get(run_end).is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return false;
        }
        idx = run_end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let short = ImageReference::parse("mysql:5.6").unwrap();
        assert_eq!((short.registry.as_str(), short.path.as_str(), short.tag.as_deref()), ("", "mysql", Some("5.6")));
        let full = ImageReference::parse("registry.example.com:5000/team/app:v1").unwrap();
        assert_eq!(full.registry, "registry.example.com:5000");
        assert_eq!(full.path, "team/app");
        let digest = Digest::sha256_of(b"x");
        let pinned = ImageReference::parse(&format!("localhost/app@{digest}")).unwrap();
        assert_eq!(pinned.digest, Some(digest.clone()));
        assert_eq!(pinned.to_string(), format!("localhost/app@{digest}"));
        assert_eq!(full.with_digest(&digest).to_string(), format!("registry.example.com:5000/team/app@{digest}"));
    }

    #[test]
    fn rejects_bad_references_with_a_reason() {
        for bad in ["", "Upper/case", "app:bad:tag", "app@sha256:123", "a//b", "app:", "with space", "a--/b", "-a"] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ImageReference::parse("a__b/c-d--e.f").is_ok());
    }
}
