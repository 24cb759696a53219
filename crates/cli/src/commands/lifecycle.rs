//! `berth adm top` (usage reports) and `berth adm prune images`, with OpenShift's columns
//! and flags.

use berth_model::quantity::format_bytes;
use serde_json::{Value, json};

use crate::commands::Context;
use crate::output::{self, DocumentFormat, text};

#[derive(Debug, clap::Subcommand)]
pub enum TopCommand {
    /// Images with the stream tags that name them, the images they are built on, the
    /// workloads admission saw running them, and their storage (`oc adm top images`).
    Images(TopArgs),
    /// Image streams with the storage of their distinct layers, their images and layers
    /// (`oc adm top imagestreams`).
    Imagestreams(TopArgs),
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Order of the rows: storage (largest first), name, images, layers or usage.
    #[arg(long, default_value = "storage", value_parser = ["storage", "name", "images", "layers", "usage"])]
    sort_by: String,
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<DocumentFormat>,
}

#[derive(Debug, clap::Subcommand)]
pub enum PruneCommand {
    /// Remove old tag history, the Images nothing refers to any longer and, for the whole
    /// cluster, the blobs no Image holds. A dry run unless --confirm: prints the plan.
    Images(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The newest revisions of each tag that stay (the current image always does).
    #[arg(long, default_value_t = 3)]
    keep_tag_revisions: usize,
    /// Revisions and Images younger than this stay.
    #[arg(long, default_value = "60m")]
    keep_younger_than: String,
    /// Prune the images larger than their namespace's LimitRange (openshift.io/Image max
    /// storage) instead; the keep flags do not apply.
    #[arg(long)]
    prune_over_size_limit: bool,
    /// Also remove Images berth imported, not only those pushed to it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    all: bool,
    /// Prune the whole cluster (a cluster admin's token), even when -n or
    /// $BERTH_NAMESPACE names a namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Carry the plan out; without it nothing changes.
    #[arg(long)]
    confirm: bool,
    /// Print the plan or result as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<DocumentFormat>,
    /// Rows of the plan printed at most (the totals count them all).
    #[arg(long, default_value_t = 50)]
    show: usize,
}

#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Remove corrupt blobs (fetching those of imported images again through
    /// pull-through) and links to blobs that are not stored.
    #[arg(long)]
    repair: bool,
    /// Hash every layer too (reads every byte of the blob store), not only configs.
    #[arg(long)]
    verify_layers: bool,
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<DocumentFormat>,
}

/// `berth adm fsck`: exits 1 when problems were found (and not all repaired).
pub fn fsck(ctx: &Context, args: FsckArgs) -> anyhow::Result<()> {
    let body =
        json!({"apiVersion": "berth.dev/v1", "kind": "StoreCheck", "spec": {"repair": args.repair, "verifyLayers": args.verify_layers}});
    let answer = ctx.client()?.post_within("/apis/berth.dev/v1/storechecks", &body, std::time::Duration::from_secs(24 * 3600))?;
    let status = &answer["status"];
    let count = |field: &str| status[field].as_u64().unwrap_or(0);
    if let Some(format) = args.output {
        format.print(&answer)?;
    } else {
        println!(
            "Checked {} images and {} blobs ({} hashed) in {:.1} s.",
            count("images"),
            count("blobsChecked"),
            count("blobsHashed"),
            status["seconds"].as_f64().unwrap_or(0.0)
        );
        let problems: Vec<Value> = status["problems"].as_array().cloned().unwrap_or_default();
        if problems.is_empty() {
            println!("No problems found.");
        } else {
            let mut rows = vec![["PROBLEM", "IMAGE", "BLOB", "REPOSITORY", "WHAT", "REPAIR"].map(String::from).to_vec()];
            for p in &problems {
                let cell = |field: &str| match text(p, field) {
                    "" => "-".to_string(),
                    value => value.to_string(),
                };
                rows.push(vec![cell("/reason"), cell("/image"), cell("/blob"), cell("/repository"), cell("/message"), cell("/repair")]);
            }
            output::print_rows(&rows);
            if status["problemsTruncated"].as_bool() == Some(true) {
                println!("... {} problems in all (-o json lists the first 1000).", count("problemCount"));
            }
            if !args.repair {
                println!("Run `berth adm fsck --repair` to remove corrupt blobs and dangling links.");
            }
        }
    }
    if count("problemCount") > count("repaired") {
        anyhow::bail!("the store has {} problems ({} repaired)", count("problemCount"), count("repaired"));
    }
    Ok(())
}

/// The namespace typed with -n, if any: reports cover what the caller may read otherwise.
fn typed_namespace(ctx: &Context) -> Option<String> {
    ctx.typed_namespaces().last().cloned()
}

pub fn top(ctx: &Context, command: TopCommand) -> anyhow::Result<()> {
    let (what, args) = match &command {
        TopCommand::Images(args) => ("images", args),
        TopCommand::Imagestreams(args) => ("imagestreams", args),
    };
    let query: Vec<(&str, String)> = typed_namespace(ctx).map(|ns| vec![("namespace", ns)]).unwrap_or_default();
    let answer = ctx.client()?.get(&format!("/apis/berth.dev/v1/top/{what}"), &query)?;
    let mut items: Vec<Value> = answer["items"].as_array().cloned().unwrap_or_default();
    let number = |item: &Value, field: &str| item[field].as_u64().unwrap_or(0);
    match args.sort_by.as_str() {
        "name" => {}
        "usage" => items.sort_by_key(|item| std::cmp::Reverse(item["usage"].as_array().map_or(0, Vec::len))),
        field => items.sort_by_key(|item| std::cmp::Reverse(number(item, field))),
    }
    if let Some(format) = args.output {
        return format.print(&json!({"kind": answer["kind"], "apiVersion": answer["apiVersion"], "items": items}));
    }
    if items.is_empty() {
        eprintln!("No {what} you can see.");
        return Ok(());
    }
    let mut rows = Vec::new();
    if what == "images" {
        rows.push(["NAME", "IMAGESTREAMTAG", "PARENTS", "USAGE", "METADATA", "STORAGE"].map(String::from).to_vec());
        for item in &items {
            rows.push(vec![
                text(item, "/name").to_string(),
                list(&item["imageStreamTags"], 2),
                list(&item["parents"], 1),
                list(&item["usage"], 2),
                if item["managed"].as_bool() == Some(true) { "pushed" } else { "imported" }.to_string(),
                format_bytes(number(item, "storage")),
            ]);
        }
    } else {
        rows.push(["NAME", "STORAGE", "IMAGES", "LAYERS"].map(String::from).to_vec());
        for item in &items {
            rows.push(vec![
                format!("{}/{}", text(item, "/namespace"), text(item, "/name")),
                format_bytes(number(item, "storage")),
                number(item, "images").to_string(),
                number(item, "layers").to_string(),
            ]);
        }
    }
    output::print_rows(&rows);
    Ok(())
}

/// The first `shown` entries of a list, and how many more.
fn list(value: &Value, shown: usize) -> String {
    let items: Vec<&str> = value.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if items.is_empty() {
        return "<none>".to_string();
    }
    let mut text = items.iter().take(shown).copied().collect::<Vec<_>>().join(", ");
    if items.len() > shown {
        text.push_str(&format!(" + {} more", items.len() - shown));
    }
    text
}

pub fn prune(ctx: &Context, command: PruneCommand) -> anyhow::Result<()> {
    let PruneCommand::Images(args) = command;
    let namespace = if args.all_namespaces { String::new() } else { typed_namespace(ctx).unwrap_or_default() };
    let body = json!({
        "apiVersion": "berth.dev/v1",
        "kind": "ImagePrune",
        "spec": {
            "keepTagRevisions": args.keep_tag_revisions,
            "keepYoungerThan": args.keep_younger_than,
            "pruneOverSizeLimit": args.prune_over_size_limit,
            "all": args.all,
            "namespace": namespace,
        },
    });
    let query: Vec<(&str, String)> = if args.confirm { Vec::new() } else { vec![("dryRun", "All".to_string())] };
    // A confirmed prune of a large store sweeps many blobs: give it time.
    let answer = ctx.client()?.post_query_within("/apis/berth.dev/v1/imageprunes", &query, &body, std::time::Duration::from_secs(3600))?;
    if let Some(format) = args.output {
        return format.print(&answer);
    }
    print!("{}", render_prune(&answer, args.show));
    Ok(())
}

/// The plan (or result) of a prune as people read it.
pub fn render_prune(answer: &Value, show: usize) -> String {
    let status = &answer["status"];
    let plan = &status["plan"];
    let dry_run = status["dryRun"].as_bool() == Some(true);
    let scope = match text(answer, "/spec/namespace") {
        "" => "the whole cluster".to_string(),
        ns => format!("namespace {ns}"),
    };
    let mut out = String::new();
    let revisions = plan["revisions"].as_array().cloned().unwrap_or_default();
    let images = plan["images"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "{} of {scope}: {} tag revisions and {} images{}, freeing {} of layers only they hold.\n",
        if dry_run { "Dry run" } else { "Pruned" },
        revisions.len(),
        images.len(),
        if dry_run { " would go" } else { " planned" },
        format_bytes(plan["freedBytes"].as_u64().unwrap_or(0)),
    ));
    if !revisions.is_empty() {
        out.push_str("\nTag revisions:\n");
        let mut rows = vec![["NAMESPACE", "STREAM:TAG", "REVISION", "IMAGE", "CREATED", "WHY"].map(String::from).to_vec()];
        for r in revisions.iter().take(show) {
            rows.push(vec![
                text(r, "/namespace").to_string(),
                format!("{}:{}", text(r, "/stream"), text(r, "/tag")),
                r["revision"].as_u64().unwrap_or(0).to_string(),
                short(text(r, "/image")),
                text(r, "/created").to_string(),
                text(r, "/reason").to_string(),
            ]);
        }
        out.push_str(&indent(&rows));
        if revisions.len() > show {
            out.push_str(&format!("  ... and {} more (--show N, or -o json for all)\n", revisions.len() - show));
        }
    }
    if !images.is_empty() {
        out.push_str("\nImages:\n");
        let mut rows = vec![["IMAGE", "SIZE", "CREATED"].map(String::from).to_vec()];
        for i in images.iter().take(show) {
            rows.push(vec![text(i, "/name").to_string(), format_bytes(i["size"].as_u64().unwrap_or(0)), text(i, "/created").to_string()]);
        }
        out.push_str(&indent(&rows));
        if images.len() > show {
            out.push_str(&format!("  ... and {} more\n", images.len() - show));
        }
    }
    let kept = &plan["kept"];
    let count = |field: &str| kept[field].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "\nKept: {} current, {} among the newest revisions, {} younger than {}, {} in use, {} within the size limit; \
         Images: {} still referred to, {} in kept manifest lists, {} imported (not pruned without --all).\n",
        count("current"),
        count("recentRevisions"),
        count("young"),
        text(answer, "/spec/keepYoungerThan"),
        count("inUse"),
        count("withinLimit"),
        count("referenced"),
        count("listChildren"),
        count("notManaged"),
    ));
    if dry_run {
        out.push_str("Nothing was changed. Run again with --confirm to prune.\n");
    } else {
        out.push_str(&format!(
            "Removed {} tag revisions and {} images.\n",
            status["removedRevisions"].as_u64().unwrap_or(0),
            status["removedImages"].as_u64().unwrap_or(0)
        ));
        match status.get("sweep").filter(|s| s.is_object()) {
            Some(sweep) => out.push_str(&format!(
                "Blob sweep: removed {} blobs ({}); kept {} written within the grace window and {} used meanwhile; \
                 removed {} dangling links and {} abandoned uploads.\n",
                sweep["blobsRemoved"].as_u64().unwrap_or(0),
                format_bytes(sweep["bytesFreed"].as_u64().unwrap_or(0)),
                sweep["blobsYoung"].as_u64().unwrap_or(0),
                sweep["blobsUsedMeanwhile"].as_u64().unwrap_or(0),
                sweep["linksRemoved"].as_u64().unwrap_or(0),
                sweep["uploadsRemoved"].as_u64().unwrap_or(0),
            )),
            None => {
                out.push_str("Blobs are swept by a cluster-wide prune (berth adm prune images -A --confirm, or the scheduled pruner).\n")
            }
        }
    }
    out
}

fn short(digest: &str) -> String {
    digest.get(..19).unwrap_or(digest).to_string()
}

fn indent(rows: &[Vec<String>]) -> String {
    output::render_rows(rows).into_iter().map(|line| format!("  {line}\n")).collect()
}
