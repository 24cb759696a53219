//! `berth describe imagestream NAME` and `berth describe imagestreamtag STREAM:TAG`:
//! the human-readable detail `oc describe` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use berth_model::ObjectMeta;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamTag, TagEventCondition, TagReference};
use serde_json::Value;

use crate::client::Client;
use crate::commands::Context;
use crate::kinds;
use crate::output::{self, ImportState, ago, source_text, text};

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// imagestream (is) or imagestreamtag (istag).
    kind: String,
    /// The stream's name, or STREAM:TAG for a tag.
    name: String,
}

pub fn run(ctx: &Context, args: DescribeArgs) -> anyhow::Result<()> {
    let kind = kinds::lookup(&args.kind)?;
    if kind.kind != kinds::IMAGE_STREAM.kind && kind.kind != kinds::IMAGE_STREAM_TAG.kind {
        bail!("describe shows imagestreams (is) and imagestreamtags (istag); for {} use `berth get {} -o yaml`", kind.plural, kind.plural);
    }
    let client = ctx.client()?;
    let object = client.get(&kind.object(&ctx.namespace(), &args.name), &[])?;
    let described = if kind.kind == kinds::IMAGE_STREAM.kind {
        let stream: ImageStream = serde_json::from_value(object).context("the server sent an image stream berth cannot read")?;
        describe_stream(&stream, &current_images(&client, &stream))
    } else {
        describe_stream_tag(&serde_json::from_value(object).context("the server sent an image stream tag berth cannot read")?)
    };
    print!("{described}");
    Ok(())
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
fn describe_stream(stream: &ImageStream, images: &BTreeMap<String, Image>) -> String {
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
        describe_tag(&mut out, stream, tag, images);
    }
    out.0
}

/// One tag: where it comes from and how its import stands, then its history newest
/// first (the current image starred, with its facts), then its other conditions.
fn describe_tag(out: &mut Fields, stream: &ImageStream, tag: &str, images: &BTreeMap<String, Image>) {
    out.line(tag);
    let spec = stream.spec_tag(tag);
    match spec {
        None => out.line("  pushed image"),
        Some(spec) => {
            if let Some(source) = tag_source(spec, &stream.metadata.namespace) {
                out.line(&format!("  tagged from {source}"));
            }
        }
    }
    let (items, conditions) = stream.status_tag(tag).map(|h| (h.items.as_slice(), h.conditions.as_slice())).unwrap_or_default();
    let import = ImportState::of(spec, items.first().map(|e| e.generation), conditions);
    match &import {
        ImportState::Pending => out.line("  importing..."),
        ImportState::Failed { .. } => out.line(&format!("  ! import {}", import.describe())),
        ImportState::NotImported | ImportState::Imported => {}
    }
    if !items.is_empty() {
        out.line("");
    }
    for (index, event) in items.iter().enumerate() {
        let marker = if index == 0 { "  * " } else { "    " };
        out.line(&format!("{marker}{}", event.docker_image_reference));
        out.line(&format!("      {}", when(&event.created.to_string())));
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

fn describe_stream_tag(istag: &ImageStreamTag) -> String {
    let mut out = Fields::default();
    out.metadata(&istag.metadata);
    match istag.tag.as_ref() {
        None => out.field("Tagged From", "pushed image"),
        Some(spec) => out.field("Tagged From", &tag_source(spec, &istag.metadata.namespace).unwrap_or_else(|| "<none>".to_string())),
    }
    let import = ImportState::of(istag.tag.as_ref(), istag.image.as_ref().map(|_| istag.generation), &istag.conditions);
    if import != ImportState::NotImported {
        out.field("Import", &import.describe());
    }
    match &istag.image {
        Some(image) => describe_image(&mut out, image),
        None => out.field("Image Name", "<none>: the tag has no image yet"),
    }
    describe_conditions(&mut out, &istag.conditions, &import);
    out.0
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
            "spec": {"tags": [{"name": "db", "from": {"kind": "DockerImage", "name": "mysql:5.6"}}]},
            "status": {"dockerImageRepository": "berth:7440/team/app", "tags": [
                {"tag": "latest", "items": [
                    {"created": "2026-01-02T00:00:00Z", "dockerImageReference": "r/app@sha256:b", "image": "sha256:b", "generation": 1},
                    {"created": "2026-01-01T00:00:00Z", "dockerImageReference": "r/app@sha256:a", "image": "sha256:a", "generation": 1}]},
                {"tag": "db", "items": [], "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "NotImported", "message": "not imported yet"}]}]}
        }))
        .unwrap();
        let image: Image = serde_json::from_value(json!({"metadata": {"name": "sha256:b"},
            "dockerImageLayers": [{"name": "sha256:1", "size": 1}], "dockerImageMetadata": {"Os": "linux", "Architecture": "amd64", "Size": 1500}}))
        .unwrap();
        let text = describe_stream(&stream, &BTreeMap::from([("sha256:b".to_string(), image)]));
        assert!(text.contains("Image Repository:   berth:7440/team/app\n"), "{text}");
        assert!(text.contains("Unique Images:      2\nTags:               2\n"), "{text}");
        assert!(text.contains("\ndb\n  tagged from DockerImage mysql:5.6\n  ! import failed (NotImported): not imported yet\n"), "{text}");
        assert!(text.contains("      sha256:b\n      1 layer, 1.5kB, linux/amd64\n"), "{text}");
        let newest = text.find("  * r/app@sha256:b").unwrap();
        let older = text.find("    r/app@sha256:a").unwrap();
        assert!(newest < older, "{text}");
        assert!(text.contains("(2026-01-02T00:00:00Z)\n      sha256:b\n"), "{text}");
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
        let text = describe_stream_tag(&importing);
        assert!(text.contains("Tagged From:        DockerImage quay.io/team/app:1\nImport:             importing\n"), "{text}");
        assert!(!text.contains("old"), "a superseded failure is not shown: {text}");

        let failed = stream_tag(json!({
            "metadata": {"name": "app:1", "namespace": "team"},
            "tag": {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "generation": 2},
            "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "Unauthorized", "message": "authentication required", "generation": 2}],
        }));
        let text = describe_stream_tag(&failed);
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
        let text = describe_stream_tag(&list);
        assert!(text.contains("Import:             imported\n"), "{text}");
        assert!(text.contains("Manifests:          2\nPlatforms:          linux/amd64\n                    linux/arm64/v8\n"), "{text}");
        assert!(!text.contains("Layers:"), "{text}");
    }
}
