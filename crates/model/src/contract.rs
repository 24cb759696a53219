//! Images as deployment contracts: what an image promises whoever runs it (environment,
//! exposed ports, volumes, labels, user, working directory, entrypoint and cmd, platform),
//! the metadata overrides a stream or one of its tags lays over every image that arrives
//! (kept in berth's own annotation, never in a new image), and the one rule that says
//! whether a change of contract is compatible or breaking. Tag-moved notifications, the
//! contract diff (`berth diff`), and the check of a running Deployment against a tag
//! (`berth generate deployment --check`) all judge through [`diff`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;
use crate::image::Image;
use crate::imagestream::ImageStream;

pub mod deployment;

/// The annotation (on a stream, or on one of its spec tags) holding metadata overrides
/// as JSON ([`Overrides`]). OpenShift clients keep it and ignore it.
pub const OVERRIDES_ANNOTATION: &str = "berth.dev/overrides";

/// Metadata overrides: what a stream or a tag changes of every image it points at. Stored
/// as JSON in [`OVERRIDES_ANNOTATION`]; a tag's overrides lay over its stream's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    /// Environment variables to set (`NAME: value`) or to remove (`NAME: null`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Option<String>>,
    /// Ports to expose or to stop exposing (`8080/tcp`; a bare number is TCP).
    #[serde(default, skip_serializing_if = "SetChanges::is_empty")]
    pub ports: SetChanges,
    /// Volume paths to add or remove.
    #[serde(default, skip_serializing_if = "SetChanges::is_empty")]
    pub volumes: SetChanges,
    /// Labels to set (`key: value`) or to remove (`key: null`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The command's default arguments (the image's `Cmd`, a Kubernetes container's `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// CPU and memory requests and limits, which images do not carry.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// Entries added to and removed from a set (ports, volumes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetChanges {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub add: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub remove: BTreeSet<String>,
}

impl SetChanges {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Kubernetes resource requests and limits (`cpu`, `memory`), as quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

impl Overrides {
    /// Reads and checks the overrides in `annotations` (`field` names them in errors);
    /// none when the annotation is absent.
    pub fn of_annotations(annotations: Option<&BTreeMap<String, String>>, field: &str) -> Result<Overrides, Vec<FieldError>> {
        match annotations.and_then(|a| a.get(OVERRIDES_ANNOTATION)) {
            None => Ok(Overrides::default()),
            Some(text) => Overrides::parse(text, field),
        }
    }

    /// Parses and checks overrides from their JSON text.
    pub fn parse(text: &str, field: &str) -> Result<Overrides, Vec<FieldError>> {
        let overrides: Overrides = serde_json::from_str(text).map_err(|err| {
            vec![FieldError::new(
                field,
                format!("the overrides are not valid: {err}; write JSON such as {{\"env\":{{\"MODE\":\"prod\",\"DEBUG\":null}},\"ports\":{{\"add\":[\"8443/tcp\"]}}}}"),
            )]
        })?;
        let errors = overrides.validate(field);
        if errors.is_empty() { Ok(overrides) } else { Err(errors) }
    }

    /// The overrides' JSON text, as stored in the annotation.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("overrides serialise")
    }

    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    fn validate(&self, field: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.chars().any(char::is_whitespace) {
                errors.push(FieldError::new(format!("{field}.env"), format!("{name:?} is not an environment variable name")));
            }
        }
        for port in self.ports.add.iter().chain(&self.ports.remove) {
            if normalize_port(port).is_none() {
                errors.push(FieldError::new(format!("{field}.ports"), format!("{port:?} is not a port: write NUMBER[/tcp|/udp|/sctp]")));
            }
        }
        for path in self.volumes.add.iter().chain(&self.volumes.remove) {
            if !path.starts_with('/') {
                errors.push(FieldError::new(format!("{field}.volumes"), format!("{path:?} is not an absolute path")));
            }
        }
        for (kind, values) in [("requests", &self.resources.requests), ("limits", &self.resources.limits)] {
            for (name, quantity) in values {
                if name != "cpu" && name != "memory" {
                    errors.push(FieldError::new(
                        format!("{field}.resources.{kind}"),
                        format!("{name:?} is not a resource: use cpu or memory"),
                    ));
                } else if !is_quantity(quantity) {
                    errors.push(FieldError::new(
                        format!("{field}.resources.{kind}.{name}"),
                        format!("{quantity:?} is not a quantity: write e.g. 250m, 0.5 or 512Mi"),
                    ));
                }
            }
        }
        errors
    }

    /// `self` with `over` laid on top: a tag's overrides over its stream's.
    pub fn layered(&self, over: &Overrides) -> Overrides {
        let mut out = self.clone();
        out.env.extend(over.env.clone());
        out.labels.extend(over.labels.clone());
        for (mine, theirs) in [(&mut out.ports, &over.ports), (&mut out.volumes, &over.volumes)] {
            for item in &theirs.add {
                mine.remove.remove(item);
                mine.add.insert(item.clone());
            }
            for item in &theirs.remove {
                mine.add.remove(item);
                mine.remove.insert(item.clone());
            }
        }
        out.user = over.user.clone().or(out.user);
        out.working_dir = over.working_dir.clone().or(out.working_dir);
        out.entrypoint = over.entrypoint.clone().or(out.entrypoint);
        out.cmd = over.cmd.clone().or(out.cmd);
        out.resources.requests.extend(over.resources.requests.clone());
        out.resources.limits.extend(over.resources.limits.clone());
        out
    }

    /// The overrides in force for `tag` of `stream`: the stream's, then the tag's. Invalid
    /// annotations (which validation refuses on write) count as none.
    pub fn of_tag(stream: &ImageStream, tag: &str) -> Overrides {
        let of_stream = Overrides::of_annotations(Some(&stream.metadata.annotations), "metadata.annotations").unwrap_or_default();
        let of_tag =
            stream.spec_tag(tag).and_then(|t| Overrides::of_annotations(t.annotations.as_ref(), "annotations").ok()).unwrap_or_default();
        of_stream.layered(&of_tag)
    }
}

/// Checks the overrides a stream and its spec tags carry, for stream validation.
pub fn validate_overrides(stream: &ImageStream) -> Vec<FieldError> {
    let mut errors =
        Overrides::of_annotations(Some(&stream.metadata.annotations), &format!("metadata.annotations[{OVERRIDES_ANNOTATION}]"))
            .err()
            .unwrap_or_default();
    for (idx, tag) in stream.spec.tags.iter().enumerate() {
        let field = format!("spec.tags[{idx}].annotations[{OVERRIDES_ANNOTATION}]");
        errors.extend(Overrides::of_annotations(tag.annotations.as_ref(), &field).err().unwrap_or_default());
    }
    errors
}

/// `8080`, `8080/TCP` → `8080/tcp`; `None` when it is not a port.
pub fn normalize_port(port: &str) -> Option<String> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let number: u16 = number.parse().ok().filter(|n| *n > 0)?;
    matches!(protocol.as_str(), "tcp" | "udp" | "sctp").then(|| format!("{number}/{protocol}"))
}

fn is_quantity(text: &str) -> bool {
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    !number.is_empty() && number.parse::<f64>().is_ok() && matches!(suffix, "" | "m" | "k" | "M" | "G" | "T" | "Ki" | "Mi" | "Gi" | "Ti")
}

/// What an image promises whoever runs it: its metadata, after overrides, in the terms a
/// deployment uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Exposed ports as `NUMBER/PROTOCOL`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ports: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub volumes: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// `os/architecture[/variant]`, several joined by `,` for a manifest list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

impl Contract {
    /// The contract an image states by itself (`dockerImageMetadata.Config`, its platform).
    pub fn of_image(image: &Image) -> Contract {
        let config = image.docker_image_metadata.as_ref().and_then(|m| m.get("Config")).cloned().unwrap_or(Value::Null);
        let strings = |field: &str| -> Vec<String> {
            match config.get(field) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                Some(Value::String(text)) => vec![text.clone()],
                _ => Vec::new(),
            }
        };
        let keys = |field: &str| -> BTreeSet<String> {
            match config.get(field) {
                Some(Value::Object(map)) => map.keys().cloned().collect(),
                _ => BTreeSet::new(),
            }
        };
        let text = |field: &str| config.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
        Contract {
            env: strings("Env")
                .into_iter()
                .map(|entry| match entry.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (entry, String::new()),
                })
                .collect(),
            ports: keys("ExposedPorts").iter().map(|p| normalize_port(p).unwrap_or_else(|| p.clone())).collect(),
            volumes: keys("Volumes"),
            labels: match config.get("Labels") {
                Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect(),
                _ => BTreeMap::new(),
            },
            user: text("User"),
            working_dir: text("WorkingDir"),
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            platform: crate::manifest::platforms(image).join(","),
            resources: Resources::default(),
        }
    }

    /// This contract with `overrides` applied: the effective contract.
    pub fn with(&self, overrides: &Overrides) -> Contract {
        let mut out = self.clone();
        for (name, value) in &overrides.env {
            match value {
                Some(value) => out.env.insert(name.clone(), value.clone()),
                None => out.env.remove(name),
            };
        }
        for (name, value) in &overrides.labels {
            match value {
                Some(value) => out.labels.insert(name.clone(), value.clone()),
                None => out.labels.remove(name),
            };
        }
        for port in &overrides.ports.remove {
            out.ports.remove(&normalize_port(port).unwrap_or_else(|| port.clone()));
        }
        out.ports.extend(overrides.ports.add.iter().map(|p| normalize_port(p).unwrap_or_else(|| p.clone())));
        for volume in &overrides.volumes.remove {
            out.volumes.remove(volume);
        }
        out.volumes.extend(overrides.volumes.add.iter().cloned());
        if let Some(user) = &overrides.user {
            out.user = user.clone();
        }
        if let Some(dir) = &overrides.working_dir {
            out.working_dir = dir.clone();
        }
        if let Some(entrypoint) = &overrides.entrypoint {
            out.entrypoint = entrypoint.clone();
        }
        if let Some(cmd) = &overrides.cmd {
            out.cmd = cmd.clone();
        }
        out.resources = overrides.resources.clone();
        out
    }
}

/// A tag's contract three ways, as `imagestreamtags` carry it in the berth-owned field
/// `contract`: what the image says, what the stream and tag override, and the result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagContract {
    pub image: Contract,
    #[serde(default, skip_serializing_if = "Overrides::is_empty")]
    pub overrides: Overrides,
    pub effective: Contract,
}

impl TagContract {
    pub fn of(image: &Image, overrides: Overrides) -> TagContract {
        let defaults = Contract::of_image(image);
        let effective = defaults.with(&overrides);
        TagContract { image: defaults, overrides, effective }
    }
}

/// Whether a change keeps whoever runs the image working.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    #[default]
    Compatible,
    Breaking,
}

/// How an entry changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One change of contract, judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractChange {
    /// `env`, `ports`, `volumes`, `labels`, `user`, `workingDir`, `entrypoint`, `cmd`,
    /// `platform`, `resources`.
    pub field: String,
    /// The entry of a set or map field (a variable, a port, a path, a label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
}

/// Every change between two contracts, and the verdict over all of them (breaking when
/// any one is).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractChanges {
    pub verdict: Verdict,
    #[serde(default)]
    pub changes: Vec<ContractChange>,
}

impl ContractChanges {
    pub fn is_breaking(&self) -> bool {
        self.verdict == Verdict::Breaking
    }
}

/// The one rule: what changed from `from` to `to`, each change judged. Added ports, volumes
/// and variables, label changes, new default arguments and new resources are compatible; a
/// removed port, volume or variable, a variable whose meaning changed (a value that is not
/// a version moving on or a `:` list growing), and a changed user, entrypoint, working
/// directory or platform break whoever runs or builds on the image.
pub fn diff(from: &Contract, to: &Contract) -> ContractChanges {
    let mut changes = Vec::new();
    let mut push =
        |field: &str, key: &str, change: ChangeKind, from: Option<String>, to: Option<String>, verdict: Verdict, reason: String| {
            changes.push(ContractChange { field: field.to_string(), key: key.to_string(), change, from, to, verdict, reason })
        };
    use ChangeKind::{Added, Changed, Removed};
    use Verdict::{Breaking, Compatible};
    for (name, value) in &to.env {
        match from.env.get(name) {
            None => {
                push("env", name, Added, None, Some(value.clone()), Compatible, format!("a new variable {name}; nothing read it before"))
            }
            Some(old) if old != value => {
                let (verdict, reason) = judge_env_value(name, old, value);
                push("env", name, Changed, Some(old.clone()), Some(value.clone()), verdict, reason)
            }
            Some(_) => {}
        }
    }
    for (name, value) in &from.env {
        if !to.env.contains_key(name) {
            push("env", name, Removed, Some(value.clone()), None, Breaking, format!("{name} is gone: whatever read it gets nothing now"));
        }
    }
    for port in to.ports.difference(&from.ports) {
        push(
            "ports",
            port,
            Added,
            None,
            Some(port.clone()),
            Compatible,
            format!("{port} is exposed too; clients of the other ports are unaffected"),
        );
    }
    for port in from.ports.difference(&to.ports) {
        push(
            "ports",
            port,
            Removed,
            Some(port.clone()),
            None,
            Breaking,
            format!("{port} is no longer exposed: services and probes on it stop answering"),
        );
    }
    let added_volumes: Vec<&String> = to.volumes.difference(&from.volumes).collect();
    for volume in from.volumes.difference(&to.volumes) {
        let reason = match added_volumes.as_slice() {
            [moved] => format!("the volume moved from {volume} to {moved}: data mounted at {volume} is no longer where the image keeps it"),
            _ => format!("{volume} is no longer a volume: data mounted there is no longer where the image keeps it"),
        };
        push("volumes", volume, Removed, Some(volume.clone()), None, Breaking, reason);
    }
    for volume in added_volumes {
        push(
            "volumes",
            volume,
            Added,
            None,
            Some(volume.clone()),
            Compatible,
            format!("{volume} is a new volume; a pod that does not mount it gets an anonymous one"),
        );
    }
    for (key, value) in &to.labels {
        match from.labels.get(key) {
            None => push(
                "labels",
                key,
                Added,
                None,
                Some(value.clone()),
                Compatible,
                "labels describe the image; running it does not depend on them".into(),
            ),
            Some(old) if old != value => push(
                "labels",
                key,
                Changed,
                Some(old.clone()),
                Some(value.clone()),
                Compatible,
                "labels describe the image; running it does not depend on them".into(),
            ),
            Some(_) => {}
        }
    }
    for (key, value) in &from.labels {
        if !to.labels.contains_key(key) {
            push(
                "labels",
                key,
                Removed,
                Some(value.clone()),
                None,
                Compatible,
                "labels describe the image; running it does not depend on them".into(),
            );
        }
    }
    let scalars: [(&str, String, String, Verdict, &str); 5] = [
        (
            "user",
            from.user.clone(),
            to.user.clone(),
            Breaking,
            "the process runs as another user: files and permissions it relied on may no longer fit",
        ),
        (
            "workingDir",
            from.working_dir.clone(),
            to.working_dir.clone(),
            Breaking,
            "relative paths in commands and configuration now resolve elsewhere",
        ),
        (
            "entrypoint",
            join(&from.entrypoint),
            join(&to.entrypoint),
            Breaking,
            "another program starts: a pod that sets its own args passes them to it",
        ),
        ("cmd", join(&from.cmd), join(&to.cmd), Compatible, "the default arguments changed; a pod that sets its own args is unaffected"),
        (
            "platform",
            from.platform.clone(),
            to.platform.clone(),
            Breaking,
            "the image runs on other platforms: nodes of the old one may not run it",
        ),
    ];
    for (field, old, new, verdict, reason) in scalars {
        if old != new {
            let change = match (old.is_empty(), new.is_empty()) {
                (true, _) => Added,
                (_, true) => Removed,
                _ => Changed,
            };
            let some = |s: String| (!s.is_empty()).then_some(s);
            push(field, "", change, some(old), some(new), verdict, reason.to_string());
        }
    }
    for (kind, old, new) in
        [("requests", &from.resources.requests, &to.resources.requests), ("limits", &from.resources.limits, &to.resources.limits)]
    {
        let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            let (a, b) = (old.get(name).cloned(), new.get(name).cloned());
            if a != b {
                let change = match (&a, &b) {
                    (None, _) => Added,
                    (_, None) => Removed,
                    _ => Changed,
                };
                push(
                    "resources",
                    &format!("{kind}.{name}"),
                    change,
                    a,
                    b,
                    Compatible,
                    "resources change where and how the pod is scheduled, not what it runs".into(),
                );
            }
        }
    }
    let verdict = changes.iter().map(|c| c.verdict).max().unwrap_or(Compatible);
    ContractChanges { verdict, changes }
}

/// `berth.dev/v1` ContractDiff (`GET .../imagestreamtags/{stream:tag}/contractdiff`):
/// what changed in a tag's effective contract between two of its images, judged. Both
/// images are seen through the tag's overrides as they are now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractDiff {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: crate::ObjectMeta,
    pub from: DiffSide,
    pub to: DiffSide,
    pub verdict: Verdict,
    #[serde(default)]
    pub changes: Vec<ContractChange>,
}

/// One side of a contract diff: an image, and its revision when it is in the tag's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffSide {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<usize>,
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_reference: String,
}

/// Finds a diff side in `tag`'s history or, for a digest, anywhere in the stream: `text` is
/// a revision number (1 is the oldest), or an image's digest or a unique prefix of one.
pub fn pick_image(stream: &ImageStream, tag: &str, text: &str) -> Result<DiffSide, String> {
    let name = format!("{}:{tag}", stream.metadata.name);
    let items = stream.status_tag(tag).map(|s| s.items.as_slice()).unwrap_or_default();
    let len = items.len();
    if let Ok(revision) = text.parse::<usize>() {
        if revision == 0 || revision > len {
            return Err(format!("{name} has revisions 1 to {len}: `berth describe imagestream {}` lists them", stream.metadata.name));
        }
        let event = &items[len - revision];
        return Ok(DiffSide {
            revision: Some(revision),
            image: event.image.clone(),
            docker_image_reference: event.docker_image_reference.clone(),
        });
    }
    if let Some(index) = items.iter().position(|e| !e.image.is_empty() && e.image == text) {
        let event = &items[index];
        return Ok(DiffSide {
            revision: Some(len - index),
            image: event.image.clone(),
            docker_image_reference: event.docker_image_reference.clone(),
        });
    }
    match stream.find_image(text) {
        Ok(event) => {
            let revision = items.iter().position(|e| e.image == event.image).map(|index| len - index);
            Ok(DiffSide { revision, image: event.image.clone(), docker_image_reference: event.docker_image_reference.clone() })
        }
        Err(crate::imagestream::FindImageError::NotFound) => {
            Err(format!("{text:?} is neither a revision of {name} nor an image of image stream {}", stream.metadata.name))
        }
        Err(crate::imagestream::FindImageError::Ambiguous) => Err(format!("{text:?} matches more than one image: give more of the digest")),
    }
}

/// The sides a diff compares when the caller names fewer than two: `to` defaults to the
/// tag's current image, `from` to the revision before `to`.
pub fn pick_sides(stream: &ImageStream, tag: &str, from: Option<&str>, to: Option<&str>) -> Result<(DiffSide, DiffSide), String> {
    let name = format!("{}:{tag}", stream.metadata.name);
    let len = stream.status_tag(tag).map_or(0, |s| s.items.len());
    if len == 0 {
        return Err(format!("{name} has no image yet: there is no contract to compare"));
    }
    let to = pick_image(stream, tag, to.unwrap_or(&len.to_string()))?;
    let from = match from {
        Some(from) => pick_image(stream, tag, from)?,
        None => match to.revision {
            Some(revision) if revision > 1 => pick_image(stream, tag, &(revision - 1).to_string())?,
            _ => {
                return Err(format!(
                    "{name} has no image before revision {}: name the revision or image to compare with",
                    to.revision.unwrap_or(len)
                ));
            }
        },
    };
    Ok((from, to))
}

fn join(words: &[String]) -> String {
    if words.is_empty() { String::new() } else { serde_json::to_string(words).expect("strings serialise") }
}

/// A variable's value changed: compatible when a version moved on (`1.2` → `1.3`) or a
/// `:` list (a `PATH`) only grew; otherwise its meaning may have changed.
fn judge_env_value(name: &str, old: &str, new: &str) -> (Verdict, String) {
    let looks_like_version = |v: &str| {
        let v = v.strip_prefix('v').unwrap_or(v);
        v.starts_with(|c: char| c.is_ascii_digit())
            && v.split(['.', '-', '+']).next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    };
    if looks_like_version(old) && looks_like_version(new) {
        return (Verdict::Compatible, format!("{name} names a version, which moved on"));
    }
    if old.contains(':') || new.contains(':') {
        let new_entries: BTreeSet<&str> = new.split(':').collect();
        if old.split(':').all(|entry| new_entries.contains(entry)) {
            return (Verdict::Compatible, format!("{name} keeps every entry it had and gained some"));
        }
    }
    (Verdict::Breaking, format!("{name} means something else now: whatever read the old value reads another"))
}

#[cfg(test)]
mod tests;
