//! What `berth tag` and `berth import-image` share about importing images from other
//! registries: the import and reference policy flags, how long to wait, where progress is
//! drawn, and what to advise when an import fails.

use std::io::IsTerminal;
use std::time::Duration;

use berth_model::imagestream::{TagImportPolicy, TagReference, TagReferencePolicy};
use berth_model::imagestreamimport::reason;
use berth_model::reference::ImageReference;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The registry a pull spec without one names, as container runtimes read it.
const DEFAULT_REGISTRY: &str = "docker.io";

/// How the tag is pulled: `source` from the source registry, `local` through berth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferencePolicy {
    Source,
    Local,
}

impl ReferencePolicy {
    fn api_name(self) -> &'static str {
        match self {
            ReferencePolicy::Source => "Source",
            ReferencePolicy::Local => "Local",
        }
    }
}

/// What an import keeps of a manifest list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportMode {
    /// One image of the list, for the server's preferred platform.
    #[value(name = "Legacy")]
    Legacy,
    /// The list itself and every image in it.
    #[value(name = "PreserveOriginal")]
    PreserveOriginal,
}

impl ImportMode {
    fn api_name(self) -> &'static str {
        match self {
            ImportMode::Legacy => "Legacy",
            ImportMode::PreserveOriginal => "PreserveOriginal",
        }
    }
}

/// The import policy and reference policy flags of a tag that imports from another
/// registry. `import-image` keeps what the tag has now for a flag left out (so that
/// importing again resets nothing); `tag` sets the tag anew, as `oc tag` does.
/// `--scheduled=false` and `--insecure=false` turn a setting off.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// Import the image again periodically, so the tag follows its source.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub scheduled: Option<bool>,
    /// Allow a registry served over plain HTTP or with a certificate that does not verify.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// Pull the tag's image from its source registry (`source`, the default) or through
    /// berth (`local`).
    #[arg(long, value_enum, ignore_case = true)]
    pub reference_policy: Option<ReferencePolicy>,
    /// For a manifest list: keep one image of it (`Legacy`, the default) or the list and
    /// all its images (`PreserveOriginal`).
    #[arg(long, value_enum, ignore_case = true)]
    pub import_mode: Option<ImportMode>,
}

impl PolicyArgs {
    /// The import and reference policy of a tag: each flag given wins, else what
    /// `existing` (the tag's spec now) has, else the API's defaults.
    pub fn policies(&self, existing: Option<&TagReference>) -> (TagImportPolicy, TagReferencePolicy) {
        let mut import = existing.map(|t| t.import_policy.clone()).unwrap_or_default();
        let mut reference = existing.map(|t| t.reference_policy.clone()).unwrap_or_default();
        if let Some(scheduled) = self.scheduled {
            import.scheduled = scheduled;
        }
        if let Some(insecure) = self.insecure {
            import.insecure = insecure;
        }
        if let Some(mode) = self.import_mode {
            import.import_mode = mode.api_name().to_string();
        }
        if let Some(policy) = self.reference_policy {
            reference.policy_type = policy.api_name().to_string();
        }
        (import, reference)
    }

    /// The flags given that only images from other registries take.
    pub fn import_flags(&self) -> Vec<&'static str> {
        let given = [
            ("--scheduled", self.scheduled.is_some()),
            ("--insecure", self.insecure.is_some()),
            ("--import-mode", self.import_mode.is_some()),
        ];
        given.into_iter().filter(|(_, given)| *given).map(|(flag, _)| flag).collect()
    }
}

/// A duration as `--timeout` takes it: `500ms`, `90s`, `5m`.
pub fn duration_text(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

/// A spinner showing `message`, drawn on standard error when it is a terminal and
/// nowhere else, so that logs and pipes get only the final lines.
pub fn spinner(message: String) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let spinner = ProgressBar::with_draw_target(None, target).with_style(ProgressStyle::default_spinner()).with_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// One failed import, as the server reported it, and what to tell the user.
pub struct Failure<'a> {
    /// The pull spec that was imported.
    pub from: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    /// The namespace whose pull secrets the server used.
    pub namespace: &'a str,
    /// The image stream imported into.
    pub stream: &'a str,
    /// The command that imports again once the cause is fixed.
    pub retry: String,
}

impl Failure<'_> {
    /// The registry host of the pull spec, `docker.io` when it names none.
    fn host(&self) -> String {
        match ImageReference::parse(self.from) {
            Ok(reference) if !reference.registry.is_empty() => reference.registry,
            Ok(_) => DEFAULT_REGISTRY.to_string(),
            Err(_) => self.from.split('/').next().unwrap_or(self.from).to_string(),
        }
    }

    /// The repository of the pull spec, without tag or digest.
    fn repository(&self) -> String {
        match ImageReference::parse(self.from) {
            Ok(reference) => ImageReference { tag: None, digest: None, ..reference }.to_string(),
            Err(_) => self.from.to_string(),
        }
    }

    /// What to do next, by reason; `None` when the message says it all.
    pub fn hint(&self) -> Option<String> {
        let host = self.host();
        let lowered = self.message.to_ascii_lowercase();
        if ["certificate", "x509", "tls", "http response to https"].iter().any(|needle| lowered.contains(needle)) {
            return Some(format!(
                "hint: if {host} serves plain HTTP or a certificate berth cannot verify, allow it with --insecure: {} --insecure",
                self.retry
            ));
        }
        let hint = match self.reason {
            reason::UNAUTHORIZED => self.pull_secret_hint(&host),
            reason::FORBIDDEN => format!(
                "hint: the pull secret for {host} in namespace {} names an account that may not pull {}: \
                 replace it with one that may (see `berth get secrets -n {}`), then run `{}`",
                self.namespace,
                self.repository(),
                self.namespace,
                self.retry
            ),
            reason::NOT_FOUND => format!(
                "hint: check the repository and tag; `berth import-image {} -n {} --from={} --all --dry-run` lists the \
                 repository's tags without importing them",
                self.stream,
                self.namespace,
                self.repository()
            ),
            reason::TIMEOUT | reason::UNAVAILABLE | reason::TOO_MANY_REQUESTS => {
                format!("hint: {host} is slow, down or limiting requests: try again later with `{}`", self.retry)
            }
            reason::DIGEST_MISMATCH => format!(
                "hint: {host} sent content that does not match its digest; try again with `{}`, and if it persists, \
                 something between berth and {host} alters content",
                self.retry
            ),
            _ => return None,
        };
        Some(hint)
    }

    /// The command that makes the pull secret, with placeholders for the credentials:
    /// the user types them, and berth never prints them.
    fn pull_secret_hint(&self, host: &str) -> String {
        let namespace = self.namespace;
        let name = format!("{}-pull-secret", host.replace(['.', ':', '[', ']'], "-"));
        format!(
            "hint: {host} wants credentials. Add a pull secret for it to namespace {namespace}, then run `{retry}`:\n\
             berth create secret docker-registry {name} -n {namespace} --docker-server={host} --docker-username=USER --docker-password=PASSWORD",
            retry = self.retry
        )
    }

    /// Prints the failure and its hint to standard error. `what` names the import, e.g.
    /// `the import of quay.io/app:1 into app:latest`.
    pub fn report(&self, what: &str) {
        eprintln!("error: {what} failed ({}): {}", self.reason, self.message);
        if let Some(hint) = self.hint() {
            eprintln!("{hint}");
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_model::meta::ObjectReference;

    use super::*;

    fn parse(args: &[&str]) -> PolicyArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            policy: PolicyArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).unwrap().policy
    }

    #[test]
    fn flags_given_win_over_the_tags_policy_and_the_rest_is_kept() {
        let existing = TagReference {
            name: "latest".into(),
            from: Some(ObjectReference { kind: "DockerImage".into(), name: "quay.io/a/b:1".into(), ..Default::default() }),
            import_policy: TagImportPolicy { insecure: true, scheduled: true, import_mode: "PreserveOriginal".into() },
            reference_policy: TagReferencePolicy { policy_type: "Local".into() },
            ..Default::default()
        };
        let (import, reference) = parse(&["--scheduled=false"]).policies(Some(&existing));
        assert_eq!(import, TagImportPolicy { insecure: true, scheduled: false, import_mode: "PreserveOriginal".into() });
        assert_eq!(reference.policy_type, "Local");
        let (import, reference) = parse(&["--insecure", "--reference-policy=local", "--import-mode=preserveoriginal"]).policies(None);
        assert_eq!(import, TagImportPolicy { insecure: true, scheduled: false, import_mode: "PreserveOriginal".into() });
        assert_eq!(reference.policy_type, "Local");
        let (import, reference) = parse(&[]).policies(None);
        assert_eq!((import, reference), (TagImportPolicy::default(), TagReferencePolicy::default()));
        assert_eq!(parse(&["--scheduled", "--import-mode", "Legacy"]).import_flags(), vec!["--scheduled", "--import-mode"]);
    }

    #[test]
    fn durations_take_units() {
        use berth_model::duration::parse_duration;
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        for text in ["90s", "5m", "500ms"] {
            assert_eq!(duration_text(parse_duration(text).unwrap()), text);
        }
    }

    fn failure<'a>(reason: &'a str, message: &'a str, from: &'a str) -> Failure<'a> {
        Failure { from, reason, message, namespace: "team", stream: "app", retry: "berth import-image app:1".to_string() }
    }

    #[test]
    fn unauthorized_imports_get_the_command_that_makes_a_pull_secret() {
        let hint = failure(reason::UNAUTHORIZED, "authentication required", "quay.io:443/team/app:1").hint().unwrap();
        assert!(hint.contains("Add a pull secret for it to namespace team, then run `berth import-image app:1`:\n"), "{hint}");
        assert!(
            hint.ends_with(
                "\nberth create secret docker-registry quay-io-443-pull-secret -n team --docker-server=quay.io:443 \
                 --docker-username=USER --docker-password=PASSWORD"
            ),
            "{hint}"
        );
        let docker_hub = failure(reason::UNAUTHORIZED, "", "library/mysql:8").hint().unwrap();
        assert!(docker_hub.starts_with("hint: docker.io wants credentials."), "{docker_hub}");
    }

    #[test]
    fn other_failures_get_advice_by_reason() {
        let not_found = failure(reason::NOT_FOUND, "manifest unknown", "quay.io/team/app:1").hint().unwrap();
        assert!(not_found.contains("`berth import-image app -n team --from=quay.io/team/app --all --dry-run`"), "{not_found}");
        let tls = failure(reason::INTERNAL, "x509: certificate signed by unknown authority", "r.local:5000/a:1").hint().unwrap();
        assert!(tls.contains("berth import-image app:1 --insecure"), "{tls}");
        assert_eq!(failure(reason::UNSUPPORTED, "schema 1", "a/b:1").hint(), None);
    }
}
