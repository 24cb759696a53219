//! `berth lineage`: what an image is built on, what is built on it, which images hold a
//! layer, as the image stream tags that point at them; `berth class`: the images of an
//! ImageClass.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use crate::commands::{Context, split_namespace};
use crate::output::{self, DocumentFormat, text};

const PATH: &str = "/apis/berth.dev/v1/lineage";

#[derive(Debug, clap::Subcommand)]
pub enum LineageCommand {
    /// The images an image is built on, nearest first.
    Ancestors(Question),
    /// The images built on an image, nearest first.
    Descendants(Question),
    /// The images that hold a layer.
    Layer(LayerArgs),
    /// An image and everything built on it, as a tree.
    Tree(Question),
    /// The stream tags to rebuild after the target of an ImageClass moved: those whose
    /// image is built on an earlier version of the class, as `dev.berth.class.updated`
    /// events name them.
    RebuildPlan(PlanArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The ImageClass.
    class: String,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClassCommand {
    /// The images built on the class's target: on its current image (`current`) or on an
    /// earlier one (`outdated`, with how many versions behind).
    Images(ClassArgs),
    /// The stream tags whose current image is of the class.
    Tags(ClassArgs),
    /// How many images, stream tags and namespaces carry the class (license tracking).
    Usage(ClassArgs),
}

#[derive(Debug, clap::Args)]
pub struct ClassArgs {
    /// The ImageClass.
    class: String,
    /// Only images built on an earlier version of the target.
    #[arg(long, conflicts_with = "current")]
    outdated: bool,
    /// Only images built on the target's current image.
    #[arg(long)]
    current: bool,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

#[derive(Debug, clap::Args)]
pub struct Question {
    /// An image digest (sha256:...), or STREAM:TAG (STREAM alone is STREAM:latest) in the
    /// namespace (-n), or NAMESPACE/STREAM:TAG.
    image: String,
    /// Ask about every image the tag has pointed at, not only its current one.
    #[arg(long)]
    all_versions: bool,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

#[derive(Debug, clap::Args)]
pub struct ImpactArgs {
    /// An image digest (sha256:...), or STREAM:TAG in the namespace (-n), or
    /// NAMESPACE/STREAM:TAG.
    image: String,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

#[derive(Debug, clap::Args)]
pub struct LayerArgs {
    /// A layer digest (sha256:...).
    layer: String,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

pub fn run(ctx: &Context, command: LineageCommand) -> anyhow::Result<()> {
    match command {
        LineageCommand::Ancestors(question) => ask(ctx, "ancestors", &question, false),
        LineageCommand::Descendants(question) => ask(ctx, "descendants", &question, false),
        LineageCommand::Tree(question) => ask(ctx, "descendants", &question, true),
        LineageCommand::RebuildPlan(plan) => {
            run_class(ctx, ClassCommand::Tags(ClassArgs { class: plan.class, outdated: true, current: false, output: plan.output }))
        }
        LineageCommand::Layer(args) => {
            let answer = ctx.client()?.get(&format!("{PATH}/layer"), &[("image", args.layer.clone())])?;
            if let Some(format) = args.output {
                return format.print(&answer);
            }
            print_table(&answer, false, "No image berth knows holds this layer.");
            Ok(())
        }
    }
}

pub fn run_class(ctx: &Context, command: ClassCommand) -> anyhow::Result<()> {
    let (args, view) = match command {
        ClassCommand::Images(args) => (args, "images"),
        ClassCommand::Tags(args) => (args, "tags"),
        ClassCommand::Usage(args) => (args, "usage"),
    };
    let mut query = Vec::new();
    if args.outdated {
        query.push(("state", "outdated".to_string()));
    } else if args.current {
        query.push(("state", "current".to_string()));
    }
    let answer = ctx.client()?.get(&format!("/apis/berth.dev/v1/imageclasses/{}/images", args.class), &query)?;
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    match view {
        "images" => {
            if let Some(format) = args.output {
                return format.print(&answer);
            }
            if items.is_empty() {
                eprintln!("No image you can see is of class {}.", args.class);
                return Ok(());
            }
            let mut rows = vec![["IMAGE", "TAGS", "STATE", "BEHIND"].map(String::from).to_vec()];
            rows.extend(
                items.iter().map(|item| vec![short(text(item, "/image")), tags(item), text(item, "/classState").to_string(), behind(item)]),
            );
            output::print_rows(&rows);
        }
        "tags" => {
            let rows_of = class_tags(&items);
            if let Some(format) = args.output {
                let list: Vec<Value> = rows_of
                    .iter()
                    .map(
                        |r| serde_json::json!({"namespace": r[0], "name": r[1], "image": r[2], "classState": r[3], "versionsBehind": r[4]}),
                    )
                    .collect();
                return format.print(&serde_json::json!({"items": list}));
            }
            if rows_of.is_empty() {
                eprintln!("No stream tag you can see points at an image of class {}.", args.class);
                return Ok(());
            }
            let mut rows = vec![["NAMESPACE", "TAG", "IMAGE", "STATE", "BEHIND"].map(String::from).to_vec()];
            rows.extend(rows_of.into_iter().map(|mut r| {
                r[2] = short(&r[2]);
                r
            }));
            output::print_rows(&rows);
        }
        _ => {
            let tag_rows = class_tags(&items);
            let namespaces: std::collections::BTreeSet<&String> = tag_rows.iter().map(|r| &r[0]).collect();
            let usage =
                serde_json::json!({"class": args.class, "images": items.len(), "tags": tag_rows.len(), "namespaces": namespaces.len()});
            if let Some(format) = args.output {
                return format.print(&usage);
            }
            println!("class {}: {} images, {} stream tags, {} namespaces", args.class, items.len(), tag_rows.len(), namespaces.len());
        }
    }
    Ok(())
}

/// `(namespace, stream:tag, image, state, behind)` for every tag whose current image is
/// one of the class's.
fn class_tags(items: &[Value]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for item in items {
        for tag in item["tags"].as_array().into_iter().flatten().filter(|t| t["current"].as_bool() == Some(true)) {
            rows.push(vec![
                text(tag, "/namespace").to_string(),
                text(tag, "/name").to_string(),
                text(item, "/image").to_string(),
                text(item, "/classState").to_string(),
                behind(item),
            ]);
        }
    }
    rows.sort();
    rows
}

fn behind(item: &Value) -> String {
    item["versionsBehind"].as_u64().unwrap_or(0).to_string()
}

/// The query parameters that name what `typed` means.
fn subject(ctx: &Context, typed: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    if typed.starts_with("sha256:") || typed.starts_with("sha512:") {
        return Ok(vec![("image", typed.to_string())]);
    }
    let (namespace, name) = split_namespace(typed);
    let namespace = namespace.map_or_else(|| ctx.namespace(), str::to_string);
    if name.is_empty() {
        bail!("{typed:?} names no image: give STREAM:TAG or an image digest (sha256:...)");
    }
    let name = if name.contains(':') { name.to_string() } else { format!("{name}:latest") };
    Ok(vec![("namespace", namespace), ("imageStreamTag", name)])
}

fn ask(ctx: &Context, relation: &str, question: &Question, tree: bool) -> anyhow::Result<()> {
    let mut query = subject(ctx, &question.image)?;
    if question.all_versions {
        query.push(("allVersions", "true".to_string()));
    }
    let answer = ctx.client()?.get(&format!("{PATH}/{relation}"), &query)?;
    if let Some(format) = question.output {
        return format.print(&answer);
    }
    if tree {
        print!("{}", render_tree(&answer));
        return Ok(());
    }
    let none = match relation {
        "ancestors" => "berth knows no image this one is built on.",
        _ => "berth knows no image built on this one.",
    };
    print_table(&answer, answer["images"].as_array().is_some_and(|a| a.len() > 1), none);
    Ok(())
}

/// `berth adm vulnerable`.
pub fn vulnerable(ctx: &Context, args: &ImpactArgs) -> anyhow::Result<()> {
    let answer = ctx.client()?.get("/apis/berth.dev/v1/imageimpact", &subject(ctx, &args.image)?)?;
    if let Some(format) = args.output {
        return format.print(&answer);
    }
    let images: Vec<&str> = answer["images"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for image in &images {
        println!("Image {image}");
        let marks = answer["marks"][image].as_object().cloned().unwrap_or_default();
        if marks.is_empty() {
            println!("  not marked");
        }
        for (key, value) in &marks {
            println!("  {key}: {}", mark_summary(value.as_str().unwrap_or("")));
        }
    }
    println!();
    let tag_rows: Vec<Vec<String>> = answer["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| vec![text(t, "/namespace").to_string(), text(t, "/name").to_string(), current(t)])
        .collect();
    section("Tags pointing at it", &["NAMESPACE", "TAG", "CURRENT"], tag_rows);
    let built_on: Vec<Vec<String>> = answer["descendants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| vec![text(item, "/image").to_string(), tags(item), text(item, "/evidence").to_string()])
        .collect();
    section("Images built on it", &["IMAGE", "TAGS", "EVIDENCE"], built_on);
    section("Workloads seen running them", WORKLOAD_HEADER, workload_rows(&answer));
    Ok(())
}

/// `berth adm who-runs`.
pub fn who_runs(ctx: &Context, args: &ImpactArgs) -> anyhow::Result<()> {
    let mut query = subject(ctx, &args.image)?;
    query.push(("allVersions", "true".to_string()));
    query.push(("descendants", "false".to_string()));
    let answer = ctx.client()?.get("/apis/berth.dev/v1/imageimpact", &query)?;
    if let Some(format) = args.output {
        return format.print(&serde_json::json!({"images": answer["images"], "items": answer["workloads"]}));
    }
    let rows = workload_rows(&answer);
    if rows.is_empty() {
        eprintln!("Admission has seen no workload you can see running {}.", args.image);
        return Ok(());
    }
    let mut table = vec![WORKLOAD_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    table.extend(rows);
    output::print_rows(&table);
    Ok(())
}

const WORKLOAD_HEADER: &[&str] = &["CLUSTER", "NAMESPACE", "KIND", "NAME", "IMAGE", "FIRST SEEN", "LAST SEEN"];

fn workload_rows(answer: &Value) -> Vec<Vec<String>> {
    answer["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            ["/cluster", "/namespace", "/kind", "/name", "/image", "/firstSeen", "/lastSeen"]
                .iter()
                .map(|field| if *field == "/image" { short(text(w, field)) } else { text(w, field).to_string() })
                .collect()
        })
        .collect()
}

/// A titled table, or the title and "none".
fn section(title: &str, header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        println!("{title}: none\n");
        return;
    }
    println!("{title} ({}):", rows.len());
    let mut table = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    table.extend(rows);
    output::print_rows(&table);
    println!();
}

fn current(tag: &Value) -> String {
    if tag["current"].as_bool() == Some(true) { "yes".to_string() } else { "no (before)".to_string() }
}

/// A quality report (OpenShift's JSON: `{name, description, reference, summary[{label,
/// data, severityIndex}]}`) in one line; any other value as it is.
fn mark_summary(value: &str) -> String {
    let Ok(report) = serde_json::from_str::<Value>(value) else { return value.to_string() };
    if !report.is_object() {
        return value.to_string();
    }
    let mut parts = vec![text(&report, "/name").to_string()];
    for item in report["summary"].as_array().into_iter().flatten() {
        parts.push(format!("{}: {}", text(item, "/label"), item["data"]));
    }
    let reference = text(&report, "/reference");
    if !reference.is_empty() {
        parts.push(reference.to_string());
    }
    parts.retain(|p| !p.is_empty());
    parts.join("; ")
}

fn print_table(answer: &Value, with_version: bool, none: &str) {
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("{none}");
        return;
    }
    let mut header = vec!["IMAGE", "TAGS", "EVIDENCE", "PLATFORM"];
    if with_version {
        header.push("OF");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for item in &items {
        let mut evidence = text(item, "/evidence").to_string();
        if item["sameLayers"].as_bool() == Some(true) {
            evidence.push_str(" (same layers)");
        }
        let mut row = vec![short(text(item, "/image")), tags(item), or_none(evidence), or_none(text(item, "/platform").to_string())];
        if with_version {
            row.push(short(text(item, "/of")));
        }
        rows.push(row);
    }
    output::print_rows(&rows);
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows image ids.
fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() { "<none>".to_string() } else { text }
}

/// The tags of an item: `ns/stream:tag` for the tags that point at it now, with
/// `(before)` for those that did earlier.
fn tags(item: &Value) -> String {
    let tags: Vec<String> = item["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    let name = format!("{}/{}", text(t, "/namespace"), text(t, "/name"));
                    if t["current"].as_bool() == Some(true) { name } else { format!("{name} (before)") }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(tags.join(", "))
}

/// The asked image and its descendants as a tree, each image under the one it is built on.
fn render_tree(answer: &Value) -> String {
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    let mut children: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for item in &items {
        children.entry(text(item, "/builtOn").to_string()).or_default().push(item);
    }
    let mut out = String::new();
    let roots: Vec<String> =
        answer["images"].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    for root in &roots {
        let label = match answer["imageStreamTag"].as_str() {
            Some(tag) if !tag.is_empty() => format!("{tag} ({})", short(root)),
            _ => short(root),
        };
        out.push_str(&label);
        out.push('\n');
        draw(&children, root, "", &mut out);
    }
    out
}

fn draw(children: &BTreeMap<String, Vec<&Value>>, parent: &str, prefix: &str, out: &mut String) {
    let Some(below) = children.get(parent) else { return };
    for (i, item) in below.iter().enumerate() {
        let last = i + 1 == below.len();
        let image = text(item, "/image");
        let mut line = format!("{prefix}{}{}", if last { "└── " } else { "├── " }, tags(item));
        line.push_str(&format!(" ({})", short(image)));
        let evidence = text(item, "/evidence");
        if evidence != "Layers" && !evidence.is_empty() {
            line.push_str(&format!(" [{}]", evidence.to_lowercase()));
        }
        let platform = text(item, "/platform");
        if !platform.is_empty() {
            line.push_str(&format!(" [{platform}]"));
        }
        out.push_str(&line);
        out.push('\n');
        draw(children, image, &format!("{prefix}{}", if last { "    " } else { "│   " }), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tree_puts_each_image_under_the_one_it_is_built_on() {
        let base = format!("sha256:{}", "b".repeat(64));
        let app = format!("sha256:{}", "a".repeat(64));
        let child = format!("sha256:{}", "c".repeat(64));
        let squashed = format!("sha256:{}", "d".repeat(64));
        let answer = json!({
            "images": [base], "imageStreamTag": "lib/base:1",
            "items": [
                {"image": app, "evidence": "Layers", "builtOn": base, "tags": [{"namespace": "team", "name": "app:1", "current": true}]},
                {"image": child, "evidence": "Layers", "builtOn": app, "tags": [{"namespace": "team", "name": "child:1", "current": false}]},
                {"image": squashed, "evidence": "Annotation", "builtOn": base, "tags": []},
            ]
        });
        assert_eq!(
            render_tree(&answer),
            "lib/base:1 (sha256:bbbbbbbbbbbb)\n\
             ├── team/app:1 (sha256:aaaaaaaaaaaa)\n\
             │   └── team/child:1 (before) (sha256:cccccccccccc)\n\
             └── <none> (sha256:dddddddddddd) [annotation]\n"
        );
    }
}
