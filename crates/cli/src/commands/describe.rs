//! `berth describe imagestream NAME` and `berth describe imagestreamtag STREAM:TAG`:
//! the human-readable detail `oc describe` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use berth_model::ObjectMeta;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamTag, TagEventCondition, TagReference};
use serde_json::Value;

use crate::commands::Context;
use crate::kinds;
use crate::output::{self, ago, source_text, text};

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
    let object = ctx.client()?.get(&kind.object(&ctx.namespace(), &args.name), &[])?;
    let described = if kind.kind == kinds::IMAGE_STREAM.kind {
        describe_stream(&serde_json::from_value(object).context("the server sent an image stream berth cannot read")?)
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

/// `5m ago (2026-01-02T03:04:05Z)`: humanised, and exact for scripts and audits.
fn when(at: &str) -> String {
    if at.is_empty() { "<unknown>".to_string() } else { format!("{} ({at})", ago(at)) }
}

fn describe_stream(stream: &ImageStream) -> String {
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
        describe_tag(&mut out, stream, tag);
    }
    out.0
}

/// One tag: where it comes from, then its history newest first (the current image
/// starred), then its conditions.
fn describe_tag(out: &mut Fields, stream: &ImageStream, tag: &str) {
    out.line(tag);
    match stream.spec_tag(tag) {
        None => out.line("  pushed image"),
        Some(spec) => {
            if let Some(source) = tag_source(spec, &stream.metadata.namespace) {
                out.line(&format!("  tagged from {source}"));
            }
        }
    }
    let (items, conditions) = stream.status_tag(tag).map(|h| (h.items.as_slice(), h.conditions.as_slice())).unwrap_or_default();
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
    }
    describe_conditions(out, conditions);
}

fn describe_conditions(out: &mut Fields, conditions: &[TagEventCondition]) {
    if !conditions.is_empty() {
        out.line("");
    }
    for condition in conditions {
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
    match &istag.image {
        Some(image) => describe_image(&mut out, image),
        None => out.field("Image Name", "<none>: the tag has no image yet"),
    }
    describe_conditions(&mut out, &istag.conditions);
    out.0
}

fn describe_image(out: &mut Fields, image: &Image) {
    let metadata = image.docker_image_metadata.as_ref().unwrap_or(&Value::Null);
    out.field("Image Name", &image.metadata.name);
    out.field("Docker Image", &image.docker_image_reference);
    out.field("Image Size", &output::size(image.size()));
    out.field("Layers", &image.docker_image_layers.len().to_string());
    // When the image was built, as its config says; else when berth first stored it.
    let created = Some(text(metadata, "/Created").to_string())
        .filter(|c| !c.is_empty())
        .or_else(|| image.metadata.creation_timestamp.map(|t| t.to_string()))
        .unwrap_or_default();
    out.field("Image Created", &when(&created));
    let architecture = text(metadata, "/Architecture");
    if !architecture.is_empty() {
        out.field("Architecture", architecture);
    }
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
        let text = describe_stream(&stream);
        assert!(text.contains("Image Repository:   berth:7440/team/app\n"), "{text}");
        assert!(text.contains("Unique Images:      2\nTags:               2\n"), "{text}");
        assert!(text.contains("\ndb\n  tagged from DockerImage mysql:5.6\n\n  ! NotImported: not imported yet\n"), "{text}");
        let newest = text.find("  * r/app@sha256:b").unwrap();
        let older = text.find("    r/app@sha256:a").unwrap();
        assert!(newest < older, "{text}");
        assert!(text.contains("(2026-01-02T00:00:00Z)\n      sha256:b\n"), "{text}");
        assert!(text.contains("\nlatest\n  pushed image\n"), "{text}");
    }
}
