//! Images as deployment contracts: `berth diff` (what changed in a tag's contract between
//! two images, judged), `berth rollback` (a tag back to an earlier image of its history),
//! `berth generate deployment` (a Deployment and Service from a tag's contract, or
//! `--check` of a running Deployment against the tag), and the three columns of a tag's
//! contract that `describe` shows. The rules are the model's (`berth_model::contract`);
//! this module asks the server and prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use berth_model::contract::deployment::{self, Template};
use berth_model::contract::{Contract, ContractChanges, ContractDiff, TagContract, Verdict};
use berth_model::imagestream::ImageStreamTag;
use berth_model::reference::ImageReference;
use serde_json::{Value, json};

use crate::commands::{Context, split_namespace};
use crate::kinds;
use crate::output::{self, DocumentFormat, Reported};

const BERTH_API: &str = "/apis/berth.dev/v1";

/// `[NS/]STREAM:TAG` → (namespace, `STREAM:TAG`, stream).
fn stream_tag<'a>(typed: &'a str, default_namespace: &'a str) -> anyhow::Result<(&'a str, &'a str, &'a str)> {
    let (namespace, name) = split_namespace(typed);
    match name.split_once(':') {
        Some((stream, tag)) if !stream.is_empty() && !tag.is_empty() => Ok((namespace.unwrap_or(default_namespace), name, stream)),
        _ => bail!("{typed:?} must be [NS/]STREAM:TAG"),
    }
}

fn tag_path(namespace: &str, name: &str, action: &str) -> String {
    format!("{BERTH_API}/namespaces/{namespace}/imagestreamtags/{name}/{action}")
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The tag, `[NS/]STREAM:TAG`.
    #[arg(value_name = "STREAM:TAG")]
    tag: String,
    /// The revision (1 is the tag's first image) or image digest to compare from; by
    /// default the one before REV2.
    #[arg(value_name = "REV1")]
    from: Option<String>,
    /// The revision or image digest to compare to; by default the tag's current image.
    #[arg(value_name = "REV2")]
    to: Option<String>,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

pub fn diff(ctx: &Context, args: DiffArgs) -> anyhow::Result<()> {
    let default_namespace = ctx.namespace();
    let (namespace, name, _) = stream_tag(&args.tag, &default_namespace)?;
    let client = ctx.client()?;
    // One revision named: it against the current image.
    let mut query = Vec::new();
    if let Some(from) = &args.from {
        query.push(("from", from.clone()));
    }
    if let Some(to) = &args.to {
        query.push(("to", to.clone()));
    }
    let value = client.get(&tag_path(namespace, name, "contractdiff"), &query)?;
    if let Some(format) = args.output {
        return format.print(&value);
    }
    let diff: ContractDiff = serde_json::from_value(value).context("the server sent a contract diff berth cannot read")?;
    print!("{}", diff_text(&diff));
    Ok(())
}

fn side(side: &berth_model::contract::DiffSide) -> String {
    let short = side.image.get(..19).unwrap_or(&side.image);
    match side.revision {
        Some(revision) => format!("revision {revision} ({short})"),
        None => short.to_string(),
    }
}

/// The table of judged changes, and the verdict.
fn changes_text(changes: &ContractChanges) -> String {
    if changes.changes.is_empty() {
        return "No change to the contract.\n".to_string();
    }
    let mut rows = vec![["VERDICT", "FIELD", "KEY", "CHANGE", "FROM", "TO", "REASON"].map(str::to_string).to_vec()];
    for change in &changes.changes {
        let verdict = match change.verdict {
            Verdict::Compatible => "compatible",
            Verdict::Breaking => "BREAKING",
        };
        rows.push(vec![
            verdict.to_string(),
            change.field.clone(),
            change.key.clone(),
            format!("{:?}", change.change).to_lowercase(),
            change.from.clone().unwrap_or_default(),
            change.to.clone().unwrap_or_default(),
            change.reason.clone(),
        ]);
    }
    let mut out = output::render_rows(&rows).join("\n");
    out.push('\n');
    let breaking = changes.changes.iter().filter(|c| c.verdict == Verdict::Breaking).count();
    match changes.verdict {
        Verdict::Breaking => writeln!(out, "\nBreaking: {breaking} of {} changes can break whoever runs the image.", changes.changes.len()),
        Verdict::Compatible => writeln!(out, "\nCompatible: none of the {} changes breaks the contract.", changes.changes.len()),
    }
    .expect("strings take writes");
    out
}

pub fn diff_text(diff: &ContractDiff) -> String {
    let mut out = format!("{}/{}: {} → {}\n\n", diff.metadata.namespace, diff.metadata.name, side(&diff.from), side(&diff.to));
    out.push_str(&changes_text(&ContractChanges { verdict: diff.verdict, changes: diff.changes.clone() }));
    out
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").args(["to_revision", "to"]))]
pub struct RollbackArgs {
    /// The tag, `[NS/]STREAM:TAG`.
    #[arg(value_name = "STREAM:TAG")]
    tag: String,
    /// The revision of the tag's history to go back to (1 is its first image; `berth
    /// describe is STREAM` lists them). By default the image before the current one.
    #[arg(long, value_name = "N")]
    to_revision: Option<usize>,
    /// The image of the tag's history to go back to, by digest or a unique prefix.
    #[arg(long, value_name = "IMAGE")]
    to: Option<String>,
}

pub fn rollback(ctx: &Context, args: RollbackArgs) -> anyhow::Result<()> {
    let default_namespace = ctx.namespace();
    let (namespace, name, _) = stream_tag(&args.tag, &default_namespace)?;
    let mut body = json!({"kind": "TagRollback", "apiVersion": "berth.dev/v1"});
    if let Some(revision) = args.to_revision {
        body["revision"] = json!(revision);
    }
    if let Some(image) = &args.to {
        body["image"] = json!(image);
    }
    let istag: ImageStreamTag = serde_json::from_value(ctx.client()?.post(&tag_path(namespace, name, "rollback"), &body)?)
        .context("the server sent an image stream tag berth cannot read")?;
    let image = istag.image.as_ref().map(|i| i.metadata.name.as_str()).unwrap_or("<none>");
    println!("{namespace}/{name} rolled back to {image}.");
    if let Some(why) = istag.tag.as_ref().and_then(berth_model::tags::paused) {
        println!("Imports of {name} are paused ({why}): `berth tag --resume {name}` imports upstream's image again.");
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum GenerateCommand {
    /// Print a Deployment (and a Service for its exposed ports) that runs a tag's image
    /// as its contract says, or check a running Deployment against the tag.
    Deployment(DeploymentArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeploymentArgs {
    /// The tag, `[NS/]STREAM:TAG`.
    #[arg(value_name = "STREAM:TAG")]
    tag: String,
    /// The name of the Deployment, Service and container (default: the stream's).
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Read a Deployment (YAML or JSON; `kubectl get deploy NAME -o yaml`) and say
    /// whether the tag's current image still fits its pod template. Exits 1 when not.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "replicas"])]
    check: Option<std::path::PathBuf>,
}

pub fn generate(ctx: &Context, command: GenerateCommand) -> anyhow::Result<()> {
    let GenerateCommand::Deployment(args) = command;
    let default_namespace = ctx.namespace();
    let (namespace, name, stream) = stream_tag(&args.tag, &default_namespace)?;
    let istag: ImageStreamTag = serde_json::from_value(ctx.client()?.get(&kinds::IMAGE_STREAM_TAG.object(namespace, name), &[])?)
        .context("the server sent an image stream tag berth cannot read")?;
    let (Some(image), Some(contract)) = (istag.image.as_ref(), istag.contract.as_ref()) else {
        bail!("{namespace}/{name} has no image yet: import or push one first");
    };
    if let Some(file) = &args.check {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let (fits, report) = check_text(&text, stream, &format!("{namespace}/{name}"), &contract.effective)?;
        print!("{report}");
        return if fits { Ok(()) } else { Err(Reported.into()) };
    }
    let pull_spec = by_digest(&image.docker_image_reference, &image.metadata.name);
    let name_of = args.name.clone().unwrap_or_else(|| stream.to_string());
    let source = format!("{namespace}/{name}");
    print!(
        "{}",
        deployment_text(&Template {
            name: &name_of,
            replicas: args.replicas,
            image: &pull_spec,
            source: &source,
            contract: &contract.effective
        })?
    );
    Ok(())
}

/// The tag's pull spec by digest: `registry/repository@sha256:...`.
fn by_digest(pull_spec: &str, digest: &str) -> String {
    match (ImageReference::parse(pull_spec), digest.parse()) {
        (Ok(reference), Ok(digest)) => reference.with_digest(&digest).to_string(),
        _ => pull_spec.to_string(),
    }
}

/// The Deployment and Service as YAML documents, each image volume's emptyDir saying
/// what it is.
pub fn deployment_text(template: &Template) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut documents = vec![deployment::deployment(template)];
    documents.extend(deployment::service(template));
    for document in documents {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&document)?);
    }
    let note = "# a VOLUME of the image: emptyDir loses its data with the pod; use a PersistentVolumeClaim to keep it";
    Ok(out
        .lines()
        .map(|line| if line.trim_end().ends_with("emptyDir: {}") { format!("{line}  {note}\n") } else { format!("{line}\n") })
        .collect())
}

/// Checks the Deployment in `text` (YAML, one or more documents, or JSON) against
/// `current`: whether it fits, and the report.
pub fn check_text(text: &str, stream: &str, tag: &str, current: &Contract) -> anyhow::Result<(bool, String)> {
    let documents: Vec<Value> = {
        use serde::Deserialize as _;
        yaml_serde::Deserializer::from_str(text)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()
            .context("the file is not YAML or JSON")?
    };
    let Some(found) = documents.iter().find(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment")) else {
        bail!("the file has no Deployment: give the output of `kubectl get deployment NAME -o yaml`");
    };
    let name = found.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
    let judged = deployment::check(found, stream, current).map_err(anyhow::Error::msg)?;
    let fits = !judged.is_breaking();
    let mut out = if fits {
        format!("Deployment {name} fits the current image of {tag}.\n")
    } else {
        format!("Deployment {name} does NOT fit the current image of {tag}: roll out with care, or roll the tag back.\n")
    };
    if !judged.changes.is_empty() {
        out.push('\n');
        out.push_str(&changes_text(&judged));
    }
    Ok((fits, out))
}

/// `describe`'s contract: one row per entry, in three columns: what the image says, what
/// the overrides say, and the effective result.
pub fn contract_rows(contract: &TagContract) -> Vec<Vec<String>> {
    let (image, effective, overrides) = (&contract.image, &contract.effective, &contract.overrides);
    let mut rows = vec![["", "IMAGE", "OVERRIDE", "EFFECTIVE"].map(str::to_string).to_vec()];
    let mut row = |what: String, image: String, over: String, effective: String| {
        if !(image.is_empty() && over.is_empty() && effective.is_empty()) {
            rows.push(vec![what, image, over, effective]);
        }
    };
    let env_names: BTreeSet<&String> = image.env.keys().chain(overrides.env.keys()).collect();
    for name in env_names {
        let over = match overrides.env.get(name) {
            Some(Some(value)) => value.clone(),
            Some(None) => "(removed)".to_string(),
            None => String::new(),
        };
        row(
            format!("env {name}"),
            image.env.get(name).cloned().unwrap_or_default(),
            over,
            effective.env.get(name).cloned().unwrap_or_default(),
        );
    }
    let set_rows =
        |what: &str, image: &BTreeSet<String>, add: &BTreeSet<String>, remove: &BTreeSet<String>, effective: &BTreeSet<String>| {
            let all: BTreeSet<&String> = image.iter().chain(add).chain(remove).collect();
            all.into_iter()
                .map(|item| {
                    let over = if add.contains(item) {
                        "(added)"
                    } else if remove.contains(item) {
                        "(removed)"
                    } else {
                        ""
                    };
                    let present = |set: &BTreeSet<String>| if set.contains(item) { item.clone() } else { String::new() };
                    (what.to_string(), present(image), over.to_string(), present(effective))
                })
                .collect::<Vec<_>>()
        };
    for (what, i, o, e) in set_rows("port", &image.ports, &overrides.ports.add, &overrides.ports.remove, &effective.ports) {
        row(what, i, o, e);
    }
    for (what, i, o, e) in set_rows("volume", &image.volumes, &overrides.volumes.add, &overrides.volumes.remove, &effective.volumes) {
        row(what, i, o, e);
    }
    let label_names: BTreeSet<&String> = image.labels.keys().chain(overrides.labels.keys()).collect();
    for name in label_names {
        let over = match overrides.labels.get(name) {
            Some(Some(value)) => value.clone(),
            Some(None) => "(removed)".to_string(),
            None => String::new(),
        };
        row(
            format!("label {name}"),
            image.labels.get(name).cloned().unwrap_or_default(),
            over,
            effective.labels.get(name).cloned().unwrap_or_default(),
        );
    }
    let words = |w: &[String]| if w.is_empty() { String::new() } else { serde_json::to_string(w).expect("strings serialise") };
    let opt_words = |w: &Option<Vec<String>>| w.as_deref().map(words).unwrap_or_default();
    row("user".into(), image.user.clone(), overrides.user.clone().unwrap_or_default(), effective.user.clone());
    row("workingDir".into(), image.working_dir.clone(), overrides.working_dir.clone().unwrap_or_default(), effective.working_dir.clone());
    row("entrypoint".into(), words(&image.entrypoint), opt_words(&overrides.entrypoint), words(&effective.entrypoint));
    row("cmd".into(), words(&image.cmd), opt_words(&overrides.cmd), words(&effective.cmd));
    row("platform".into(), image.platform.clone(), String::new(), effective.platform.clone());
    let resources =
        |kind: &str, values: &BTreeMap<String, String>| values.iter().map(|(k, v)| (format!("{kind}.{k}"), v.clone())).collect::<Vec<_>>();
    for (what, value) in
        resources("requests", &overrides.resources.requests).into_iter().chain(resources("limits", &overrides.resources.limits))
    {
        row(what, String::new(), value.clone(), value);
    }
    rows
}

#[derive(Debug, clap::Args)]
pub struct OverrideArgs {
    /// `[NS/]STREAM` (every tag of the stream) or `[NS/]STREAM:TAG` (that tag, over the
    /// stream's).
    #[arg(value_name = "STREAM[:TAG]")]
    target: String,
    /// Set a variable (`NAME=VALUE`) or remove it from the image's (`NAME-`).
    #[arg(long, value_name = "NAME=VALUE|NAME-")]
    env: Vec<String>,
    /// Expose a port (`8443/tcp`) or stop exposing one (`8080/tcp-`).
    #[arg(long, value_name = "PORT|PORT-")]
    port: Vec<String>,
    /// Add a volume (`/cache`) or remove one of the image's (`/data-`).
    #[arg(long, value_name = "PATH|PATH-")]
    volume: Vec<String>,
    /// Set a label (`KEY=VALUE`) or remove it (`KEY-`).
    #[arg(long, value_name = "KEY=VALUE|KEY-")]
    label: Vec<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// The entrypoint as a JSON array, e.g. '["/app/run","--fast"]'.
    #[arg(long, value_name = "JSON")]
    entrypoint: Option<String>,
    /// The default arguments (the image's Cmd) as a JSON array.
    #[arg(long, value_name = "JSON")]
    cmd: Option<String>,
    /// A resource request, `cpu=250m` or `memory=128Mi`.
    #[arg(long, value_name = "NAME=QUANTITY")]
    request: Vec<String>,
    /// A resource limit, `cpu=1` or `memory=512Mi`.
    #[arg(long, value_name = "NAME=QUANTITY")]
    limit: Vec<String>,
    /// Drop every override first (then apply the flags given, if any).
    #[arg(long)]
    clear: bool,
}

/// `NAME=VALUE` → set, `NAME-` → remove.
fn setting(typed: &str, what: &str) -> anyhow::Result<(String, Option<String>)> {
    if let Some((name, value)) = typed.split_once('=') {
        return Ok((name.to_string(), Some(value.to_string())));
    }
    match typed.strip_suffix('-') {
        Some(name) if !name.is_empty() => Ok((name.to_string(), None)),
        _ => bail!("--{what} {typed:?} must be NAME=VALUE to set or NAME- to remove"),
    }
}

fn words(typed: &str, what: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_str(typed).with_context(|| format!("--{what} takes a JSON array of strings, e.g. '[\"/app/run\",\"--fast\"]'"))
}

/// The overrides with the flags applied.
fn edited(mut overrides: berth_model::contract::Overrides, args: &OverrideArgs) -> anyhow::Result<berth_model::contract::Overrides> {
    if args.clear {
        overrides = berth_model::contract::Overrides::default();
    }
    for typed in &args.env {
        let (name, value) = setting(typed, "env")?;
        overrides.env.insert(name, value);
    }
    for typed in &args.label {
        let (name, value) = setting(typed, "label")?;
        overrides.labels.insert(name, value);
    }
    for (values, set) in [(&args.port, &mut overrides.ports), (&args.volume, &mut overrides.volumes)] {
        for typed in values {
            match typed.strip_suffix('-') {
                Some(item) => {
                    set.add.remove(item);
                    set.remove.insert(item.to_string());
                }
                None => {
                    set.remove.remove(typed.as_str());
                    set.add.insert(typed.clone());
                }
            }
        }
    }
    if let Some(user) = &args.user {
        overrides.user = Some(user.clone());
    }
    if let Some(dir) = &args.workdir {
        overrides.working_dir = Some(dir.clone());
    }
    if let Some(entrypoint) = &args.entrypoint {
        overrides.entrypoint = Some(words(entrypoint, "entrypoint")?);
    }
    if let Some(cmd) = &args.cmd {
        overrides.cmd = Some(words(cmd, "cmd")?);
    }
    for (values, map, what) in
        [(&args.request, &mut overrides.resources.requests, "request"), (&args.limit, &mut overrides.resources.limits, "limit")]
    {
        for typed in values {
            let Some((name, quantity)) = typed.split_once('=') else {
                bail!("--{what} {typed:?} must be cpu=QUANTITY or memory=QUANTITY");
            };
            map.insert(name.to_string(), quantity.to_string());
        }
    }
    Ok(overrides)
}

/// `berth override`: changes the `berth.dev/overrides` annotation of a stream or one of
/// its spec tags (read, edit, write back with the resourceVersion read, so a concurrent
/// change is a conflict, not a loss). The server checks the result.
pub fn override_metadata(ctx: &Context, args: OverrideArgs) -> anyhow::Result<()> {
    use berth_model::contract::{OVERRIDES_ANNOTATION, Overrides};
    let default_namespace = ctx.namespace();
    let (namespace, rest) = split_namespace(&args.target);
    let namespace = namespace.unwrap_or(&default_namespace);
    let (stream, tag) = match rest.split_once(':') {
        Some((stream, tag)) if !stream.is_empty() && !tag.is_empty() => (stream, Some(tag)),
        None if !rest.is_empty() => (rest, None),
        _ => bail!("{:?} must be [NS/]STREAM or [NS/]STREAM:TAG", args.target),
    };
    let client = ctx.client()?;
    let path = kinds::IMAGE_STREAM.object(namespace, stream);
    let mut value = client.get(&path, &[])?;
    let annotations = match tag {
        None => &mut value["metadata"]["annotations"],
        Some(tag) => {
            if !value["spec"]["tags"].is_array() {
                value["spec"]["tags"] = json!([]);
            }
            let tags = value["spec"]["tags"].as_array_mut().expect("made an array above");
            let index = match tags.iter().position(|t| t["name"] == tag) {
                Some(index) => index,
                // A pushed tag has no spec tag: one with a name only carries its overrides.
                None => {
                    tags.push(json!({"name": tag}));
                    tags.len() - 1
                }
            };
            &mut tags[index]["annotations"]
        }
    };
    if !annotations.is_object() {
        *annotations = json!({});
    }
    let current = match annotations.get(OVERRIDES_ANNOTATION).and_then(Value::as_str) {
        Some(text) => Overrides::parse(text, OVERRIDES_ANNOTATION).unwrap_or_default(),
        None => Overrides::default(),
    };
    let overrides = edited(current, &args)?;
    let map = annotations.as_object_mut().expect("made an object above");
    if overrides.is_empty() {
        map.remove(OVERRIDES_ANNOTATION);
    } else {
        map.insert(OVERRIDES_ANNOTATION.to_string(), json!(overrides.to_annotation()));
    }
    client.put(&path, &value)?;
    match tag {
        None => println!("Overrides of image stream {namespace}/{stream} set: {}", overrides.to_annotation()),
        Some(tag) => println!("Overrides of {namespace}/{stream}:{tag} set: {}", overrides.to_annotation()),
    }
    Ok(())
}
