//! `berth import-image STREAM[:TAG]`, as `oc import-image` does it: one ImageStreamImport
//! that looks images up in another registry and (unless `--dry-run`) imports them into
//! an image stream, then a table of what became of each.
//!
//! What is imported:
//! - `STREAM:TAG`: the tag's source again (its spec tag's `from`), or `--from`;
//! - `STREAM` with `--from=REGISTRY/REPO:TAG`: that image, into the tag `latest`;
//! - `STREAM` alone: every tag of the stream that imports from another registry (`oc`
//!   imports `latest` only);
//! - `STREAM --all`: the tags of a whole repository, `--from=REGISTRY/REPO` or the
//!   stream's `spec.dockerImageRepository`, as many as the server takes at a time.
//!
//! As with `oc`, when the stream does not exist (which needs `--confirm`) and `--from` is
//! left out, the argument is itself the pull spec, and a pull spec with a path
//! (`quay.io/team/app:1`) always is: its last path component names the stream.
//! A tag that imports from elsewhere is only pointed at a new `--from` with `--confirm`.
//!
//! A repository import can take a while: on a terminal a progress bar follows the
//! stream's watch while the import request runs on another thread.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use berth_model::imagestream::{ImageStream, TagReference};
use berth_model::imagestreamimport::{
    ImageImportSpec, ImageImportStatus, ImageStreamImport, ImageStreamImportSpec, LocalObjectReference, RepositoryImportSpec,
};
use berth_model::meta::ObjectReference;
use berth_model::reference::ImageReference;
use berth_model::{IMAGE_API_VERSION, ObjectMeta};
use indicatif::ProgressStyle;
use serde_json::Value;

use crate::client::{ApiError, Client};
use crate::commands::Context;
use crate::commands::importing::{self, Failure, PolicyArgs};
use crate::kinds;
use crate::output::{self, DocumentFormat, ImportState, Reported, array, text};

/// The tag a single image is imported into when none is named.
const DEFAULT_TAG: &str = "latest";
/// How many of the tags a repository import left out are named.
const ADDITIONAL_TAGS_SHOWN: usize = 5;

#[derive(Debug, clap::Args)]
pub struct ImportImageArgs {
    /// The image stream and the tag to import into, `STREAM[:TAG]` (namespace: -n); or a
    /// pull spec such as `quay.io/team/app:1`, imported into the stream `app`.
    #[arg(value_name = "STREAM[:TAG]")]
    target: String,
    /// The image to import, `REGISTRY/REPO[:TAG|@DIGEST]`; with --all, the repository,
    /// `REGISTRY/REPO`.
    #[arg(long, value_name = "PULL_SPEC")]
    from: Option<String>,
    /// Import the tags of a whole repository (as many as the server takes at a time).
    #[arg(long)]
    all: bool,
    /// Create the image stream when it does not exist, and point a tag that imports from
    /// elsewhere at --from.
    #[arg(long)]
    confirm: bool,
    /// Look the images up and show them without importing anything.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the server's ImageStreamImport as JSON or YAML instead of the table.
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
    /// How long to wait for the server's answer (it waits on other registries), e.g. 90s
    /// or 10m.
    #[arg(long, value_parser = berth_model::duration::parse_duration, default_value = "5m", value_name = "DURATION")]
    timeout: Duration,
}

/// The argument, split: the stream, the tag, and whether it is itself a pull spec.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    stream: String,
    tag: Option<String>,
    /// The argument as typed.
    typed: String,
    /// A pull spec with a path (`quay.io/team/app:1`): the source even when the stream
    /// exists.
    is_pull_spec: bool,
}

impl Target {
    fn parse(typed: &str) -> anyhow::Result<Target> {
        if typed.contains('@') {
            bail!("{typed:?} names an image by digest: import it into a tag with `berth import-image STREAM:TAG --from={typed}`");
        }
        let last = typed.rsplit('/').next().unwrap_or(typed);
        let (stream, tag) = match last.split_once(':') {
            Some((stream, tag)) => (stream, Some(tag.to_string())),
            None => (last, None),
        };
        if stream.is_empty() || tag.as_deref() == Some("") {
            bail!("{typed:?} must be STREAM[:TAG] (the namespace goes in -n), or a pull spec REGISTRY/REPO[:TAG]");
        }
        Ok(Target { stream: stream.to_string(), tag, typed: typed.to_string(), is_pull_spec: typed.contains('/') })
    }
}

pub fn run(ctx: &Context, args: ImportImageArgs) -> anyhow::Result<()> {
    let namespace = ctx.namespace();
    let target = Target::parse(&args.target)?;
    let client = ctx.client()?;
    let (before, revision) = current_stream(&client, &namespace, &target.stream)?;
    let request = build_import(&args, &target, &namespace, before.as_ref())?;
    let body = serde_json::to_value(&request)?;
    let path = kinds::IMAGE_STREAM_IMPORT.collection(Some(&namespace));
    let answer = match &request.spec.repository {
        Some(repository) if request.spec.import => {
            let watch = Watch { namespace: &namespace, stream: &target.stream, revision, before: before.as_ref() };
            post_with_progress(&client, &path, &body, args.timeout, &watch, &repository.from.name)
        }
        _ => client.post_within(&path, &body, args.timeout),
    };
    let answer = answer.map_err(|err| {
        if err.downcast_ref::<ApiError>().is_some() {
            return err;
        }
        err.context(format!(
            "no answer to the import into image stream {}: it may still end on the server (see `berth describe is {} -n {namespace}`); \
             for a large repository raise --timeout",
            target.stream, target.stream
        ))
    })?;
    let result: ImageStreamImport =
        serde_json::from_value(answer.clone()).context("the server answered with an ImageStreamImport berth cannot read")?;
    match args.output {
        Some(format) => format.print(&answer)?,
        None => print_summary(&result, before.as_ref(), &target.stream),
    }
    let failed = report_failures(&result, &namespace, &retry_command(&args, &namespace));
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// The stream as it is before the import (`None` when it does not exist) and the
/// revision of that reading, which the progress watch starts from.
fn current_stream(client: &Client, namespace: &str, name: &str) -> anyhow::Result<(Option<ImageStream>, String)> {
    let list = client.get(&kinds::IMAGE_STREAM.collection(Some(namespace)), &[("fieldSelector", format!("metadata.name={name}"))])?;
    let stream = array(&list, "/items")
        .first()
        .map(|item| serde_json::from_value::<ImageStream>(item.clone()))
        .transpose()
        .context("the server sent an image stream berth cannot read")?;
    Ok((stream, text(&list, "/metadata/resourceVersion").to_string()))
}

/// Builds the ImageStreamImport the arguments ask for, against the stream as it is now.
fn build_import(
    args: &ImportImageArgs,
    target: &Target,
    namespace: &str,
    stream: Option<&ImageStream>,
) -> anyhow::Result<ImageStreamImport> {
    let name = &target.stream;
    if stream.is_none() && !args.confirm && !args.dry_run {
        bail!("image stream {name} does not exist in namespace {namespace}: pass --confirm to create it");
    }
    // The argument is the source when it is a pull spec with a path, or when there is
    // no stream whose tags could say where to import from.
    let implied = (target.is_pull_spec || stream.is_none()).then_some(target.typed.as_str());
    let from = args.from.as_deref().or(implied);
    let mut spec = ImageStreamImportSpec { import: !args.dry_run, ..ImageStreamImportSpec::default() };
    if args.all {
        spec.repository = Some(repository_import(args, target, from, stream)?);
    } else {
        spec.images = image_imports(args, target, from, stream)?;
    }
    Ok(ImageStreamImport {
        kind: kinds::IMAGE_STREAM_IMPORT.kind.to_string(),
        api_version: IMAGE_API_VERSION.to_string(),
        metadata: ObjectMeta { name: name.clone(), namespace: namespace.to_string(), ..ObjectMeta::default() },
        spec,
        status: Default::default(),
    })
}

fn docker_image(name: &str) -> ObjectReference {
    ObjectReference { kind: "DockerImage".to_string(), name: name.to_string(), ..ObjectReference::default() }
}

/// `--all`: the repository named by `from` (without tag or digest), else the stream's
/// `spec.dockerImageRepository`.
fn repository_import(
    args: &ImportImageArgs,
    target: &Target,
    from: Option<&str>,
    stream: Option<&ImageStream>,
) -> anyhow::Result<RepositoryImportSpec> {
    let name = &target.stream;
    if target.tag.is_some() && !target.is_pull_spec {
        bail!("--all imports every tag of a repository: name the image stream without a tag ({name})");
    }
    let from = from.map(|from| repository_of(from, args.from.is_some())).transpose()?;
    let repository = from.or_else(|| stream.map(|s| s.spec.docker_image_repository.clone()).filter(|r| !r.is_empty()));
    let Some(repository) = repository else {
        bail!("image stream {name} names no repository to import all tags from: pass --from=REGISTRY/REPO");
    };
    let (import_policy, reference_policy) = args.policy.policies(None);
    Ok(RepositoryImportSpec { from: docker_image(&repository), import_policy, reference_policy, include_manifest: false })
}

/// The repository of a pull spec. A tag typed in --from is a mistake with --all; one in
/// the argument is only the way a pull spec is usually written, and dropped.
fn repository_of(from: &str, typed_as_from: bool) -> anyhow::Result<String> {
    match ImageReference::parse(from) {
        Ok(reference) if reference.tag.is_none() && reference.digest.is_none() => Ok(from.to_string()),
        Ok(reference) if typed_as_from => {
            let repository = ImageReference { tag: None, digest: None, ..reference };
            bail!("--all imports a whole repository: write --from={repository}, without a tag or digest")
        }
        Ok(reference) => Ok(ImageReference { tag: None, digest: None, ..reference }.to_string()),
        // The server says what is wrong with it.
        Err(_) => Ok(from.to_string()),
    }
}

/// One image into `STREAM:TAG` (or `latest`), or every tag of the stream that imports
/// from another registry.
fn image_imports(
    args: &ImportImageArgs,
    target: &Target,
    from: Option<&str>,
    stream: Option<&ImageStream>,
) -> anyhow::Result<Vec<ImageImportSpec>> {
    let name = &target.stream;
    let image = |tag: &str, from: &str, existing: Option<&TagReference>| {
        let (import_policy, reference_policy) = args.policy.policies(existing);
        ImageImportSpec {
            from: docker_image(from),
            to: Some(LocalObjectReference { name: tag.to_string() }),
            import_policy,
            reference_policy,
            include_manifest: false,
        }
    };
    if target.tag.is_none() && from.is_none() {
        let imported: Vec<&TagReference> =
            stream.map(|s| s.spec.tags.iter().filter(|t| imports_from_a_registry(t)).collect()).unwrap_or_default();
        if imported.is_empty() {
            bail!(
                "image stream {name} has no tags that import from another registry: pass --from=REGISTRY/REPO:TAG to import \
                 one, or --all --from=REGISTRY/REPO to import a repository"
            );
        }
        let mut images: Vec<ImageImportSpec> = imported.iter().map(|t| image(&t.name, &source_of(t), Some(t))).collect();
        images.sort_by(|a, b| a.to.as_ref().map(|t| &t.name).cmp(&b.to.as_ref().map(|t| &t.name)));
        return Ok(images);
    }
    let tag = target.tag.as_deref().unwrap_or(DEFAULT_TAG);
    let existing = stream.and_then(|s| s.spec_tag(tag));
    let from = match (existing, from) {
        (Some(spec), _) if !imports_from_a_registry(spec) => {
            let source = spec.from.as_ref().map_or("nothing".to_string(), |f| format!("{} {}", f.kind, f.name));
            bail!(
                "tag {tag} of image stream {name} follows {source}, not an image of another registry, so it is not imported: \
                 point it elsewhere with `berth tag`"
            );
        }
        (Some(spec), Some(from)) if source_of(spec) != from && !args.confirm => {
            bail!("tag {tag} of image stream {name} imports from {}: pass --confirm to import from {from} instead", source_of(spec))
        }
        (_, Some(from)) => from.to_string(),
        (Some(spec), None) => source_of(spec),
        (None, None) => match stream.map(|s| s.spec.docker_image_repository.as_str()).filter(|r| !r.is_empty()) {
            // As `oc`: `latest` of a stream that names a repository comes from there.
            Some(repository) if tag == DEFAULT_TAG => repository.to_string(),
            _ => bail!("image stream {name} has no tag {tag} to import: pass --from=REGISTRY/REPO:TAG to import one into it"),
        },
    };
    Ok(vec![image(tag, &from, existing)])
}

/// Whether the server imports a spec tag: an image of another registry, not only
/// referenced.
fn imports_from_a_registry(tag: &TagReference) -> bool {
    !tag.reference && tag.from.as_ref().is_some_and(|f| f.kind == "DockerImage")
}

fn source_of(tag: &TagReference) -> String {
    tag.from.as_ref().map(|f| f.name.clone()).unwrap_or_default()
}

/// The command that runs this import again, for hints.
fn retry_command(args: &ImportImageArgs, namespace: &str) -> String {
    let mut command = format!("berth import-image {} -n {namespace}", args.target);
    if let Some(from) = &args.from {
        command.push_str(&format!(" --from={from}"));
    }
    for (flag, given) in [("--all", args.all), ("--confirm", args.confirm), ("--dry-run", args.dry_run)] {
        if given {
            command.push(' ');
            command.push_str(flag);
        }
    }
    command
}

/// What the progress watch needs: the stream to watch, from which revision, and its
/// generation before the import.
struct Watch<'a> {
    namespace: &'a str,
    stream: &'a str,
    revision: String,
    before: Option<&'a ImageStream>,
}

/// Counts a repository import's progress from the watch of its image stream. The
/// server first writes, in one change, a spec tag for every tag it will import, all with
/// the stream's new generation G; then it writes the results in batches. A tag is done
/// once its newest TagEvent, or a failed ImportSuccess condition, has reached G.
#[derive(Debug)]
struct RepositoryProgress {
    /// The stream's generation before the import (0 when there was no stream).
    before: i64,
    /// G, once seen.
    generation: Option<i64>,
}

impl RepositoryProgress {
    fn new(before: Option<&ImageStream>) -> RepositoryProgress {
        RepositoryProgress { before: before.and_then(|s| s.metadata.generation).unwrap_or(0), generation: None }
    }

    /// `(done, total)` once the server has written the tags it imports; `None` before.
    fn observe(&mut self, stream: &ImageStream) -> Option<(u64, u64)> {
        let current = stream.metadata.generation.unwrap_or(0);
        let generation = match self.generation {
            Some(generation) => generation,
            None if current > self.before && stream.spec.tags.iter().any(|t| t.generation == Some(current)) => {
                self.generation = Some(current);
                current
            }
            None => return None,
        };
        let (mut done, mut total) = (0, 0);
        for tag in stream.spec.tags.iter().filter(|t| t.generation == Some(generation)) {
            total += 1;
            let history = stream.status_tag(&tag.name);
            let image_generation = history.and_then(|h| h.items.first()).map(|e| e.generation);
            let conditions = history.map(|h| h.conditions.as_slice()).unwrap_or_default();
            if berth_model::tags::import_state(Some(tag), image_generation, conditions) != ImportState::Pending {
                done += 1;
            }
        }
        Some((done, total))
    }
}

/// What the two threads of a repository import tell the one that draws.
enum Update {
    Stream(Box<ImageStream>),
    Answer(anyhow::Result<Value>),
}

/// POSTs a repository import on one thread while another watches the stream, and draws
/// the progress on this one. The watch only feeds the bar: when it fails, the bar stays
/// where it was and the answer still comes. It is left behind once the answer is in (a
/// watch ends only when the server ends it), and ends with the process.
fn post_with_progress(
    client: &Client,
    path: &str,
    body: &Value,
    timeout: Duration,
    watch: &Watch,
    repository: &str,
) -> anyhow::Result<Value> {
    let (sender, updates) = mpsc::channel();
    {
        let client = client.clone();
        let sender = sender.clone();
        let streams = kinds::IMAGE_STREAM.collection(Some(watch.namespace));
        let mut query = vec![("fieldSelector", format!("metadata.name={}", watch.stream))];
        if !watch.revision.is_empty() {
            query.push(("resourceVersion", watch.revision.clone()));
        }
        std::thread::spawn(move || {
            let _ = client.watch(&streams, &query, |object| {
                let Ok(stream) = serde_json::from_value::<ImageStream>(object.clone()) else {
                    return Ok(());
                };
                sender.send(Update::Stream(Box::new(stream))).map_err(|_| anyhow!("the import has ended"))
            });
        });
    }
    {
        let client = client.clone();
        let (path, body) = (path.to_string(), body.clone());
        std::thread::spawn(move || {
            let _ = sender.send(Update::Answer(client.post_within(&path, &body, timeout)));
        });
    }
    // A spinner until the server has said how many tags it imports, then a bar.
    let bar = importing::spinner(format!("listing the tags of {repository}"));
    let mut progress = RepositoryProgress::new(watch.before);
    for update in updates {
        match update {
            Update::Stream(stream) => {
                if let Some((done, total)) = progress.observe(&stream) {
                    let first = bar.length().is_none();
                    bar.set_length(total);
                    bar.set_position(done);
                    if first {
                        bar.set_style(bar_style());
                        bar.set_message(format!("importing {repository}"));
                    }
                }
            }
            Update::Answer(answer) => {
                bar.finish_and_clear();
                return answer;
            }
        }
    }
    bar.finish_and_clear();
    bail!("the import request ended without an answer")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tags ({elapsed})")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Each image's result with the tag it is for and the pull spec it came from.
fn results(result: &ImageStreamImport) -> Vec<(String, String, &ImageImportStatus)> {
    let mut rows = Vec::new();
    for (index, status) in result.status.images.iter().enumerate() {
        let spec = result.spec.images.get(index);
        let tag = Some(status.tag.clone())
            .filter(|t| !t.is_empty())
            .or_else(|| spec.and_then(|s| s.to.as_ref()).map(|to| to.name.clone()))
            .unwrap_or_default();
        rows.push((tag, spec.map(|s| s.from.name.clone()).unwrap_or_default(), status));
    }
    if let (Some(spec), Some(repository)) = (&result.spec.repository, &result.status.repository) {
        for status in &repository.images {
            rows.push((status.tag.clone(), format!("{}:{}", spec.from.name, status.tag), status));
        }
    }
    rows
}

/// The table of results: TAG, STATUS, IMAGE, SIZE, LAYERS, PLATFORM, and MESSAGE when
/// any failed. `before` tells an unchanged tag from an imported one.
fn summary_rows(result: &ImageStreamImport, before: Option<&ImageStream>) -> Vec<Vec<String>> {
    let results = results(result);
    let any_failed = results.iter().any(|(_, _, status)| !status.status.is_success());
    let mut header = vec!["TAG", "STATUS", "IMAGE", "SIZE", "LAYERS", "PLATFORM"];
    if any_failed {
        header.push("MESSAGE");
    }
    let mut rows = vec![header.into_iter().map(str::to_string).collect::<Vec<_>>()];
    for (tag, _, status) in &results {
        let mut row = vec![tag.clone()];
        match (&status.image, status.status.is_success()) {
            (Some(image), true) => {
                let current = before.and_then(|s| s.latest_event(tag)).map(|e| e.image.as_str());
                let word = if current == Some(image.metadata.name.as_str()) {
                    "Unchanged"
                } else if result.spec.import {
                    "Imported"
                } else {
                    "Would import"
                };
                row.extend([
                    word.to_string(),
                    output::short_digest(&image.metadata.name),
                    output::image_size(image),
                    output::image_layers(image),
                    output::image_platforms(image, 2),
                ]);
            }
            (None, true) => row.push(if result.spec.import { "Imported" } else { "Would import" }.to_string()),
            (_, false) => {
                row.extend(["Failed".to_string(), String::new(), String::new(), String::new(), String::new()]);
                row.push(format!("{}: {}", status.status.reason, status.status.message));
            }
        }
        row.resize(rows[0].len(), String::new());
        rows.push(row);
    }
    rows
}

/// The table, then what a repository import left out and how to get it.
fn print_summary(result: &ImageStreamImport, before: Option<&ImageStream>, stream: &str) {
    let rows = summary_rows(result, before);
    if rows.len() > 1 {
        output::print_rows(&rows);
    }
    if let Some(note) = additional_tags_note(result, stream) {
        println!("\n{note}");
    }
}

/// "N more tags were not imported..." when the server's cap on a repository import
/// left tags out.
fn additional_tags_note(result: &ImageStreamImport, stream: &str) -> Option<String> {
    let (spec, status) = (result.spec.repository.as_ref()?, result.status.repository.as_ref()?);
    let more = &status.additional_tags;
    if more.is_empty() {
        return None;
    }
    let mut named = more.iter().take(ADDITIONAL_TAGS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if more.len() > ADDITIONAL_TAGS_SHOWN {
        named.push_str(", ...");
    }
    let repository = &spec.from.name;
    Some(format!(
        "{} more tags were not imported because the server imports at most {} tags of a repository at a time: {named}\n\
         Import them by name with `berth import-image {stream}:TAG --from={repository}:TAG`, or ask an admin to raise \
         maxImagesBulkImportedPerRepository (-1 imports all).",
        more.len(),
        status.images.len(),
    ))
}

/// Reports each failure on standard error, with one hint per reason (a repository
/// import can fail fifty times for the same missing pull secret). Returns whether
/// anything failed.
fn report_failures(result: &ImageStreamImport, namespace: &str, retry: &str) -> bool {
    let mut failed = false;
    let mut hinted: Vec<String> = Vec::new();
    let mut report = |what: String, from: &str, status: &berth_model::meta::Status| {
        failed = true;
        let failure = Failure {
            from,
            reason: &status.reason,
            message: &status.message,
            namespace,
            stream: &result.metadata.name,
            retry: retry.to_string(),
        };
        eprintln!("error: {what} failed ({}): {}", status.reason, status.message);
        if !hinted.contains(&status.reason) {
            hinted.push(status.reason.clone());
            if let Some(hint) = failure.hint() {
                eprintln!("{hint}");
            }
        }
    };
    if let (Some(spec), Some(repository)) = (&result.spec.repository, &result.status.repository)
        && !repository.status.is_success()
    {
        report(format!("the import of repository {}", spec.from.name), &spec.from.name, &repository.status);
    }
    for (tag, from, status) in results(result) {
        if !status.status.is_success() {
            report(format!("the import of {from} into {}:{tag}", result.metadata.name), &from, &status.status);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use serde_json::json;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ImportImageArgs,
    }

    fn args(typed: &[&str]) -> ImportImageArgs {
        Cli::try_parse_from(std::iter::once("import-image").chain(typed.iter().copied())).unwrap().args
    }

    fn stream(value: Value) -> ImageStream {
        serde_json::from_value(value).unwrap()
    }

    /// The request as JSON, for `typed` against `existing`.
    fn build(typed: &[&str], existing: Option<&ImageStream>) -> anyhow::Result<Value> {
        let args = args(typed);
        let target = Target::parse(&args.target)?;
        Ok(serde_json::to_value(build_import(&args, &target, "team", existing)?).unwrap())
    }

    fn app() -> ImageStream {
        stream(json!({
            "metadata": {"name": "app", "namespace": "team", "generation": 3},
            "spec": {"tags": [
                {"name": "1", "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"},
                 "importPolicy": {"insecure": true}, "referencePolicy": {"type": "Local"}, "generation": 2},
                {"name": "latest", "from": {"kind": "DockerImage", "name": "quay.io/team/app:latest"}, "generation": 3},
                {"name": "prod", "from": {"kind": "ImageStreamTag", "name": "app:1"}},
                {"name": "ref", "from": {"kind": "DockerImage", "name": "quay.io/team/app:ref"}, "reference": true},
            ]},
            "status": {"tags": [{"tag": "1", "items": [
                {"created": "2026-01-01T00:00:00Z", "dockerImageReference": "quay.io/team/app@sha256:aa", "image": "sha256:aa", "generation": 2}]}]},
        }))
    }

    #[test]
    fn targets_are_streams_with_tags_or_pull_specs() {
        let plain = Target::parse("app:1").unwrap();
        assert_eq!((plain.stream.as_str(), plain.tag.as_deref(), plain.is_pull_spec), ("app", Some("1"), false));
        let spec = Target::parse("localhost:5000/team/app").unwrap();
        assert_eq!((spec.stream.as_str(), spec.tag, spec.is_pull_spec), ("app", None, true));
        assert!(Target::parse("app@sha256:abc").unwrap_err().to_string().contains("--from=app@sha256:abc"));
        assert!(Target::parse("app:").is_err());
    }

    #[test]
    fn a_tag_is_imported_again_from_its_source_keeping_its_policies() {
        let request = build(&["app:1"], Some(&app())).unwrap();
        assert_eq!(
            request,
            json!({
                "kind": "ImageStreamImport",
                "apiVersion": "image.openshift.io/v1",
                "metadata": {"name": "app", "namespace": "team"},
                "spec": {"import": true, "images": [{
                    "from": {"kind": "DockerImage", "name": "quay.io/team/app:1"},
                    "to": {"name": "1"},
                    "importPolicy": {"insecure": true},
                    "referencePolicy": {"type": "Local"},
                }]},
                "status": {},
            })
        );
        let flagged = build(&["app:1", "--insecure=false", "--scheduled", "--dry-run"], Some(&app())).unwrap();
        assert_eq!(flagged["spec"]["import"], false);
        assert_eq!(flagged["spec"]["images"][0]["importPolicy"], json!({"scheduled": true}));
    }

    #[test]
    fn a_stream_alone_imports_each_tag_from_another_registry() {
        let request = build(&["app"], Some(&app())).unwrap();
        let tags: Vec<&str> = request["spec"]["images"].as_array().unwrap().iter().map(|i| i["to"]["name"].as_str().unwrap()).collect();
        assert_eq!(tags, ["1", "latest"]);
        let empty = stream(json!({"metadata": {"name": "app"}}));
        assert!(build(&["app"], Some(&empty)).unwrap_err().to_string().contains("pass --from=REGISTRY/REPO:TAG"));
    }

    #[test]
    fn from_goes_into_latest_and_a_new_source_needs_confirm() {
        let request = build(&["app", "--from=quay.io/other/app:2"], Some(&app())).unwrap_err().to_string();
        assert!(request.contains("imports from quay.io/team/app:latest: pass --confirm"), "{request}");
        let confirmed = build(&["app", "--from=quay.io/other/app:2", "--confirm"], Some(&app())).unwrap();
        assert_eq!(confirmed["spec"]["images"][0]["from"]["name"], "quay.io/other/app:2");
        assert_eq!(confirmed["spec"]["images"][0]["to"]["name"], "latest");
        let new_tag = build(&["app:2", "--from=quay.io/other/app:2"], Some(&app())).unwrap();
        assert_eq!(new_tag["spec"]["images"][0]["to"]["name"], "2");
        let err = build(&["app:prod"], Some(&app())).unwrap_err().to_string();
        assert!(err.contains("follows ImageStreamTag app:1") && err.contains("`berth tag`"), "{err}");
        assert!(build(&["app:9"], Some(&app())).unwrap_err().to_string().contains("has no tag 9"));
    }

    #[test]
    fn a_missing_stream_needs_confirm_and_the_argument_is_the_source() {
        let err = build(&["mysql:8"], None).unwrap_err().to_string();
        assert_eq!(err, "image stream mysql does not exist in namespace team: pass --confirm to create it");
        let request = build(&["mysql:8", "--confirm"], None).unwrap();
        assert_eq!(request["metadata"]["name"], "mysql");
        assert_eq!(request["spec"]["images"][0]["from"]["name"], "mysql:8");
        assert_eq!(request["spec"]["images"][0]["to"]["name"], "8");
        let dry = build(&["quay.io/team/app", "--dry-run"], None).unwrap();
        assert_eq!((&dry["metadata"]["name"], &dry["spec"]["images"][0]["to"]["name"]), (&json!("app"), &json!("latest")));
    }

    #[test]
    fn all_imports_a_repository() {
        let request = build(&["app", "--all", "--from=quay.io/team/app", "--reference-policy=local"], Some(&app())).unwrap();
        assert_eq!(
            request["spec"],
            json!({"import": true, "repository": {
                "from": {"kind": "DockerImage", "name": "quay.io/team/app"},
                "importPolicy": {},
                "referencePolicy": {"type": "Local"},
            }})
        );
        let err = build(&["app", "--all"], Some(&app())).unwrap_err().to_string();
        assert!(err.contains("names no repository") && err.contains("--from=REGISTRY/REPO"), "{err}");
        let mut named = app();
        named.spec.docker_image_repository = "quay.io/team/app".into();
        assert_eq!(build(&["app", "--all"], Some(&named)).unwrap()["spec"]["repository"]["from"]["name"], "quay.io/team/app");
        assert!(
            build(&["app", "--all", "--from=quay.io/team/app:1"], Some(&app()))
                .unwrap_err()
                .to_string()
                .contains("--from=quay.io/team/app,")
        );
        assert!(build(&["app:1", "--all"], Some(&app())).is_err());
        let spec = build(&["quay.io/team/app:1", "--all", "--confirm"], None).unwrap();
        assert_eq!(spec["spec"]["repository"]["from"]["name"], "quay.io/team/app");
    }

    #[test]
    fn progress_counts_the_tags_of_the_new_generation() {
        let mut progress = RepositoryProgress::new(Some(&app()));
        // A change that is not the import's spec write yet.
        assert_eq!(progress.observe(&app()), None);
        let written = |items: Value, conditions: Value| {
            stream(json!({
                "metadata": {"name": "app", "generation": 4},
                "spec": {"tags": [
                    {"name": "1", "from": {"kind": "DockerImage", "name": "r/app:1"}, "generation": 4},
                    {"name": "2", "from": {"kind": "DockerImage", "name": "r/app:2"}, "generation": 4},
                    {"name": "3", "from": {"kind": "DockerImage", "name": "r/app:3"}, "generation": 4},
                    {"name": "old", "from": {"kind": "DockerImage", "name": "r/app:old"}, "generation": 2},
                ]},
                "status": {"tags": [
                    {"tag": "1", "items": items},
                    {"tag": "2", "items": [], "conditions": conditions},
                ]},
            }))
        };
        let old =
            json!([{"created": "2026-01-01T00:00:00Z", "dockerImageReference": "r/app@sha256:aa", "image": "sha256:aa", "generation": 2}]);
        assert_eq!(progress.observe(&written(old, json!([]))), Some((0, 3)));
        let new =
            json!([{"created": "2026-01-02T00:00:00Z", "dockerImageReference": "r/app@sha256:bb", "image": "sha256:bb", "generation": 4}]);
        let failed = json!([{"type": "ImportSuccess", "status": "False", "reason": "NotFound", "generation": 4}]);
        assert_eq!(progress.observe(&written(new, failed)), Some((2, 3)));
    }

    fn result(value: Value) -> ImageStreamImport {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_summary_tells_imported_unchanged_and_failed_apart() {
        let image = |digest: &str| {
            json!({"metadata": {"name": digest}, "dockerImageLayers": [{"name": "sha256:1", "size": 1500}],
                   "dockerImageMetadata": {"Os": "linux", "Architecture": "arm64", "Size": 1500}})
        };
        let answer = result(json!({
            "metadata": {"name": "app"},
            "spec": {"import": true, "images": [
                {"from": {"kind": "DockerImage", "name": "quay.io/team/app:1"}, "to": {"name": "1"}},
                {"from": {"kind": "DockerImage", "name": "quay.io/team/app:2"}, "to": {"name": "2"}},
                {"from": {"kind": "DockerImage", "name": "quay.io/team/app:3"}, "to": {"name": "3"}}]},
            "status": {"images": [
                {"status": {"status": "Success"}, "image": image("sha256:aa"), "tag": "1"},
                {"status": {"status": "Success"}, "image": image("sha256:0123456789abcdef")},
                {"status": {"status": "Failure", "reason": "Unauthorized", "message": "authentication required"}}]},
        }));
        let rows = summary_rows(&answer, Some(&app()));
        assert_eq!(rows[0], ["TAG", "STATUS", "IMAGE", "SIZE", "LAYERS", "PLATFORM", "MESSAGE"]);
        assert_eq!(rows[1], ["1", "Unchanged", "sha256:aa", "1.5kB", "1", "linux/arm64", ""]);
        assert_eq!(rows[2], ["2", "Imported", "sha256:0123456789ab", "1.5kB", "1", "linux/arm64", ""]);
        assert_eq!(rows[3], ["3", "Failed", "", "", "", "", "Unauthorized: authentication required"]);
        assert!(report_failures(&answer, "team", "berth import-image app -n team"));
    }

    #[test]
    fn left_out_tags_are_named_with_how_to_get_them() {
        let ok = json!({"status": {"status": "Success"}, "image": {"metadata": {"name": "sha256:aa"}}, "tag": "latest"});
        let answer = result(json!({
            "metadata": {"name": "app"},
            "spec": {"import": true, "repository": {"from": {"kind": "DockerImage", "name": "quay.io/team/app"}}},
            "status": {"repository": {"status": {"status": "Success"}, "images": [ok, ok],
                "additionalTags": ["a", "b", "c", "d", "e", "f", "g"]}},
        }));
        assert_eq!(
            additional_tags_note(&answer, "app").unwrap(),
            "7 more tags were not imported because the server imports at most 2 tags of a repository at a time: a, b, c, d, e, ...\n\
             Import them by name with `berth import-image app:TAG --from=quay.io/team/app:TAG`, or ask an admin to raise \
             maxImagesBulkImportedPerRepository (-1 imports all)."
        );
        assert!(!report_failures(&answer, "team", "berth import-image app -n team"));
    }
}
