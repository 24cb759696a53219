//! Pull credentials from `kubernetes.io/dockerconfigjson` (and legacy `dockercfg`)
//! documents, matched to a registry host the way the kubelet's keyring does it: a key may
//! carry a scheme, a port, a path prefix and `*` wildcards per DNS label; the most specific
//! matching key is tried first.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_model::reference::canonical_registry;
use serde::Deserialize;

/// A username and password for one registry. `source` names where it came from (a
/// secret's name) for messages; the secret values never appear in `Debug` or messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub source: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential {{ source: {:?}, .. }}", self.source)
    }
}

/// Every credential of a namespace, with the registry key each is for.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<(Key, Credential)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    /// The key as written, for ordering (longer, more specific keys first).
    text: String,
    host: String,
    port: Option<String>,
    path: String,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: Option<std::collections::BTreeMap<String, AuthEntry>>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Keyring {
    /// Adds the credentials of one decoded `.dockerconfigjson` (`{"auths": {...}}`) or
    /// `.dockercfg` (the map alone) document. Entries without usable credentials are
    /// skipped; the error names the source, never its content.
    pub fn add_docker_config(&mut self, source: &str, document: &[u8]) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|_| format!("pull secret {source:?} is not a Docker config JSON document"))?;
        let auths: std::collections::BTreeMap<String, AuthEntry> = match serde_json::from_value::<DockerConfig>(value.clone()) {
            Ok(DockerConfig { auths: Some(auths) }) => auths,
            _ => serde_json::from_value(value).map_err(|_| format!("pull secret {source:?} has no `auths` map"))?,
        };
        for (key, entry) in auths {
            let Some((username, password)) = entry.credentials() else {
                continue;
            };
            let Some(parsed) = Key::parse(&key) else {
                continue;
            };
            self.entries.push((parsed, Credential { source: source.to_string(), username, password }));
        }
        // The kubelet tries keys in reverse lexical order, so the most specific first.
        self.entries.sort_by(|a, b| b.0.text.cmp(&a.0.text));
        Ok(())
    }

    /// The credentials for an image at `host` (`name[:port]`) and repository `path`, most
    /// specific first.
    pub fn lookup(&self, host: &str, path: &str) -> Vec<Credential> {
        let (name, port) = split_port(&canonical_registry(host));
        self.entries.iter().filter(|(key, _)| key.matches(&name, port.as_deref(), path)).map(|(_, c)| c.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl AuthEntry {
    fn credentials(self) -> Option<(String, String)> {
        if let (Some(username), Some(password)) = (&self.username, &self.password)
            && !username.is_empty()
        {
            return Some((username.clone(), password.clone()));
        }
        let decoded = STANDARD.decode(self.auth?.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some((username.to_string(), password.to_string()))
    }
}

impl Key {
    fn parse(text: &str) -> Option<Key> {
        let without_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
        let (host_port, path) = match without_scheme.split_once('/') {
            Some((host, path)) => (host, path.trim_end_matches('/')),
            None => (without_scheme, ""),
        };
        if host_port.is_empty() {
            return None;
        }
        // Docker Hub's historical key `https://index.docker.io/v1/` is for all of Docker Hub.
        let host_port = canonical_registry(host_port);
        let path = if host_port == "docker.io" && path == "v1" { "" } else { path };
        let (host, port) = split_port(&host_port);
        Some(Key { text: text.to_string(), host, port, path: path.to_string() })
    }

    fn matches(&self, host: &str, port: Option<&str>, path: &str) -> bool {
        let labels_match = {
            let key_labels: Vec<&str> = self.host.split('.').collect();
            let host_labels: Vec<&str> = host.split('.').collect();
            key_labels.len() == host_labels.len() && key_labels.iter().zip(&host_labels).all(|(k, h)| label_matches(k, h))
        };
        let port_matches = self.port.is_none() || self.port.as_deref() == port;
        let path_matches = self.path.is_empty() || path == self.path || path.starts_with(&format!("{}/", self.path));
        labels_match && port_matches && path_matches
    }
}

/// One DNS label against a key label that may hold `*` (any run) wildcards.
fn label_matches(key: &str, label: &str) -> bool {
    match key.split_once('*') {
        None => key == label,
        Some((prefix, suffix)) => {
            label.len() >= prefix.len() + suffix.len() && label.starts_with(prefix) && label_matches_rest(suffix, &label[prefix.len()..])
        }
    }
}

fn label_matches_rest(key: &str, rest: &str) -> bool {
    if !key.contains('*') {
        return rest.ends_with(key);
    }
    (0..=rest.len()).any(|skip| rest.is_char_boundary(skip) && label_matches(key, &rest[skip..]))
}

fn split_port(host: &str) -> (String, Option<String>) {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name.to_string(), Some(port.to_string())),
        _ => (host.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(document: &str) -> Keyring {
        let mut keyring = Keyring::default();
        keyring.add_docker_config("pull", document.as_bytes()).unwrap();
        keyring
    }

    fn users(found: Vec<Credential>) -> Vec<String> {
        found.into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn keys_match_host_port_path_and_wildcards_most_specific_first() {
        let auth = |user: &str| STANDARD.encode(format!("{user}:secret"));
        let document = format!(
            r#"{{"auths":{{"registry.example.com":{{"auth":"{}"}},"registry.example.com/team":{{"auth":"{}"}},"*.lan:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            auth("host"),
            auth("team"),
            auth("lan"),
            auth("hub")
        );
        let keyring = keyring(&document);
        assert_eq!(users(keyring.lookup("registry.example.com", "team/app")), ["team", "host"]);
        assert_eq!(users(keyring.lookup("registry.example.com", "other/app")), ["host"]);
        assert_eq!(users(keyring.lookup("registry.example.com:443", "teamx/app")), ["host"]);
        assert_eq!(users(keyring.lookup("box.lan:5000", "app")), ["lan"]);
        assert!(keyring.lookup("box.lan:6000", "app").is_empty());
        assert!(keyring.lookup("a.box.lan:5000", "app").is_empty());
        assert_eq!(users(keyring.lookup("docker.io", "library/mysql")), ["hub"]);
        assert_eq!(users(keyring.lookup("", "library/mysql")), ["hub"]);
    }

    #[test]
    fn username_and_password_fields_and_legacy_dockercfg_work() {
        let keyring = keyring(r#"{"quay.io":{"username":"robot","password":"pw"}}"#);
        let found = keyring.lookup("quay.io", "org/app");
        assert_eq!((found[0].username.as_str(), found[0].password.as_str()), ("robot", "pw"));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let credential = Credential { source: "pull".into(), username: "robot".into(), password: "hunter2".into() };
        let shown = format!("{credential:?}");
        assert!(!shown.contains("robot") && !shown.contains("hunter2"));
    }
}
