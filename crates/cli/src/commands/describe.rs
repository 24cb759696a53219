//! `berth describe imagestream NAME`, `berth describe imagestreamtag STREAM:TAG`,
//! `berth describe subscription NAME`, `berth describe quota NAME` and
//! `berth describe limits NAME`: the human-readable detail `oc describe` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use berth_model::ObjectMeta;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamTag, TagEventCondition, TagReference};
use berth_model::notify::Subscription;
use berth_model::quota::{IMAGE_STORAGE, LimitRange, ResourceQuota};
use serde_json::Value;

use crate::client::{ApiError, Client};
use crate::commands::Context;
use crate::kinds;
use crate::output::{self, ImportState, ImportStateText, ago, array, source_text, text};

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// imagestream (is), imagestreamtag (istag), subscription (sub), resourcequota (quota),
    /// limitrange (limits) or namespace (ns).
    kind: String,
    /// The object's name, STREAM:TAG for a tag.
    name: String,
}

pub fn run(ctx: &Context, args: DescribeArgs) -> anyhow::Result<()> {
    let kind = kinds::lookup(&args.kind)?;
    if kind.kind == kinds::NAMESPACE.kind {
        print!("{}", describe_namespace(&ctx.client()?, &args.name)?);
        return Ok(());
    }
    let described = [
        kinds::IMAGE_STREAM.kind,
        kinds::IMAGE_STREAM_TAG.kind,
        kinds::SUBSCRIPTION.kind,
        kinds::RESOURCE_QUOTA.kind,
        kinds::LIMIT_RANGE.kind,
    ];
    if !described.contains(&kind.kind) {
        bail!(
            "describe shows imagestreams (is), imagestreamtags (istag), subscriptions (sub), resourcequotas (quota), limitranges (limits) and namespaces (ns); for {} use `berth get {} -o yaml`",
            kind.plural,
            kind.plural
        );
    }
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    let object = client.get(&kind.object(&namespace, &args.name), &[])?;
    let described = if kind.kind == kinds::IMAGE_STREAM.kind {
        let stream: ImageStream = serde_json::from_value(object).context("the server sent an image stream berth cannot read")?;
        let schedule = if stream.spec.tags.iter().any(|t| t.import_policy.scheduled) { read_schedule(&client, &namespace) } else { None };
        describe_stream(&stream, &current_images(&client, &stream), schedule.as_deref())
    } else if kind.kind == kinds::IMAGE_STREAM_TAG.kind {
        let istag: ImageStreamTag = serde_json::from_value(object).context("the server sent an image stream tag berth cannot read")?;
        let scheduled = istag.tag.as_ref().is_some_and(|t| t.import_policy.scheduled);
        let schedule = if scheduled { read_schedule(&client, &namespace) } else { None };
        describe_stream_tag(&istag, schedule.as_deref())
    } else if kind.kind == kinds::RESOURCE_QUOTA.kind {
        describe_quota(&serde_json::from_value(object).context("the server sent a resource quota berth cannot read")?)
    } else if kind.kind == kinds::LIMIT_RANGE.kind {
        describe_limit_range(&serde_json::from_value(object).context("the server sent a limit range berth cannot read")?)
    } else {
        describe_subscription(&serde_json::from_value(object).context("the server sent a subscription berth cannot read")?)
    };
    print!("{described}");
    Ok(())
}

/// A namespace: its metadata, and what its image streams hold (counted on distinct layers,
/// as quotas count them).
fn describe_namespace(client: &Client, name: &str) -> anyhow::Result<String> {
    let namespace = client.get(&kinds::NAMESPACE.object("", name), &[])?;
    let meta: ObjectMeta =
        serde_json::from_value(namespace["metadata"].clone()).context("the server sent a namespace berth cannot read")?;
    let mut out = Fields::default();
    out.field("Name", &meta.name);
    out.field("Created", &when(meta.creation_timestamp.map(|t| t.to_string()).as_deref().unwrap_or_default()));
    out.map("Labels", &meta.labels);
    out.map("Annotations", &meta.annotations);
    out.field("Status", text(&namespace, "/status/phase"));
    let figures = client.get("/apis/berth.dev/v1/top/namespaces", &[("namespace", name.to_string())])?;
    let row = figures["items"].as_array().and_then(|items| items.first()).cloned().unwrap_or_default();
    let count = |field: &str| row[field].as_u64().unwrap_or(0);
    out.field("Image Streams", &count("imagestreams").to_string());
    out.field("Images", &count("images").to_string());
    out.field("Layers", &count("layers").to_string());
    out.field("Storage", &format!("{} (distinct layers)", berth_model::quantity::format_bytes(count("storage"))));
    // The quotas on it, as `used/hard` per resource (a reader of the namespace may read them).
    if let Ok(quotas) = client.get(&kinds::RESOURCE_QUOTA.collection(Some(name)), &[]) {
        for quota in array(&quotas, "/items") {
            let hard = quota["status"]["hard"].as_object().cloned().unwrap_or_default();
            let lines: Vec<String> = hard
                .iter()
                .map(|(key, limit)| {
                    format!("{key}: {}/{}", quota["status"]["used"][key].as_str().unwrap_or("-"), limit.as_str().unwrap_or(""))
                })
                .collect();
            out.field(&format!("Quota {}", text(quota, "/metadata/name")), &lines.join("\n"));
        }
    }
    Ok(out.0)
}

/// The scheduled imports of a namespace, read once for all its tags. `None` when they
/// cannot be read: a caller may read streams and yet not the schedule (403), and a
/// server without scheduled import has no such list (404); either way the tags are
/// described without it, and only other failures are worth a warning.
fn read_schedule(client: &Client, namespace: &str) -> Option<Vec<Value>> {
    match client.get(&kinds::SCHEDULED_IMPORT.collection(Some(namespace)), &[]) {
        Ok(list) => Some(array(&list, "/items").to_vec()),
        Err(err) if err.downcast_ref::<ApiError>().is_some_and(|e| e.code == 403 || e.code == 404) => None,
        Err(err) => {
            eprintln!("warning: the scheduled imports of namespace {namespace} cannot be read: {err:#}");
            None
        }
    }
}

/// What the `Scheduled:` line says of a tag with `importPolicy.scheduled`:
/// `every 15m, last checked 2m ago (Unchanged), next in 13m` from the server's schedule
/// (`None` when it could not be read).
fn scheduled_text(schedule: Option<&[Value]>, stream: &str, tag: &str) -> String {
    let Some(schedule) = schedule else {
        return "true".to_string();
    };
    let Some(entry) = schedule.iter().find(|e| text(e, "/stream") == stream && text(e, "/tag") == tag) else {
        return "true, but the server is not checking it: scheduled import is off there, or the tag is pinned to a digest it \
                already has"
            .to_string();
    };
    let mut parts = vec![format!("every {}", output::interval(entry.get("intervalSeconds").and_then(Value::as_u64).unwrap_or(0)))];
    let last_check = text(entry, "/lastCheck");
    let result = text(entry, "/lastResult");
    parts.push(match (last_check.is_empty(), result.is_empty()) {
        (true, _) => "not checked yet".to_string(),
        (false, true) => format!("last checked {}", ago(last_check)),
        (false, false) => format!("last checked {} ({result})", ago(last_check)),
    });
    match output::until(text(entry, "/nextCheck")).as_str() {
        "" => {}
        "due" => parts.push("next check due now".to_string()),
        next => parts.push(format!("next {next}")),
    }
    parts.join(", ")
}

/// `Label:` and value lines, values aligned; a value of several lines continues under
/// the first.
#[derive(Default)]
struct Fields(String);

impl Fields {
    const WIDTH: usize = 20;

    fn field(&mut self, label: &str, value: &str) {
        let label = format!("{label}:");
        let mut lines = value.lines();
        let _ = writeln!(self.0, "{label:<width$}{}", lines.next().unwrap_or_default(), width = Self::WIDTH);
        for line in lines {
            let _ = writeln!(self.0, "{:width$}{line}", "", width = Self::WIDTH);
        }
    }

    /// `key=value` per line, or `<none>`.
    fn map(&mut self, label: &str, map: &BTreeMap<String, String>) {
        let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let value = if lines.is_empty() { "<none>".to_string() } else { lines.join("\n") };
        self.field(label, &value);
    }

    fn line(&mut self, line: &str) {
        let _ = writeln!(self.0, "{line}");
    }

    /// Name, namespace, creation time, labels and annotations.
    fn metadata(&mut self, meta: &ObjectMeta) {
        self.field("Name", &meta.name);
        self.field("Namespace", &meta.namespace);
        self.field("Created", &when(meta.creation_timestamp.map(|t| t.to_string()).as_deref().unwrap_or_default()));
        self.map("Labels", &meta.labels);
        self.map("Annotations", &meta.annotations);
    }
}

/// The image each tag points at now, by digest, read through the stream (one request
/// per distinct image). An image that cannot be read is left out: its tag is still
/// described, without the image's facts.
fn current_images(client: &Client, stream: &ImageStream) -> BTreeMap<String, Image> {
    let mut images = BTreeMap::new();
    let digests: BTreeSet<&str> =
        stream.status.tags.iter().filter_map(|t| t.items.first()).map(|e| e.image.as_str()).filter(|d| !d.is_empty()).collect();
    for digest in digests {
        let path = kinds::IMAGE_STREAM_IMAGE.object(&stream.metadata.namespace, &format!("{}@{digest}", stream.metadata.name));
        let image = client.get(&path, &[]).ok().and_then(|isimage| output::parse_image(isimage.get("image")));
        if let Some(image) = image {
            images.insert(digest.to_string(), image);
        }
    }
    images
}

/// `5m ago (2026-01-02T03:04:05Z)`: humanised, and exact for scripts and audits.
fn when(at: &str) -> String {
    if at.is_empty() { "<unknown>".to_string() } else { format!("{} ({at})", ago(at)) }
}

/// `images` holds the current image of each tag, by digest, for its size, layers and
/// platforms.
/// `schedule` holds the namespace's scheduled imports, when they could be read.
fn describe_stream(stream: &ImageStream, images: &BTreeMap<String, Image>, schedule: Option<&[Value]>) -> String {
    let mut out = Fields::default();
    out.metadata(&stream.metadata);
    out.field("Image Repository", &stream.status.docker_image_repository);
    if !stream.status.public_docker_image_repository.is_empty() {
        out.field("Public Repository", &stream.status.public_docker_image_repository);
    }
    out.field("Image Lookup", &format!("local={}", stream.spec.lookup_policy.local));
    out.field("Unique Images", &stream.referenced_images().len().to_string());
    let tags = stream.tag_names();
    out.field("Tags", &tags.len().to_string());
    for tag in tags {
        out.line("");
        describe_tag(&mut out, stream, tag, images, schedule);
    }
    out.0
}

/// One tag: where it comes from and how its import stands, then its history newest
/// first (the current image starred, with its facts), then its other conditions.
fn describe_tag(out: &mut Fields, stream: &ImageStream, tag: &str, images: &BTreeMap<String, Image>, schedule: Option<&[Value]>) {
    out.line(tag);
    let spec = stream.spec_tag(tag);
    match spec {
        None => out.line("  pushed image"),
        Some(spec) => {
            if let Some(source) = tag_source(spec, &stream.metadata.namespace) {
                out.line(&format!("  tagged from {source}"));
            }
            if spec.import_policy.scheduled {
                out.line(&format!("  Scheduled: {}", scheduled_text(schedule, &stream.metadata.name, tag)));
            }
        }
    }
    let (items, conditions) = stream.status_tag(tag).map(|h| (h.items.as_slice(), h.conditions.as_slice())).unwrap_or_default();
    let import = berth_model::tags::import_state(spec, items.first().map(|e| e.generation), conditions);
    match &import {
        ImportState::Pending => out.line("  importing..."),
        ImportState::Failed { .. } | ImportState::Paused { .. } => out.line(&format!("  ! import {}", import.describe())),
        ImportState::NotImported | ImportState::Imported => {}
    }
    if !items.is_empty() {
        out.line("");
    }
    for (index, event) in items.iter().enumerate() {
        let marker = if index == 0 { "  * " } else { "    " };
        // Revisions count from the tag's first image: `berth rollback --to-revision` and
        // `berth diff` take them.
        let revision = berth_model::tags::rollback::revision_of(items.len(), index);
        out.line(&format!("{marker}{}  (revision {revision})", event.docker_image_reference));
        match event.cause.as_str() {
            "" => out.line(&format!("      {}", when(&event.created.to_string()))),
            cause => out.line(&format!("      {}, {cause}", when(&event.created.to_string()))),
        }
        if !event.image.is_empty() {
            out.line(&format!("      {}", event.image));
        }
        if let Some(image) = images.get(&event.image).filter(|_| index == 0) {
            out.line(&format!("      {}", output::image_facts(image)));
        }
    }
    describe_conditions(out, conditions, &import);
}

/// The conditions other than the one `import` already reported.
fn describe_conditions(out: &mut Fields, conditions: &[TagEventCondition], import: &ImportState) {
    let shown: Vec<&TagEventCondition> = conditions.iter().filter(|c| !import.reports(c)).collect();
    if !shown.is_empty() {
        out.line("");
    }
    for condition in shown {
        out.line(&format!("  ! {}: {}", condition.reason, condition.message));
    }
}

fn tag_source(spec: &TagReference, own_namespace: &str) -> Option<String> {
    spec.from.as_ref().map(|from| source_text(&from.kind, &from.namespace, &from.name, own_namespace))
}

/// `schedule` holds the namespace's scheduled imports, when they could be read.
fn describe_stream_tag(istag: &ImageStreamTag, schedule: Option<&[Value]>) -> String {
    let mut out = Fields::default();
    out.metadata(&istag.metadata);
    match istag.tag.as_ref() {
        None => out.field("Tagged From", "pushed image"),
        Some(spec) => out.field("Tagged From", &tag_source(spec, &istag.metadata.namespace).unwrap_or_else(|| "<none>".to_string())),
    }
    if let Some(spec) = istag.tag.as_ref().filter(|t| t.import_policy.scheduled) {
        let stream = istag.metadata.name.split_once(':').map_or(istag.metadata.name.as_str(), |(stream, _)| stream);
        out.field("Scheduled", &scheduled_text(schedule, stream, &spec.name));
    }
    let import = berth_model::tags::import_state(istag.tag.as_ref(), istag.image.as_ref().map(|_| istag.generation), &istag.conditions);
    if import != ImportState::NotImported {
        out.field("Import", &import.describe());
    }
    match &istag.image {
        Some(image) => describe_image(&mut out, image),
        None => out.field("Image Name", "<none>: the tag has no image yet"),
    }
    if let Some(contract) = &istag.contract {
        out.line("Contract:");
        for line in crate::output::render_rows(&crate::commands::contract::contract_rows(contract)) {
            out.line(&format!("  {line}"));
        }
    }
    describe_conditions(&mut out, &istag.conditions, &import);
    out.0
}

/// A subscription: where it delivers, which changes (every filter, `all` when it does
/// not narrow), how bodies are signed, and how delivery stands.
fn describe_subscription(subscription: &Subscription) -> String {
    let (spec, status) = (&subscription.spec, &subscription.status);
    let mut out = Fields::default();
    out.metadata(&subscription.metadata);
    out.field("URL", &spec.url);
    let events: Vec<String> =
        spec.events.iter().map(|e| serde_json::to_value(e).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()).collect();
    out.field("Events", &all_or_list(&events));
    out.field("Streams", &all_or_list(&spec.streams));
    out.field("Tags", &all_or_list(&spec.tags));
    out.map("Stream Selector", &spec.stream_selector);
    if spec.breaking_only {
        out.field("Breaking Only", "true (only tag moves whose contract change breaks)");
    }
    match &spec.secret_ref {
        Some(secret) => {
            out.field("Secret Ref", &format!("key {} of Secret {} (signs each body: X-Berth-Signature)", secret.key, secret.name))
        }
        None => out.field("Secret Ref", "<none> (bodies are not signed)"),
    }
    out.field("Delivered", &status.delivered.to_string());
    out.field("Backlog", &status.backlog.to_string());
    out.field("Cursor", or_none(&status.cursor));
    match &status.last_delivered_time {
        Some(at) => out.field("Last Delivered", &when(&at.to_string())),
        None => out.field("Last Delivered", "<never>"),
    }
    out.field("Last Delivered ID", or_none(&status.last_delivered_id));
    // The server clears the error once a delivery succeeds, and keeps its time.
    out.field("Last Error", or_none(&status.last_error));
    if !status.last_error.is_empty() {
        out.field("Last Error Time", &when(&status.last_error_time.map(|t| t.to_string()).unwrap_or_default()));
    }
    out.0
}

/// A ResourceQuota as `kubectl describe quota` shows it: a row per resource of `hard`
/// with what is used, bytes of image storage also in binary units, and whether berth
/// enforces it.
fn describe_quota(quota: &ResourceQuota) -> String {
    let mut out = Fields::default();
    out.metadata(&quota.metadata);
    if !quota.spec.scopes.is_empty() || quota.spec.scope_selector.is_some() {
        out.field("Scopes", "kept as written; berth's quotas apply to the whole namespace");
    }
    let mut rows = vec![["Resource", "Used", "Hard", "Enforced"].map(str::to_string).to_vec()];
    for (resource, hard) in &quota.spec.hard {
        let used = quota.status.used.get(resource).map(String::as_str).unwrap_or("-");
        let (used, hard) = if resource == IMAGE_STORAGE { (in_bytes(used), in_bytes(hard)) } else { (used.to_string(), hard.clone()) };
        let enforced = if quota.unenforced().any(|k| k == resource.as_str()) { "no: berth keeps it only" } else { "yes" };
        rows.push(vec![resource.clone(), used, hard, enforced.to_string()]);
    }
    table_lines(&mut out, &rows);
    out.0
}

/// A LimitRange as `kubectl describe limits` shows it: a row per type and resource.
fn describe_limit_range(range: &LimitRange) -> String {
    let mut out = Fields::default();
    out.metadata(&range.metadata);
    let mut rows = vec![
        ["Type", "Resource", "Min", "Max", "Default Request", "Default Limit", "Max Limit/Request Ratio", "Enforced"]
            .map(str::to_string)
            .to_vec(),
    ];
    for item in &range.spec.limits {
        let resources: BTreeSet<&String> = [&item.max, &item.min, &item.default, &item.default_request, &item.max_limit_request_ratio]
            .into_iter()
            .flat_map(|map| map.keys())
            .collect();
        for resource in resources {
            let cell = |map: &BTreeMap<String, String>| map.get(resource).cloned().unwrap_or_else(|| "-".to_string());
            let enforced = if item.enforces(resource) { "max" } else { "no: berth keeps it only" };
            rows.push(vec![
                item.limit_type.clone(),
                resource.clone(),
                cell(&item.min),
                cell(&item.max),
                cell(&item.default_request),
                cell(&item.default),
                cell(&item.max_limit_request_ratio),
                enforced.to_string(),
            ]);
        }
    }
    table_lines(&mut out, &rows);
    out.0
}

/// A quantity of bytes with its binary-unit reading: `1288490189 (1.2Gi)`; as written
/// when it is not a quantity or reads the same.
fn in_bytes(quantity: &str) -> String {
    match berth_model::quantity::parse_quantity(quantity).map(berth_model::quantity::format_bytes) {
        Ok(shown) if shown != quantity => format!("{quantity} ({shown})"),
        _ => quantity.to_string(),
    }
}

/// `rows` (the first the header) as an aligned table under the fields, with kubectl's
/// dashes under the header.
fn table_lines(out: &mut Fields, rows: &[Vec<String>]) {
    let mut rows = rows.to_vec();
    let dashes = rows[0].iter().map(|h| "-".repeat(h.len())).collect();
    rows.insert(1, dashes);
    for line in output::render_rows(&rows) {
        out.line(&line);
    }
}

/// A filter's values, `all` when empty (an empty filter lets everything through).
fn all_or_list(values: &[String]) -> String {
    if values.is_empty() { "all".to_string() } else { values.join(", ") }
}

fn or_none(value: &str) -> &str {
    if value.is_empty() { "<none>" } else { value }
}

fn describe_image(out: &mut Fields, image: &Image) {
    let metadata = image.docker_image_metadata.as_ref().unwrap_or(&Value::Null);
    out.field("Image Name", &image.metadata.name);
    out.field("Docker Image", &image.docker_image_reference);
    let platforms = berth_model::manifest::platforms(image);
    if image.docker_image_manifests.is_empty() {
        out.field("Image Size", &output::image_size(image));
        out.field("Layers", &output::image_layers(image));
        if !platforms.is_empty() {
            out.field("Platform", &platforms.join(", "));
        }
    } else {
        // A manifest list: its images each have their own size and layers.
        out.field("Manifests", &image.docker_image_manifests.len().to_string());
        out.field("Platforms", &if platforms.is_empty() { "<unknown>".to_string() } else { platforms.join("\n") });
    }
    // When the image was built, as its config says; else when berth first stored it.
    let created = Some(text(metadata, "/Created").to_string())
        .filter(|c| !c.is_empty())
        .or_else(|| image.metadata.creation_timestamp.map(|t| t.to_string()))
        .unwrap_or_default();
    out.field("Image Created", &when(&created));
    let labels: Option<BTreeMap<String, String>> =
        metadata.pointer("/Config/Labels").filter(|l| l.is_object()).and_then(|labels| serde_json::from_value(labels.clone()).ok());
    if let Some(labels) = labels {
        out.map("Docker Labels", &labels);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_stream_shows_each_tag_with_history_newest_first() {
        let stream: ImageStream = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "team", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tags": [{"name": "db", "from": {"kind": "DockerImage", "name": "mysql:5.6"}, "generation": 1}]},
            "status": {"dockerImageRepository": "berth:7440/team/app", "tags": [
                {"tag": "latest", "items": [
                    {"created": "2026-01-02T00:00:00Z", "dockerImageReference": "r/app@sha256:b", "image": "sha256:b", "generation": 1, "cause": "push by token ci"},
                    {"created": "2026-01-01T00:00:00Z", "dockerImageReference": "r/app@sha256:a", "image": "sha256:a", "generation": 1}]},
                {"tag": "db", "items": [], "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "NotImported", "message": "not imported yet", "generation": 1}]}]}
        }))
        .unwrap();
        let image: Image = serde_json::from_value(json!({"metadata": {"name": "sha256:b"},
            "dockerImageLayers": [{"name": "sha256:1", "size": 1}], "dockerImageMetadata": {"Os": "linux", "Architecture": "amd64", "Size": 1500}}))
        .unwrap();
        let text = describe_stream(&stream, &BTreeMap::from([("sha256:b".to_string(), image)]), None);
        assert!(text.contains("Image Repository:   berth:7440/team/app\n"), "{text}");
        assert!(text.contains("Unique Images:      2\nTags:               2\n"), "{text}");
        assert!(text.contains("\ndb\n  tagged from DockerImage mysql:5.6\n  ! import failed (NotImported): not imported yet\n"), "{text}");
        assert!(text.contains("      sha256:b\n      1 layer, 1.5kB, linux/amd64\n"), "{text}");
        let newest = text.find("  * r/app@sha256:b").unwrap();
        let older = text.find("    r/app@sha256:a").unwrap();
        assert!(newest < older, "{text}");
        assert!(text.contains("(2026-01-02T00:00:00Z), push by token ci\n      sha256:b\n"), "{text}");
        assert!(text.contains("(2026-01-01T00:00:00Z)\n      sha256:a\n"), "{text}");
        assert!(text.contains("\nlatest\n  pushed image\n"), "{text}");
    }

    fn stream_tag(value: serde_json::Value) -> ImageStreamTag {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_stream_tag_shows_its_import_and_its_images_platforms() {
        let importing = stream_tag(json!({
            "metadata": {"name": "app:1", "namespace": "team"},
            "tag": {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2},
            "generation": 0,
            "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "NotFound", "message": "old", "generation": 1}],
        }));
        let text = describe_stream_tag(&importing, None);
        assert!(text.contains("Tagged From:        DockerImage quay.io/team/app:1\nImport:             importing\n"), "{text}");
        assert!(!text.contains("old"), "a superseded failure is not shown: {text}");

        let failed = stream_tag(json!({
            "metadata": {"name": "app:1", "namespace": "team"},
            "tag": {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2},
            "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "Unauthorized", "message": "authentication required", "generation": 2}],
        }));
        let text = describe_stream_tag(&failed, None);
        assert!(text.contains("Import:             failed (Unauthorized): authentication required\n"), "{text}");
        assert_eq!(text.matches("authentication required").count(), 1, "{text}");

        let list = stream_tag(json!({
            "metadata": {"name": "app:1", "namespace": "team"},
            "tag": {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2},
            "generation": 2,
            "image": {"metadata": {"name": "sha256:list"}, "dockerImageReference": "quay.io/team/app@sha256:list",
                "dockerImageManifests": [
                    {"digest": "sha256:a", "os": "linux", "architecture": "amd64"},
                    {"digest": "sha256:b", "os": "linux", "architecture": "arm64", "variant": "v8"}]},
        }));
        let text = describe_stream_tag(&list, None);
        assert!(text.contains("Import:             imported\n"), "{text}");
        assert!(text.contains("Manifests:          2\nPlatforms:          linux/amd64\n                    linux/arm64/v8\n"), "{text}");
        assert!(!text.contains("Layers:"), "{text}");
    }

    #[test]
    fn a_paused_tag_says_who_paused_it_and_how_to_resume() {
        let paused = stream_tag(json!({
            "metadata": {"name": "app:1", "namespace": "team"},
            "tag": {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2,
                "annotations": {"berth.dev/paused": "rollback by token alice at 2026-12-02T18:00:00Z"}},
            "generation": 2,
        }));
        let text = describe_stream_tag(&paused, None);
        assert!(
            text.contains(
                "Import:             paused by rollback by token alice at 2026-12-02T18:00:00Z: `berth tag --resume` imports again\n"
            ),
            "{text}"
        );
        let stream: ImageStream = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"tags": [{"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2,
                "annotations": {"berth.dev/paused": "rollback by token alice at 2026-12-02T18:00:00Z"}}]},
        }))
        .unwrap();
        let text = describe_stream(&stream, &BTreeMap::new(), None);
        assert!(text.contains("\n  ! import paused by rollback by token alice at 2026-12-02T18:00:00Z"), "{text}");
    }

    /// An RFC 3339 time `seconds` from now (negative: in the past).
    fn from_now(seconds: i64) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
    }

    fn scheduled_tag(scheduled: bool) -> ImageStreamTag {
        stream_tag(json!({
            "metadata": {"name": "app:latest", "namespace": "team"},
            "tag": {"name": "latest", "from": {"kind": "DockerImage", "name": "quay.io/team/app:latest"},
                "importPolicy": {"scheduled": scheduled}},
        }))
    }

    #[test]
    fn scheduled_tags_say_when_they_were_and_will_be_checked() {
        let schedule = vec![
            json!({"namespace": "team", "stream": "app", "tag": "latest", "from": "quay.io/team/app:latest", "intervalSeconds": 900,
                "lastCheck": from_now(-150), "nextCheck": from_now(13 * 60 + 30), "lastResult": "Unchanged"}),
            json!({"namespace": "team", "stream": "app", "tag": "next", "from": "quay.io/team/app:next", "intervalSeconds": 90,
                "nextCheck": from_now(-1)}),
        ];
        let text = describe_stream_tag(&scheduled_tag(true), Some(&schedule));
        assert!(
            text.contains("Tagged From:        DockerImage quay.io/team/app:latest\nScheduled:          every 15m, last checked 2m ago (Unchanged), next in 13m\n"),
            "{text}"
        );
        assert_eq!(scheduled_text(Some(&schedule), "app", "next"), "every 1m30s, not checked yet, next check due now");
        assert!(scheduled_text(Some(&[]), "app", "latest").starts_with("true, but the server is not checking it"));
        // The schedule could not be read (403): the policy alone.
        assert!(describe_stream_tag(&scheduled_tag(true), None).contains("\nScheduled:          true\n"));
        assert!(!describe_stream_tag(&scheduled_tag(false), Some(&schedule)).contains("Scheduled:"));

        let stream: ImageStream = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"tags": [
                {"name": "latest", "from": {"kind": "DockerImage", "name": "quay.io/team/app:latest"}, "importPolicy": {"scheduled": true}},
                {"name": "pinned", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}}]},
        }))
        .unwrap();
        let text = describe_stream(&stream, &BTreeMap::new(), Some(&schedule));
        assert!(
            text.contains("\nlatest\n  tagged from DockerImage quay.io/team/app:latest\n  Scheduled: every 15m, last checked 2m ago (Unchanged), next in 13m\n"),
            "{text}"
        );
        assert_eq!(text.matches("Scheduled:").count(), 1, "{text}");
    }

    #[test]
    fn a_quota_shows_used_and_hard_per_resource_and_what_berth_enforces() {
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "images", "namespace": "team"},
            "spec": {"hard": {"openshift.io/imagestreams": "10", "berth.dev/image-storage": "10Gi", "pods": "4"}, "scopes": ["BestEffort"]},
            "status": {"used": {"openshift.io/imagestreams": "3", "berth.dev/image-storage": "1288490189"}},
        }))
        .unwrap();
        let text = describe_quota(&quota);
        let expected = "\
Resource                   Used                Hard  Enforced
--------                   ----                ----  --------
berth.dev/image-storage    1288490189 (1.2Gi)  10Gi  yes
openshift.io/imagestreams  3                   10    yes
pods                       -                   4     no: berth keeps it only
";
        assert!(text.ends_with(expected), "{text}");
        assert!(text.contains("Scopes:             kept as written"), "{text}");

        let range: LimitRange = serde_json::from_value(json!({
            "metadata": {"name": "limits", "namespace": "team"},
            "spec": {"limits": [
                {"type": "openshift.io/Image", "max": {"storage": "1Gi"}, "min": {"storage": "1Ki"}},
                {"type": "Container", "default": {"cpu": "1"}},
            ]},
        }))
        .unwrap();
        let text = describe_limit_range(&range);
        let rows: Vec<Vec<&str>> = text.lines().skip_while(|l| !l.starts_with("Type")).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[2], ["openshift.io/Image", "storage", "1Ki", "1Gi", "-", "-", "-", "max"], "{text}");
        assert_eq!(rows[3], ["Container", "cpu", "-", "-", "-", "1", "-", "no:", "berth", "keeps", "it", "only"], "{text}");
    }

    #[test]
    fn a_subscription_shows_its_filters_signing_key_and_delivery() {
        let subscription: Subscription = serde_json::from_value(json!({
            "metadata": {"name": "hooks", "namespace": "team", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"url": "https://ci.example.com/hook", "events": ["TagMoved", "ImportFailed"], "streams": ["app", "db"],
                "tags": ["app:latest"], "streamSelector": {"tier": "web"}, "secretRef": {"name": "hook-key", "key": "signing-key"}},
            "status": {"cursor": "000000000042", "lastDeliveredId": "team/000000000041", "lastDeliveredTime": "2026-01-02T00:00:00Z",
                "delivered": 7, "backlog": 2, "lastError": "connection refused", "lastErrorTime": "2026-01-03T00:00:00Z"},
        }))
        .unwrap();
        let text = describe_subscription(&subscription);
        for line in [
            "Name:               hooks\n",
            "URL:                https://ci.example.com/hook\n",
            "Events:             TagMoved, ImportFailed\n",
            "Streams:            app, db\n",
            "Tags:               app:latest\n",
            "Stream Selector:    tier=web\n",
            "Secret Ref:         key signing-key of Secret hook-key (signs each body: X-Berth-Signature)\n",
            "Delivered:          7\nBacklog:            2\nCursor:             000000000042\n",
            "(2026-01-02T00:00:00Z)\nLast Delivered ID:  team/000000000041\n",
            "Last Error:         connection refused\nLast Error Time:    ",
            "(2026-01-03T00:00:00Z)\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }

        let open: Subscription = serde_json::from_value(json!({"metadata": {"name": "all", "namespace": "team"},
            "spec": {"url": "http://h.example/x"}}))
        .unwrap();
        let text = describe_subscription(&open);
        for line in [
            "Events:             all\nStreams:            all\nTags:               all\nStream Selector:    <none>\n",
            "Secret Ref:         <none> (bodies are not signed)\n",
            "Last Delivered:     <never>\n",
            "Last Error:         <none>\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        assert!(!text.contains("Last Error Time"), "{text}");
    }
}
