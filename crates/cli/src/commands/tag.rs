//! `berth tag SRC DEST...` and `berth tag -d STREAM:TAG...`, as `oc tag` does them
//! within one registry: each destination becomes an ImageStreamTag whose spec points at
//! the source, and the server resolves it.

use anyhow::bail;
use serde_json::json;

use crate::commands::{Context, split_namespace};
use crate::kinds;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["source", "delete"]))]
pub struct TagArgs {
    /// The source, `[NS/]STREAM:TAG` or `[NS/]STREAM@sha256:...`, followed by one or
    /// more destinations `[NS/]STREAM:TAG`.
    #[arg(value_name = "SOURCE", requires = "destinations")]
    source: Option<String>,
    #[arg(value_name = "DEST")]
    destinations: Vec<String>,
    /// Make the destinations follow the source tag as it moves. berth's tags from an
    /// ImageStreamTag always follow it, so this is accepted for `oc` compatibility.
    #[arg(long, conflicts_with = "delete")]
    alias: bool,
    /// Delete the named tags instead.
    #[arg(short = 'd', long, value_name = "STREAM:TAG", num_args = 1..)]
    delete: Vec<String>,
}

/// A tag source: `from` of the destinations' spec.
struct Source {
    kind: &'static str,
    namespace: String,
    name: String,
}

impl Source {
    fn parse(typed: &str, default_namespace: &str) -> anyhow::Result<Source> {
        let (namespace, rest) = split_namespace(typed);
        let kind = if rest.contains('@') {
            "ImageStreamImage"
        } else if rest.split_once(':').is_some_and(|(stream, tag)| !stream.is_empty() && !tag.is_empty()) {
            "ImageStreamTag"
        } else {
            bail!("the source {typed:?} must be [NS/]STREAM:TAG or [NS/]STREAM@DIGEST");
        };
        Ok(Source { kind, namespace: namespace.unwrap_or(default_namespace).to_string(), name: rest.to_string() })
    }
}

/// A destination `[NS/]STREAM:TAG`, split into namespace, `STREAM:TAG` and `TAG`.
fn destination<'a>(typed: &'a str, default_namespace: &'a str) -> anyhow::Result<(&'a str, &'a str, &'a str)> {
    let (namespace, name) = split_namespace(typed);
    match name.split_once(':') {
        Some((stream, tag)) if !stream.is_empty() && !tag.is_empty() => Ok((namespace.unwrap_or(default_namespace), name, tag)),
        _ => bail!("{typed:?} must be [NS/]STREAM:TAG"),
    }
}

pub fn run(ctx: &Context, args: TagArgs) -> anyhow::Result<()> {
    let default_namespace = ctx.namespace();
    let client = ctx.client()?;
    let kind = &kinds::IMAGE_STREAM_TAG;
    for typed in &args.delete {
        let (namespace, name, _) = destination(typed, &default_namespace)?;
        client.delete(&kind.object(namespace, name))?;
        println!("Deleted tag {namespace}/{name}.");
    }
    let Some(typed_source) = &args.source else {
        return Ok(());
    };
    let source = Source::parse(typed_source, &default_namespace)?;
    for typed in &args.destinations {
        let (namespace, name, tag) = destination(typed, &default_namespace)?;
        let istag = json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind,
            "metadata": {"name": name, "namespace": namespace},
            "tag": {"name": tag, "from": {"kind": source.kind, "namespace": source.namespace, "name": source.name}},
        });
        // A PUT creates the tag (and its stream) when missing, as in OpenShift.
        client.put(&kind.object(namespace, name), &istag)?;
        println!("Tag {typed} set to {typed_source}.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_tags_or_images_in_a_namespace() {
        let tag = Source::parse("app:latest", "team").unwrap();
        assert_eq!((tag.kind, tag.namespace.as_str(), tag.name.as_str()), ("ImageStreamTag", "team", "app:latest"));
        let image = Source::parse("other/app@sha256:abc", "team").unwrap();
        assert_eq!((image.kind, image.namespace.as_str(), image.name.as_str()), ("ImageStreamImage", "other", "app@sha256:abc"));
        assert!(Source::parse("app", "team").is_err());
    }

    #[test]
    fn destinations_need_a_tag() {
        assert_eq!(destination("ns/app:prod", "team").unwrap(), ("ns", "app:prod", "prod"));
        assert!(destination("app", "team").is_err());
        assert!(destination("app:", "team").is_err());
    }
}
