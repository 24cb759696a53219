//! `berth get KIND [NAME]`: tables, `-o wide|json|yaml|name`, label selectors and
//! watches, as kubectl prints them.

use anyhow::bail;
use serde_json::Value;

use crate::client::{ApiError, Client};
use crate::commands::Context;
use crate::kinds::{self, Kind};
use crate::output::{self, Format, Table, array, text};

#[derive(Debug, Default, clap::Args)]
pub struct GetArgs {
    /// The kind: imagestreams (is), imagestreamtags (istag), imagetags (itag),
    /// imagestreamimages (isimage), images, namespaces (ns), secrets, tokens,
    /// subscriptions (sub), scheduledimports (si).
    pub kind: String,
    /// The object to show (`STREAM:TAG` for a scheduled import); every object of the kind
    /// when left out.
    pub name: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print wide tables, the server's JSON or YAML, or `kind/name` only.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Only objects whose labels match, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// After printing, keep printing changes as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

pub fn run(ctx: &Context, args: GetArgs) -> anyhow::Result<()> {
    let kind = kinds::lookup(&args.kind)?;
    if !kind.get && !kind.list {
        bail!("{} cannot be read back: they are only created, with `berth apply`", kind.plural);
    }
    if args.selector.is_some() && !kind.metadata {
        bail!("{} have no labels to select on: leave out -l", kind.plural);
    }
    let namespace = scope(ctx, kind, &args)?;
    let client = ctx.client()?;
    let mut printer = Printer::new(kind, args.output, args.all_namespaces, namespace.clone());
    if args.watch {
        return watch(&client, &mut printer, namespace.as_deref(), &args);
    }
    match &args.name {
        Some(name) if !kind.get => printer.print_object(&find_in_list(&client, kind, namespace.as_deref(), name)?),
        Some(name) => printer.print_object(&client.get(&kind.object(namespace.as_deref().unwrap_or_default(), name), &[])?),
        None => {
            if !kind.list {
                bail!("{} cannot be listed: get one by name", kind.plural);
            }
            printer.print_list(&client.get(&kind.collection(namespace.as_deref()), &query(&args))?)
        }
    }
}

/// One item of a kind the server only lists (scheduled imports have no URL each): the
/// list's item of that name, or NotFound as the server says it of objects.
fn find_in_list(client: &Client, kind: &Kind, namespace: Option<&str>, name: &str) -> anyhow::Result<Value> {
    let list = client.get(&kind.collection(namespace), &[])?;
    match array(&list, "/items").iter().find(|item| output::item_name(kind, item) == name) {
        Some(item) => Ok(item.clone()),
        None => Err(ApiError {
            code: 404,
            reason: "NotFound".to_string(),
            message: format!("{}.{} {name:?} not found", kind.plural, kind.group),
            causes: Vec::new(),
        }
        .into()),
    }
}

/// The namespace to read in; `None` for cluster-scoped kinds and for `-A`.
fn scope(ctx: &Context, kind: &Kind, args: &GetArgs) -> anyhow::Result<Option<String>> {
    if !kind.namespaced {
        return Ok(None);
    }
    if !args.all_namespaces {
        return Ok(Some(ctx.namespace()));
    }
    if args.name.is_some() {
        bail!("an object cannot be read by name across all namespaces: drop -A and name its namespace with -n");
    }
    if !kind.all_namespaces {
        bail!("the server cannot list {} across all namespaces: name a namespace with -n", kind.plural);
    }
    Ok(None)
}

fn query(args: &GetArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(selector) = &args.selector {
        query.push(("labelSelector", selector.clone()));
    }
    if let Some(name) = &args.name {
        query.push(("fieldSelector", format!("metadata.name={name}")));
    }
    query
}

/// Lists once, prints what is there, then watches from the list's revision, so that no
/// change between the two is missed or shown twice.
fn watch(client: &Client, printer: &mut Printer, namespace: Option<&str>, args: &GetArgs) -> anyhow::Result<()> {
    let kind = printer.kind;
    if !kind.watch && kind.group == kinds::IMAGE_GROUP {
        bail!("the server cannot watch {}: watch imagestreams instead, which carry every tag", kind.plural);
    }
    if !kind.watch {
        bail!("the server cannot watch {}: list them again instead", kind.plural);
    }
    let path = kind.collection(namespace);
    let mut query = query(args);
    let list = client.get(&path, &query)?;
    let items = array(&list, "/items");
    if items.is_empty() {
        printer.say_none_found();
    }
    for item in items {
        printer.print_event(item)?;
    }
    query.push(("resourceVersion", text(&list, "/metadata/resourceVersion").to_string()));
    client.watch(&path, &query, |object| printer.print_event(object))
}

/// Prints objects, lists and watch events of one kind in the chosen format.
struct Printer {
    kind: &'static Kind,
    format: Option<Format>,
    table: Table,
    /// The namespace read, for "No resources found in NS namespace."
    namespace: Option<String>,
}

impl Printer {
    fn new(kind: &'static Kind, format: Option<Format>, all_namespaces: bool, namespace: Option<String>) -> Printer {
        Printer { kind, format, table: Table::new(kind, format == Some(Format::Wide), all_namespaces), namespace }
    }

    fn print_object(&mut self, object: &Value) -> anyhow::Result<()> {
        match self.format {
            Some(Format::Json) => output::print_json(object),
            Some(Format::Yaml) => output::print_yaml(object),
            Some(Format::Name) => {
                println!("{}", output::qualified_name(self.kind, object));
                Ok(())
            }
            None | Some(Format::Wide) => {
                self.table.print(std::slice::from_ref(object));
                self.print_contract(object);
                Ok(())
            }
        }
    }

    /// Under one image stream tag, its contract in three columns: the image's defaults,
    /// the overrides, the effective result.
    fn print_contract(&self, object: &Value) {
        if self.kind.kind != kinds::IMAGE_STREAM_TAG.kind {
            return;
        }
        let contract = object.get("contract").and_then(|c| serde_json::from_value::<berth_model::contract::TagContract>(c.clone()).ok());
        if let Some(contract) = contract {
            println!();
            output::print_rows(&crate::commands::contract::contract_rows(&contract));
        }
    }

    /// JSON and YAML print the list as the server sent it; the others print its items.
    fn print_list(&mut self, list: &Value) -> anyhow::Result<()> {
        let items = array(list, "/items");
        match self.format {
            Some(Format::Json) => return output::print_json(list),
            Some(Format::Yaml) => return output::print_yaml(list),
            _ if items.is_empty() => self.say_none_found(),
            Some(Format::Name) => items.iter().for_each(|item| println!("{}", output::qualified_name(self.kind, item))),
            None | Some(Format::Wide) => self.table.print(items),
        }
        Ok(())
    }

    /// One object of a watch: a table row, or one document per object.
    fn print_event(&mut self, object: &Value) -> anyhow::Result<()> {
        match self.format {
            Some(Format::Yaml) => {
                println!("---");
                self.print_object(object)
            }
            None | Some(Format::Wide) => {
                self.table.print_row(object);
                Ok(())
            }
            _ => self.print_object(object),
        }
    }

    fn say_none_found(&self) {
        match &self.namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
    }
}
