//! The cluster's registry settings for import: which registries may be imported from,
//! which are insecure, extra trusted CAs, the default platform, limits, timeouts and
//! retries. They are the `import` section of `berth serve`'s config file.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::hosts::HostPolicy;

/// Registry settings for import. Every field has a default, so an empty section (or none)
/// is a working configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ImportSettings {
    /// `host[:port]` globs (`*` and `?`) that may be imported and pulled through from.
    /// A pattern without a port matches port 443 (or 80 for an insecure registry), as in
    /// OpenShift's `allowedRegistriesForImport`. Empty (or `*`) allows every registry on a
    /// public address; private, loopback and link-local addresses only when a pattern
    /// names them (see [`crate::hosts`]).
    pub allowed_registries: Vec<String>,
    /// `host[:port]` globs reached over plain HTTP or TLS without verification.
    pub insecure_registries: Vec<String>,
    /// PEM files with extra CA certificates to trust for every registry.
    #[serde(rename = "additionalTrustedCA")]
    pub additional_trusted_ca: Vec<String>,
    /// The platform a manifest list is narrowed to in `Legacy` import mode when the tag
    /// names none: `os/arch[/variant]`.
    pub default_platform: String,
    /// How many tags a whole-repository import takes; `-1` takes all.
    pub max_images_bulk_imported_per_repository: i64,
    /// Limits applied to every registry unless `registries` says otherwise.
    pub limits: RegistryLimits,
    /// Per-registry limits, by exact `host[:port]`.
    pub registries: Vec<RegistryOverride>,
    pub connect_timeout_seconds: u64,
    /// The most one request (headers and body) may take.
    pub request_timeout_seconds: u64,
    /// How many times a request that got 429, a 5xx, a broken connection or a truncated
    /// body is tried again.
    pub retries: u32,
    /// The first retry waits this long (doubled each time, with jitter), unless the
    /// registry's `Retry-After` says longer.
    pub retry_base_millis: u64,
    /// The longest wait berth honours from a `Retry-After`; a longer one fails the request.
    pub max_retry_after_seconds: u64,
    /// The largest manifest berth accepts.
    pub max_manifest_bytes: usize,
    /// The largest image config berth accepts.
    pub max_config_bytes: usize,
    /// How often tags with `importPolicy.scheduled` are checked upstream.
    pub scheduled_import_interval_seconds: u64,
    /// The shortest interval a stream may ask for with its
    /// `berth.dev/scheduled-import-interval` annotation.
    pub minimum_scheduled_import_interval_seconds: u64,
    /// Scheduled checks started per minute across the server; -1 for no limit.
    pub max_scheduled_imports_per_minute: i64,
    pub disable_scheduled_import: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RegistryLimits {
    /// Requests per second to one registry; 0 means no limit.
    pub requests_per_second: u32,
    /// How many requests may go at once above the steady rate.
    pub burst: u32,
    /// Requests in flight to one registry at once.
    pub max_concurrent_requests: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryOverride {
    pub host: String,
    #[serde(flatten)]
    pub limits: RegistryLimits,
}

impl Default for ImportSettings {
    fn default() -> ImportSettings {
        ImportSettings {
            allowed_registries: Vec::new(),
            insecure_registries: Vec::new(),
            additional_trusted_ca: Vec::new(),
            default_platform: String::new(),
            max_images_bulk_imported_per_repository: berth_model::imagestreamimport::DEFAULT_MAX_IMAGES_BULK_IMPORTED,
            limits: RegistryLimits::default(),
            registries: Vec::new(),
            connect_timeout_seconds: 10,
            request_timeout_seconds: 30,
            retries: 3,
            retry_base_millis: 250,
            max_retry_after_seconds: 60,
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 8 << 20,
            scheduled_import_interval_seconds: 900,
            minimum_scheduled_import_interval_seconds: 60,
            max_scheduled_imports_per_minute: 60,
            disable_scheduled_import: false,
        }
    }
}

impl Default for RegistryLimits {
    fn default() -> RegistryLimits {
        RegistryLimits { requests_per_second: 500, burst: 500, max_concurrent_requests: 16 }
    }
}

impl ImportSettings {
    /// Checks the settings, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !self.default_platform.is_empty() {
            berth_model::manifest::PlatformPreference::parse(&self.default_platform)
                .map_err(|err| format!("import.defaultPlatform: {err}"))?;
        }
        if self.max_images_bulk_imported_per_repository < -1 || self.max_images_bulk_imported_per_repository == 0 {
            return Err("import.maxImagesBulkImportedPerRepository must be positive, or -1 for no limit".to_string());
        }
        if self.scheduled_import_interval_seconds == 0
            || self.scheduled_import_interval_seconds < self.minimum_scheduled_import_interval_seconds
        {
            return Err("import.scheduledImportIntervalSeconds must be at least import.minimumScheduledImportIntervalSeconds (and not 0)"
                .to_string());
        }
        if self.max_scheduled_imports_per_minute == 0 || self.max_scheduled_imports_per_minute < -1 {
            return Err("import.maxScheduledImportsPerMinute must be positive, or -1 for no limit".to_string());
        }
        for limits in std::iter::once(&self.limits).chain(self.registries.iter().map(|r| &r.limits)) {
            if limits.max_concurrent_requests == 0 {
                return Err("import limits: maxConcurrentRequests must be at least 1".to_string());
            }
        }
        Ok(())
    }

    pub fn limits_for(&self, host: &str) -> &RegistryLimits {
        self.registries.iter().find(|r| r.host == host).map_or(&self.limits, |r| &r.limits)
    }

    /// The policy of the registries that may be imported and pulled through from.
    pub fn registry_policy(&self) -> HostPolicy {
        HostPolicy::new(&self.allowed_registries, "import.allowedRegistries")
    }

    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure_registries.iter().any(|pattern| host_matches(pattern, host, true))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

/// Matches `host[:port]` against a glob pattern (`*`, `?`). A side without a port stands
/// for the default port (443, or 80 when `insecure`), so `quay.io` matches `quay.io:443`.
pub fn host_matches(pattern: &str, host: &str, insecure: bool) -> bool {
    if pattern == "*" {
        return true;
    }
    let default_port = if insecure { "80" } else { "443" };
    let split = |text: &str| -> (String, String) {
        match text.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name.to_ascii_lowercase(), port.to_string()),
            _ => (text.to_ascii_lowercase(), default_port.to_string()),
        }
    };
    let (pattern_name, pattern_port) = split(pattern);
    let (host_name, host_port) = split(host);
    WildMatch::new(&pattern_name).matches(&host_name) && WildMatch::new(&pattern_port).matches(&host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_globs_match_hosts_and_default_ports() {
        assert!(host_matches("quay.io", "quay.io", false));
        assert!(host_matches("quay.io", "quay.io:443", false));
        assert!(!host_matches("quay.io", "quay.io:5000", false));
        assert!(host_matches("*.example.com", "registry.example.com", false));
        assert!(!host_matches("*.example.com", "example.org", false));
        assert!(host_matches("127.0.0.1:*", "127.0.0.1:5000", false));
        assert!(host_matches("registry-?.lan", "registry-1.lan:80", true));
        assert!(host_matches("*", "anything:1", false));
    }

    #[test]
    fn an_empty_allow_list_allows_public_registries() {
        let mut settings = ImportSettings::default();
        assert!(settings.registry_policy().check("docker.io", 443).is_ok());
        assert!(settings.registry_policy().check("127.0.0.1:5000", 443).is_err());
        settings.allowed_registries = vec!["quay.io".into()];
        assert!(settings.registry_policy().check("docker.io", 443).is_err());
        assert!(settings.registry_policy().check("quay.io", 443).is_ok());
    }

    #[test]
    fn settings_read_from_yaml_keep_defaults_for_the_rest() {
        let settings: ImportSettings =
            serde_json::from_value(serde_json::json!({"insecureRegistries": ["127.0.0.1:*"], "limits": {"burst": 7}})).unwrap();
        assert_eq!(settings.limits.burst, 7);
        assert_eq!(settings.limits.max_concurrent_requests, 16);
        assert_eq!(settings.max_images_bulk_imported_per_repository, 50);
        assert!(serde_json::from_value::<ImportSettings>(serde_json::json!({"alowedRegistries": []})).is_err());
        let spelled = serde_json::from_value::<ImportSettings>(serde_json::json!({"additionalTrustedCA": ["/etc/ca.pem"]})).unwrap();
        assert_eq!(spelled.additional_trusted_ca, ["/etc/ca.pem"], "OpenShift's spelling");
    }
}
