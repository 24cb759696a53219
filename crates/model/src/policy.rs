//! ImagePolicy (`berth.dev/v1`, cluster-scoped, written by cluster admins): which images
//! the workloads of which namespaces may run. OpenShift's ImagePolicy admission plugin
//! has `executionRules` (registries, image labels and annotations); a berth rule can also
//! require a digest, require that berth knows the image, require that it is built on an
//! ImageClass, be tried in dry-run first, and say per rule whether a workload is admitted
//! or refused when berth cannot decide.
//!
//! A rule is judged here, against the facts the server gathers about one image
//! ([`ImageFacts`]); gathering them is the server's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::selector::LabelSelectorSpec;
use crate::{Digest, FieldError};

/// The annotation that forbids an image to run (OpenShift's).
pub const DENY_EXECUTION: &str = "images.openshift.io/deny-execution";
/// The prefix of OpenShift's image quality annotations; a vulnerability report is
/// `quality.images.openshift.io/vulnerability.<provider>`.
pub const QUALITY_PREFIX: &str = "quality.images.openshift.io/";
pub const VULNERABILITY_PREFIX: &str = "quality.images.openshift.io/vulnerability.";

/// Whether an annotation is a mark a scanner may set: the deny-execution flag or a
/// quality report.
pub fn is_mark(annotation: &str) -> bool {
    annotation == DENY_EXECUTION || annotation.starts_with(QUALITY_PREFIX)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    #[serde(default)]
    pub spec: ImagePolicySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagePolicySpec {
    /// The workload resources the rule applies to (`pods`, `deployments`, `buildconfigs`,
    /// ...); every one when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The namespaces the rule applies to, by the labels of berth's namespace of the same
    /// name; every namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelectorSpec>,
    /// Namespaces the rule does not apply to. Only cluster admins write policies, so only
    /// they grant an exemption.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_namespaces: Vec<String>,
    /// The images the rule is about; every image when empty.
    #[serde(default)]
    pub images: ImageMatch,
    /// `Require` (the default): the images may run only when they meet every requirement.
    /// `Deny`: the images may not run.
    #[serde(default)]
    pub action: PolicyAction,
    #[serde(default)]
    pub require: ImageRequirements,
    /// `Enforce` (the default) refuses; `DryRun` admits, and says in a warning and the
    /// audit annotations what it would have refused.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// When berth cannot decide (its store cannot be read): `Fail` (the default) refuses
    /// the workload, `Ignore` admits it with a warning.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// What to tell a developer whose workload the rule refuses: whom to ask, what to do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Image patterns: `*` is any run of characters (`/` too), `?` one character.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMatch {
    /// Registry hosts (`docker.io` for names without one, `registry.corp:5000`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
    /// Repositories (`library/ruby`, `team/*`), Docker Hub's single names with `library/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PolicyAction {
    #[default]
    Require,
    Deny,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Enforcement {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

/// What an image must be to run, all of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRequirements {
    /// It comes from one of these registries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
    /// It is one of these repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// The workload names it by digest (after berth's mutating webhook, which rewrites
    /// the tags it can resolve).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub digest: bool,
    /// berth knows the image: it was imported or pushed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub known: bool,
    /// Its labels (the image config's) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSelectorSpec>,
    /// Its annotations in berth match (a scanner's approval, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<LabelSelectorSpec>,
    /// It is built on a version of one of these ImageClasses (current or outdated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descendant_of: Vec<String>,
}

impl ImageRequirements {
    /// Whether judging needs the image as berth holds it (not only its name).
    fn needs_image(&self) -> bool {
        self.known || self.labels.is_some() || self.annotations.is_some() || !self.descendant_of.is_empty()
    }
}

/// What berth knows of one image of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// The reference as the workload names it.
    pub written: String,
    /// Where it comes from, Docker Hub's names made canonical (`docker.io`, `library/`):
    /// the image berth resolved it to when it did.
    pub registry: String,
    pub repository: String,
    /// The workload names it by digest.
    pub by_digest: bool,
    /// The image in berth (shared: kept between reviews): `Ok(None)` when berth does not
    /// know it, `Err` when berth could not read it.
    pub image: Result<Option<std::sync::Arc<KnownImage>>, String>,
    /// The ImageClasses it is built on (they follow the lineage index, not the Image), when
    /// a rule asks.
    pub classes: BTreeSet<String>,
}

/// An image berth holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownImage {
    pub digest: Option<Digest>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The image marked `images.openshift.io/deny-execution: "true"` that stops this one:
    /// itself, or (when marks reach descendants) an image it is built on.
    pub denied_by: Option<Digest>,
}

/// A rule's judgement of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Why the image may not run.
    Deny(String),
    /// Why berth could not tell.
    CannotDecide(String),
}

impl ImagePolicy {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> =
            crate::names::check_dns_subdomain("metadata.name", &self.metadata.name).err().into_iter().collect();
        if let Some(selector) = &self.spec.namespace_selector {
            errors.extend(selector.validate("spec.namespaceSelector"));
        }
        for (field, selector) in
            [("spec.require.labels", &self.spec.require.labels), ("spec.require.annotations", &self.spec.require.annotations)]
        {
            if let Some(selector) = selector {
                errors.extend(selector.validate(field));
            }
        }
        for (idx, class) in self.spec.require.descendant_of.iter().enumerate() {
            if let Err(err) = crate::names::check_dns_label(&format!("spec.require.descendantOf[{idx}]"), class) {
                errors.push(err);
            }
        }
        if self.spec.action == PolicyAction::Deny && self.spec.require != ImageRequirements::default() {
            errors.push(FieldError::new("spec.require", "a Deny rule refuses the images it matches: it has no requirements"));
        }
        errors
    }
}

/// Glob patterns, compiled once: `*` is any run of characters (`/` too), `?` one.
#[derive(Clone, Debug, Default)]
struct Patterns(Vec<WildMatch>);

impl Patterns {
    fn new(patterns: &[String]) -> Patterns {
        Patterns(patterns.iter().map(|p| WildMatch::new(p)).collect())
    }

    /// An empty list matches everything.
    fn admit(&self, text: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(text))
    }
}

/// A policy ready to judge images: its patterns compiled.
#[derive(Clone, Debug)]
pub struct Rule {
    pub policy: ImagePolicy,
    registries: Patterns,
    repositories: Patterns,
    required_registries: Patterns,
    required_repositories: Patterns,
}

impl Rule {
    pub fn new(policy: ImagePolicy) -> Rule {
        let spec = &policy.spec;
        Rule {
            registries: Patterns::new(&spec.images.registries),
            repositories: Patterns::new(&spec.images.repositories),
            required_registries: Patterns::new(&spec.require.registries),
            required_repositories: Patterns::new(&spec.require.repositories),
            policy,
        }
    }

    pub fn name(&self) -> &str {
        &self.policy.metadata.name
    }

    /// Whether the rule applies to a workload of `resource` in `namespace`, once its
    /// namespace selector matched the namespace's labels.
    pub fn applies_to(&self, resource: &str, namespace: &str) -> bool {
        let spec = &self.policy.spec;
        (spec.resources.is_empty() || spec.resources.iter().any(|r| r == resource))
            && !spec.exempt_namespaces.iter().any(|n| n == namespace)
    }

    /// Whether the rule is about this image at all.
    pub fn matches(&self, facts: &ImageFacts) -> bool {
        self.registries.admit(&facts.registry) && self.repositories.admit(&facts.repository)
    }

    /// The rule's judgement of one image of a workload.
    pub fn judge(&self, facts: &ImageFacts) -> Verdict {
        if !self.matches(facts) {
            return Verdict::Pass;
        }
        let denied = |problem: String| Verdict::Deny(self.reason(&facts.written, &problem));
        if self.policy.spec.action == PolicyAction::Deny {
            return denied("the rule refuses every image it matches".to_string());
        }
        let require = &self.policy.spec.require;
        if !self.required_registries.admit(&facts.registry) {
            return denied(format!(
                "comes from registry {}, and only {} are allowed: use an image from one of those (or import it into berth)",
                facts.registry,
                require.registries.join(", ")
            ));
        }
        if !self.required_repositories.admit(&facts.repository) {
            return denied(format!("is repository {}, and only {} are allowed", facts.repository, require.repositories.join(", ")));
        }
        if require.digest && !facts.by_digest {
            return denied(
                "is named by tag, and the rule requires a digest: name it as repository@sha256:..., or tag it into an image stream of the namespace so that berth's mutating webhook resolves it"
                    .to_string(),
            );
        }
        if !require.needs_image() {
            return Verdict::Pass;
        }
        let image = match &facts.image {
            Err(why) => {
                return Verdict::CannotDecide(format!("rule {}: berth could not read {}: {why}", self.policy.metadata.name, facts.written));
            }
            Ok(None) => {
                return denied(
                    "is not an image berth knows, and the rule needs one it does: import it (`berth import-image`) or push it to berth's registry, then refer to it through an image stream"
                        .to_string(),
                );
            }
            Ok(Some(image)) => image,
        };
        if let Some(selector) = &require.labels
            && !selector.matches(&image.labels)
        {
            return denied(format!("has labels that do not match {}", describe_selector(selector)));
        }
        if let Some(selector) = &require.annotations
            && !selector.matches(&image.annotations)
        {
            return denied(format!(
                "has annotations in berth that do not match {} (a scanner's approval, for instance): have it scanned, or deploy an approved image",
                describe_selector(selector)
            ));
        }
        if !require.descendant_of.is_empty() && !require.descendant_of.iter().any(|class| facts.classes.contains(class)) {
            return denied(format!(
                "is not built on ImageClass {}: rebuild it FROM that class's base image (`berth get imageclass {}`)",
                require.descendant_of.join(" or "),
                require.descendant_of[0]
            ));
        }
        Verdict::Pass
    }

    fn reason(&self, image: &str, problem: &str) -> String {
        let mut reason = format!("rule {}: {image} {problem}", self.policy.metadata.name);
        if !self.policy.spec.message.is_empty() {
            let _ = write!(reason, " ({})", self.policy.spec.message);
        }
        reason
    }
}

/// The built-in `execution-denied` rule (OpenShift's default): an image marked
/// `images.openshift.io/deny-execution: "true"`, or built on one when marks reach
/// descendants, may not run.
pub fn execution_denied(facts: &ImageFacts) -> Option<String> {
    let image = facts.image.as_ref().ok()?.as_ref()?;
    let marked = image.denied_by.as_ref()?;
    let what = if image.digest.as_ref() == Some(marked) {
        format!("is image {marked}, which is marked {DENY_EXECUTION}=true")
    } else {
        format!("is built on image {marked}, which is marked {DENY_EXECUTION}=true")
    };
    Some(format!(
        "rule execution-denied: {} {what}: it may not run; deploy an image without the mark (`berth adm vulnerable {marked}` lists what is affected)",
        facts.written
    ))
}

/// A selector as `kubectl` writes one: `a=b,c in (d,e),!f`.
pub fn describe_selector(selector: &LabelSelectorSpec) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for r in &selector.match_expressions {
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({})", r.key, r.values.join(",")),
            "NotIn" => format!("{} notin ({})", r.key, r.values.join(",")),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            other => format!("{} {other}", r.key),
        });
    }
    parts.join(",")
}

/// Docker Hub's canonical names for a reference's registry and repository, as policies
/// match them: no registry is `docker.io`, a single name there is `library/<name>`.
pub fn canonical_source(registry: &str, path: &str) -> (String, String) {
    let registry = crate::reference::canonical_registry(registry);
    let repository = crate::reference::canonical_path(&registry, path);
    (registry, repository)
}
