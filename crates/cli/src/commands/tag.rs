//! `berth tag SOURCE DEST...` and `berth tag -d STREAM:TAG...`, as `oc tag` does them:
//! each destination becomes an ImageStreamTag whose spec points at the source, and the
//! server resolves it (a tag of this catalog) or imports it (an image from another
//! registry).
//!
//! What SOURCE is, when `--source` does not say, follows `oc tag`'s rules:
//! 1. a first path component that looks like a registry host (it has a `.` or a `:`, or
//!    is `localhost`) makes an image of another registry (`DockerImage`):
//!    `quay.io/team/app:1`, `localhost:5000/app`;
//! 2. a path of more than two components cannot name a stream (`[NS/]STREAM`), so it is
//!    a `DockerImage` too (`library/team/app:1` on Docker Hub);
//! 3. `[NS/]STREAM@ID` is an image of a stream (`ImageStreamImage`);
//! 4. `[NS/]STREAM:TAG` is a tag of a stream (`ImageStreamTag`);
//! 5. anything else, such as `mysql`, is a `DockerImage` (here `docker.io/library/mysql`).
//!
//! So `openshift/ruby:2.0` is the tag `2.0` of the stream `ruby` in namespace
//! `openshift`; to mean the Docker Hub repository, write `docker.io/openshift/ruby:2.0`
//! or pass `--source=docker`.
//!
//! Unlike `oc tag`, which returns as soon as the spec is written, `berth tag` then waits
//! for the server's import of each `DockerImage` tag (not `--reference` ones) and says
//! how it ended: the image imported, or why the import failed and what to do about it
//! (`--no-wait` returns at once, as `oc` does).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_model::image::Image;
use berth_model::imagestream::{ImageStreamTag, TagReference};
use berth_model::meta::ObjectReference;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::importing::{self, Failure, PolicyArgs};
use crate::commands::{Context, split_namespace};
use crate::kinds;
use crate::output::{self, ImportState, Reported};

/// How often the import of a tag is checked while waiting for it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["source", "delete", "resume"]))]
pub struct TagArgs {
    /// The source: a tag `[NS/]STREAM:TAG`, an image `[NS/]STREAM@sha256:...`, or an
    /// image of another registry `REGISTRY/REPO[:TAG|@DIGEST]`; followed by one or more
    /// destinations `[NS/]STREAM:TAG`.
    #[arg(value_name = "SOURCE", requires = "destinations")]
    source: Option<String>,
    /// The tags to set, `[NS/]STREAM:TAG`.
    #[arg(value_name = "DEST")]
    destinations: Vec<String>,
    /// What SOURCE is, when inferring it is not what you want: `docker` (an image of
    /// another registry), `istag` or `isimage`.
    #[arg(long = "source", value_enum, ignore_case = true, value_name = "KIND", conflicts_with = "delete")]
    source_kind: Option<SourceKind>,
    /// Make the destinations follow the source tag as it moves. berth's tags from an
    /// ImageStreamTag always follow it, so this is accepted for `oc` compatibility.
    #[arg(long, conflicts_with = "delete")]
    alias: bool,
    /// Point the tag at the source without importing it: the server stores no image
    /// for it and pulls go to the source.
    #[arg(long, conflicts_with = "delete")]
    reference: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Return once the tags are set, without waiting for their imports.
    #[arg(long, conflicts_with = "delete")]
    no_wait: bool,
    /// How long to wait for the imports, e.g. 90s or 5m.
    #[arg(long, value_parser = berth_model::duration::parse_duration, default_value = "60s", value_name = "DURATION", conflicts_with = "delete")]
    timeout: Duration,
    /// Delete the named tags instead.
    #[arg(short = 'd', long, value_name = "STREAM:TAG", num_args = 1.., conflicts_with_all = ["scheduled", "insecure", "reference_policy", "import_mode"])]
    delete: Vec<String>,
    /// Resume the imports of the named tags, which a rollback paused: each imports
    /// upstream's image again.
    #[arg(long, value_name = "STREAM:TAG", num_args = 1.., conflicts_with_all = ["delete", "scheduled", "insecure", "reference_policy", "import_mode"])]
    resume: Vec<String>,
}

/// What a tag's source is: `from.kind` of the destinations' spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// An image of another registry.
    #[value(name = "docker", alias = "dockerimage")]
    DockerImage,
    /// A tag of an image stream.
    #[value(name = "istag", alias = "imagestreamtag")]
    ImageStreamTag,
    /// An image of an image stream, by digest.
    #[value(name = "isimage", alias = "imagestreamimage")]
    ImageStreamImage,
}

impl SourceKind {
    fn api_name(self) -> &'static str {
        match self {
            SourceKind::DockerImage => "DockerImage",
            SourceKind::ImageStreamTag => "ImageStreamTag",
            SourceKind::ImageStreamImage => "ImageStreamImage",
        }
    }

    /// Infers what a source is by `oc tag`'s rules (see the module documentation).
    fn infer(typed: &str) -> SourceKind {
        let name = typed.split_once('@').map_or(typed, |(name, _)| name);
        let components: Vec<&str> = name.split('/').collect();
        let host_like = |first: &str| first.contains('.') || first.contains(':') || first == "localhost";
        if components.len() > 1 && host_like(components[0]) || components.len() > 2 {
            SourceKind::DockerImage
        } else if typed.contains('@') {
            SourceKind::ImageStreamImage
        } else if components.last().is_some_and(|last| last.contains(':')) {
            SourceKind::ImageStreamTag
        } else {
            SourceKind::DockerImage
        }
    }
}

/// A tag source: `from` of the destinations' spec.
#[derive(Debug, PartialEq, Eq)]
struct Source {
    kind: SourceKind,
    /// The namespace of a stream source; empty for a `DockerImage`.
    namespace: String,
    /// `STREAM:TAG`, `STREAM@ID`, or the pull spec as typed.
    name: String,
}

impl Source {
    fn parse(typed: &str, kind: Option<SourceKind>, default_namespace: &str) -> anyhow::Result<Source> {
        let kind = kind.unwrap_or_else(|| SourceKind::infer(typed));
        if kind == SourceKind::DockerImage {
            if typed.is_empty() {
                bail!("the source is empty: name an image as REGISTRY/REPO[:TAG|@DIGEST]");
            }
            // The pull spec is kept exactly as typed, as `oc tag` does; the server checks it.
            return Ok(Source { kind, namespace: String::new(), name: typed.to_string() });
        }
        let (namespace, rest) = split_namespace(typed);
        let separator = if kind == SourceKind::ImageStreamTag { ':' } else { '@' };
        let well_formed = !rest.contains('/')
            && namespace.is_none_or(|ns| !ns.is_empty())
            && rest.split_once(separator).is_some_and(|(stream, id)| !stream.is_empty() && !id.is_empty());
        if !well_formed {
            let form = if kind == SourceKind::ImageStreamTag { "[NS/]STREAM:TAG" } else { "[NS/]STREAM@DIGEST" };
            bail!("the source {typed:?} must be {form} for {}; for an image of another registry pass --source=docker", kind.api_name());
        }
        Ok(Source { kind, namespace: namespace.unwrap_or(default_namespace).to_string(), name: rest.to_string() })
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference { kind: self.kind.api_name().to_string(), namespace: self.namespace.clone(), name: self.name.clone() }
    }

    /// Whether the server imports the destinations: images of other registries, unless
    /// they are only referenced.
    fn is_imported(&self, reference: bool) -> bool {
        self.kind == SourceKind::DockerImage && !reference
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

/// The ImageStreamTag that sets `tag` of `namespace/name` (`STREAM:TAG`) to `source`.
fn stream_tag(namespace: &str, name: &str, tag: &str, source: &Source, args: &TagArgs) -> Value {
    let kind = &kinds::IMAGE_STREAM_TAG;
    // `tag` sets the tag anew, as `oc tag` does: flags left out take the defaults.
    let (import_policy, reference_policy) = args.policy.policies(None);
    let spec = TagReference {
        name: tag.to_string(),
        from: Some(source.reference()),
        reference: args.reference,
        import_policy,
        reference_policy,
        ..TagReference::default()
    };
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": namespace},
        "tag": spec,
    })
}

/// A tag set to an image of another registry, whose import to wait for.
struct Import<'a> {
    namespace: &'a str,
    /// `STREAM:TAG`.
    name: &'a str,
    /// The destination as typed, for messages.
    typed: &'a str,
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
    for typed in &args.resume {
        let (namespace, name, _) = destination(typed, &default_namespace)?;
        client.post(&format!("/apis/berth.dev/v1/namespaces/{namespace}/imagestreamtags/{name}/resume"), &json!({}))?;
        println!("Imports of {namespace}/{name} resumed: upstream's image is imported again.");
    }
    let Some(typed_source) = &args.source else {
        return Ok(());
    };
    let source = Source::parse(typed_source, args.source_kind, &default_namespace)?;
    let import_flags = args.policy.import_flags();
    if source.kind != SourceKind::DockerImage && !import_flags.is_empty() {
        let (verb, pronoun) = if import_flags.len() == 1 { ("is", "it") } else { ("are", "them") };
        bail!(
            "{} {verb} only for images of other registries, and {typed_source:?} is an {}: leave {pronoun} out, or pass \
             --source=docker if it names an image of another registry",
            import_flags.join(", "),
            source.kind.api_name()
        );
    }
    let mut imports = Vec::new();
    for typed in &args.destinations {
        let (namespace, name, tag) = destination(typed, &default_namespace)?;
        // A PUT creates the tag (and its stream) when missing, as in OpenShift.
        client.put(&kind.object(namespace, name), &stream_tag(namespace, name, tag, &source, &args))?;
        if args.policy.scheduled == Some(true) {
            println!("Tag {typed} set to import {typed_source} periodically.");
        } else {
            println!("Tag {typed} set to {typed_source}.");
        }
        if source.is_imported(args.reference) {
            imports.push(Import { namespace, name, typed });
        }
    }
    if args.no_wait || imports.is_empty() {
        return Ok(());
    }
    wait_for_imports(&client, &imports, typed_source, args.timeout)
}

/// How one import ended.
enum Outcome {
    Imported(Option<Box<Image>>),
    Failed { reason: String, message: String },
    StillImporting,
}

/// Waits for each import in turn (the server runs them side by side), with a spinner on
/// a terminal, and reports each as it ends. Fails when any failed or did not end in time.
fn wait_for_imports(client: &Client, imports: &[Import], from: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let spinner = importing::spinner(String::new());
    let mut all_imported = true;
    for import in imports {
        spinner.set_message(format!("importing {from} into {}", import.typed));
        let outcome = wait_for_import(client, import, deadline)?;
        all_imported &= matches!(outcome, Outcome::Imported(_));
        spinner.suspend(|| report(&outcome, import, from, imports.len() > 1, timeout));
    }
    spinner.finish_and_clear();
    if all_imported { Ok(()) } else { Err(Reported.into()) }
}

/// Polls the ImageStreamTag until its import ends or the deadline passes.
fn wait_for_import(client: &Client, import: &Import, deadline: Instant) -> anyhow::Result<Outcome> {
    let path = kinds::IMAGE_STREAM_TAG.object(import.namespace, import.name);
    loop {
        let istag: ImageStreamTag = serde_json::from_value(client.get(&path, &[])?)
            .with_context(|| format!("the server sent an image stream tag berth cannot read for {}", import.typed))?;
        let image_generation = istag.image.as_ref().map(|_| istag.generation);
        match berth_model::tags::import_state(istag.tag.as_ref(), image_generation, &istag.conditions) {
            ImportState::Imported | ImportState::NotImported | ImportState::Paused { .. } => {
                return Ok(Outcome::Imported(istag.image.map(Box::new)));
            }
            ImportState::Failed { reason, message } => {
                return Ok(Outcome::Failed { reason: reason.to_string(), message: message.to_string() });
            }
            ImportState::Pending if Instant::now() >= deadline => return Ok(Outcome::StillImporting),
            ImportState::Pending => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

fn report(outcome: &Outcome, import: &Import, from: &str, several: bool, timeout: Duration) {
    match outcome {
        Outcome::Imported(image) => println!("{}", imported_line(image.as_deref(), import.typed, several)),
        Outcome::Failed { reason, message } => Failure {
            from,
            reason,
            message,
            namespace: import.namespace,
            stream: import.name.split_once(':').map_or(import.name, |(stream, _)| stream),
            retry: format!("berth import-image {} -n {}", import.name, import.namespace),
        }
        .report(&format!("the import of {from} into {}", import.typed)),
        Outcome::StillImporting => eprintln!(
            "error: the import of {from} into {} did not end within {}; the server goes on with it: \
             see how it ends with `berth describe istag {} -n {}`, or wait longer with --timeout",
            import.typed,
            importing::duration_text(timeout),
            import.name,
            import.namespace
        ),
    }
}

/// `Imported sha256:... (5 layers, 12.3MB, linux/amd64)`, naming the tag when several
/// were set.
fn imported_line(image: Option<&Image>, typed: &str, several: bool) -> String {
    let Some(image) = image else {
        return format!("Imported {typed}.");
    };
    let mut line = format!("Imported {}", image.metadata.name);
    if several {
        let _ = write!(line, " into {typed}");
    }
    let facts = output::image_facts(image);
    if !facts.is_empty() {
        let _ = write!(line, " ({facts})");
    }
    line
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        tag: TagArgs,
    }

    fn args(typed: &[&str]) -> TagArgs {
        Cli::try_parse_from(std::iter::once("tag").chain(typed.iter().copied())).unwrap().tag
    }

    fn parses(typed: &[&str]) -> bool {
        Cli::try_parse_from(std::iter::once("tag").chain(typed.iter().copied())).is_ok()
    }

    #[test]
    fn sources_are_inferred_by_ocs_rules() {
        for (typed, kind) in [
            ("app:latest", SourceKind::ImageStreamTag),
            ("other/app:latest", SourceKind::ImageStreamTag),
            ("other/app@sha256:abc", SourceKind::ImageStreamImage),
            ("app@abc", SourceKind::ImageStreamImage),
            ("quay.io/team/app:1", SourceKind::DockerImage),
            ("localhost:5000/app", SourceKind::DockerImage),
            ("localhost/app:1", SourceKind::DockerImage),
            ("registry:5000/app@sha256:abc", SourceKind::DockerImage),
            ("library/team/app:1", SourceKind::DockerImage),
            ("mysql", SourceKind::DockerImage),
            ("team/mysql", SourceKind::DockerImage),
        ] {
            assert_eq!(SourceKind::infer(typed), kind, "{typed}");
        }
    }

    #[test]
    fn sources_are_tags_or_images_in_a_namespace_or_pull_specs() {
        let tag = Source::parse("app:latest", None, "team").unwrap();
        assert_eq!((tag.kind, tag.namespace.as_str(), tag.name.as_str()), (SourceKind::ImageStreamTag, "team", "app:latest"));
        let image = Source::parse("other/app@sha256:abc", None, "team").unwrap();
        assert_eq!((image.kind, image.namespace.as_str(), image.name.as_str()), (SourceKind::ImageStreamImage, "other", "app@sha256:abc"));
        let docker = Source::parse("openshift/ruby:2.0", Some(SourceKind::DockerImage), "team").unwrap();
        assert_eq!(docker, Source { kind: SourceKind::DockerImage, namespace: String::new(), name: "openshift/ruby:2.0".into() });
        let err = Source::parse("quay.io/team/app:1", Some(SourceKind::ImageStreamTag), "team").unwrap_err().to_string();
        assert!(err.contains("[NS/]STREAM:TAG") && err.contains("--source=docker"), "{err}");
        assert!(Source::parse("app", Some(SourceKind::ImageStreamImage), "team").is_err());
        assert!(Source::parse("/app:1", Some(SourceKind::ImageStreamTag), "team").is_err());
    }

    #[test]
    fn destinations_need_a_tag() {
        assert_eq!(destination("ns/app:prod", "team").unwrap(), ("ns", "app:prod", "prod"));
        assert!(destination("app", "team").is_err());
        assert!(destination("app:", "team").is_err());
    }

    #[test]
    fn a_docker_image_tag_carries_its_policies() {
        let args = args(&[
            "--source=docker",
            "quay.io/team/app:1",
            "app:1",
            "--scheduled",
            "--reference-policy=local",
            "--import-mode=PreserveOriginal",
        ]);
        let source = Source::parse(args.source.as_deref().unwrap(), args.source_kind, "team").unwrap();
        assert_eq!(
            stream_tag("team", "app:1", "1", &source, &args),
            json!({
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStreamTag",
                "metadata": {"name": "app:1", "namespace": "team"},
                "tag": {
                    "name": "1",
                    "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"},
                    "importPolicy": {"scheduled": true, "importMode": "PreserveOriginal"},
                    "referencePolicy": {"type": "Local"},
                },
            })
        );
        assert!(source.is_imported(false) && !source.is_imported(true));
    }

    #[test]
    fn a_reference_tag_says_so_and_a_stream_tag_names_its_namespace() {
        let reference = args(&["--reference", "quay.io/a/b:1", "b:1"]);
        let source = Source::parse("quay.io/a/b:1", None, "team").unwrap();
        assert_eq!(stream_tag("team", "b:1", "1", &source, &reference)["tag"]["reference"], true);
        let follow = args(&["other/app:latest", "app:prod"]);
        let source = Source::parse("other/app:latest", None, "team").unwrap();
        let tag = stream_tag("team", "app:prod", "prod", &source, &follow);
        assert_eq!(tag["tag"]["from"], json!({"kind": "ImageStreamTag", "namespace": "other", "name": "app:latest"}));
    }

    #[test]
    fn flags_parse_with_ocs_spellings_and_refuse_bad_mixes() {
        assert_eq!(args(&["--source=DockerImage", "a", "b:1"]).source_kind, Some(SourceKind::DockerImage));
        assert_eq!(args(&["--source", "imagestreamtag", "a:1", "b:1"]).source_kind, Some(SourceKind::ImageStreamTag));
        assert_eq!(args(&["--timeout=5m", "a", "b:1"]).timeout, Duration::from_secs(300));
        assert_eq!(args(&["a", "b:1"]).timeout, Duration::from_secs(60));
        assert!(!parses(&["-d", "a:1", "--scheduled"]));
        assert!(!parses(&["-d", "a:1", "--no-wait"]));
        assert!(!parses(&["--source=git", "a", "b:1"]));
        assert!(!parses(&["a"]));
    }

    #[test]
    fn imported_lines_give_digest_and_facts() {
        let image: Image = serde_json::from_value(json!({
            "metadata": {"name": "sha256:abc"},
            "dockerImageMetadata": {"Architecture": "amd64", "Os": "linux", "Size": 12_345_678},
            "dockerImageLayers": [{"name": "sha256:1", "size": 1}, {"name": "sha256:2", "size": 2}],
        }))
        .unwrap();
        assert_eq!(imported_line(Some(&image), "app:1", false), "Imported sha256:abc (2 layers, 12.3MB, linux/amd64)");
        assert_eq!(imported_line(Some(&image), "app:1", true), "Imported sha256:abc into app:1 (2 layers, 12.3MB, linux/amd64)");
        assert_eq!(imported_line(None, "app:1", false), "Imported app:1.");
    }
}
