//! `berth apply -f FILE`: creates or replaces every object in a JSON or YAML file.
//!
//! All documents are checked before any is sent, so a file with one malformed object
//! changes nothing. Objects of kinds berth does not serve (the BuildConfigs, Services and
//! DeploymentConfigs of an OpenShift template, say) are skipped, each named in a warning;
//! `--strict` refuses the file instead. Each object is then read from the server and
//! created when absent or replaced (with the server's resourceVersion as precondition)
//! when present.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::client::Client;
use crate::commands::Context;
use crate::kinds::{self, Apply, Kind};
use crate::output::{self, Reported, text};

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The file to apply, JSON or YAML (several YAML documents may be separated by
    /// `---`); `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    filename: PathBuf,
    /// Refuse the whole file when it holds an object of a kind berth does not serve,
    /// instead of skipping such objects.
    #[arg(long)]
    strict: bool,
}

/// One object to apply, checked.
struct Document {
    kind: &'static Kind,
    namespace: String,
    name: String,
    object: Value,
}

pub fn run(ctx: &Context, args: ApplyArgs) -> anyhow::Result<()> {
    let text = read_input(&args.filename)?;
    let documents = check_all(parse(&text)?, &ctx.namespace(), args.strict)?;
    let client = ctx.client()?;
    let mut failed = 0;
    // Like kubectl, one failure does not stop the rest; each is reported as it happens.
    for document in &documents {
        match apply(&client, document) {
            Ok(outcome) => println!("{}/{} {outcome}", document.kind.qualified(), document.name),
            Err(err) => {
                output::print_error(&err);
                failed += 1;
            }
        }
    }
    if failed > 0 { Err(Reported.into()) } else { Ok(()) }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The documents of a file, each with where it came from (`document 2`, or
/// `document 1, item 3` for the items of a `kind: List`).
fn parse(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let trimmed = text.trim_start();
    let documents: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::Deserializer::from_str(text).into_iter::<Value>().collect::<Result<_, _>>().context("the input is not valid JSON")?
    } else {
        yaml_serde::Deserializer::from_str(text).map(Value::deserialize).collect::<Result<_, _>>().context("the input is not valid YAML")?
    };
    let mut out = Vec::new();
    for (index, document) in documents.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let origin = format!("document {}", index + 1);
        match list_items(document) {
            Ok(items) => out.extend(items.into_iter().enumerate().map(|(item, value)| (format!("{origin}, item {}", item + 1), value))),
            Err(document) => out.push((origin, document)),
        }
    }
    Ok(out)
}

/// The items of a `kind: List` (or any `...List` with items, or a JSON array), or the
/// document itself back when it is a single object.
fn list_items(document: Value) -> Result<Vec<Value>, Value> {
    match document {
        Value::Array(items) => Ok(items),
        Value::Object(mut fields)
            if fields.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) && fields.contains_key("items") =>
        {
            match fields.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Ok(Vec::new()),
            }
        }
        other => Err(other),
    }
}

/// Checks every document, reporting every problem at once. Objects of other kinds are
/// skipped with a warning each, or refused with `strict`.
fn check_all(documents: Vec<(String, Value)>, namespace: &str, strict: bool) -> anyhow::Result<Vec<Document>> {
    if documents.is_empty() {
        bail!("no objects to apply: the input is empty");
    }
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    for (origin, object) in documents {
        match check(object, namespace) {
            Ok(Checked::Document(document)) => checked.push(document),
            Ok(Checked::OtherKind(what)) if !strict => skipped.push(format!("{what} ({origin})")),
            Ok(Checked::OtherKind(what)) => {
                problems.push(format!("{origin}: {what} is not a kind berth serves (--strict): berth applies {}", kinds::applicable()))
            }
            Err(problem) => problems.push(format!("{origin}: {problem}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}\nnothing was applied", problems.join("\n"));
    }
    for what in &skipped {
        eprintln!("Warning: skipped {what}: berth does not serve that kind; apply it to the cluster with kubectl or oc");
    }
    if checked.is_empty() {
        bail!("no objects of a kind berth serves in the input: berth applies {}", kinds::applicable());
    }
    Ok(checked)
}

/// A checked object: one to apply, or one of a kind berth does not serve (named).
enum Checked {
    Document(Document),
    OtherKind(String),
}

fn check(mut object: Value, default_namespace: &str) -> Result<Checked, String> {
    if !object.is_object() {
        return Err("is not an object: each document must be one Kubernetes-style object with kind, apiVersion and metadata".to_string());
    }
    let (kind_name, api_version) = (text(&object, "/kind").to_string(), text(&object, "/apiVersion").to_string());
    let Some(kind) = kinds::for_document(&kind_name, &api_version) else {
        let name = text(&object, "/metadata/name");
        return Ok(Checked::OtherKind(format!("{kind_name} {name:?} ({api_version})")));
    };
    if kind.apply == Apply::Never {
        return Err(format!("{kind_name} is a read-only view and cannot be applied: berth applies {}", kinds::applicable()));
    }
    let name = text(&object, "/metadata/name").to_string();
    if name.is_empty() {
        return Err(format!("the {kind_name} has no metadata.name"));
    }
    let namespace = Some(text(&object, "/metadata/namespace")).filter(|ns| !ns.is_empty()).unwrap_or(default_namespace).to_string();
    // The server takes only the canonical apiVersion; OpenShift 3's `v1` is rewritten.
    object["apiVersion"] = Value::String(kind.api_version());
    // Status is the server's: sending one back would at best be ignored.
    if let Some(fields) = object.as_object_mut() {
        fields.remove("status");
    }
    Ok(Checked::Document(Document { kind, namespace, name, object }))
}

fn apply(client: &Client, document: &Document) -> anyhow::Result<&'static str> {
    let Document { kind, namespace, name, object } = document;
    let collection = kind.collection(Some(namespace));
    let path = kind.object(namespace, name);
    if kind.apply == Apply::Action {
        client.post(&collection, object)?;
        return Ok("created");
    }
    let Some(current) = client.get_optional(&path)? else {
        let created = client.post(&collection, object)?;
        announce_token(kind, &created);
        return Ok("created");
    };
    if kind.apply == Apply::CreateOnly {
        return unchanged_token(&current, object, name);
    }
    let mut replacement = object.clone();
    if let Some(version) = current.pointer("/metadata/resourceVersion") {
        replacement["metadata"]["resourceVersion"] = version.clone();
    }
    let updated = client.put(&path, &replacement)?;
    Ok(if unchanged(&current, &updated) { "unchanged" } else { "configured" })
}

/// Whether an update changed nothing: the same resourceVersion, or (as berth records
/// even an identical write as a new revision) the same object apart from it.
fn unchanged(before: &Value, after: &Value) -> bool {
    let version = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
    if version(before) == version(after) {
        return true;
    }
    let without_version = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    without_version(before) == without_version(after)
}

/// A new token's bearer token is in the create response only: show it once, on stderr
/// so that the apply output stays a list of objects.
fn announce_token(kind: &Kind, created: &Value) {
    let token = text(created, "/status/token");
    if kind.kind == kinds::TOKEN.kind && !token.is_empty() {
        eprintln!(
            "token {:?}: {token}\n(this is the only time the token is shown: keep it somewhere safe)",
            text(created, "/metadata/name")
        );
    }
}

/// Tokens cannot be changed: applying an identical spec again is fine, a different
/// one needs the token revoked and created anew.
fn unchanged_token(current: &Value, wanted: &Value, name: &str) -> anyhow::Result<&'static str> {
    let spec = |v: &Value| v.get("spec").cloned().map(serde_json::from_value::<berth_model::core::TokenSpec>);
    match (spec(current), spec(wanted)) {
        (Some(Ok(have)), Some(Ok(want))) if have == want => Ok("unchanged"),
        _ => bail!(
            "token {name:?} already exists with a different spec, and tokens cannot be changed: revoke it with `berth token revoke {name}` and apply again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_documents_and_lists_are_expanded() {
        let text = "---\nkind: List\napiVersion: v1\nitems:\n- kind: Namespace\n  apiVersion: v1\n  metadata: {name: a}\n- kind: Namespace\n  apiVersion: v1\n  metadata: {name: b}\n---\nkind: Namespace\napiVersion: v1\nmetadata: {name: c}\n";
        let docs = parse(text).unwrap();
        let origins: Vec<&str> = docs.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(origins, ["document 1, item 1", "document 1, item 2", "document 2"]);
        assert_eq!(text_of(&docs[2].1), "c");
    }

    fn text_of(v: &Value) -> &str {
        text(v, "/metadata/name")
    }

    #[test]
    fn json_input_is_read_as_json() {
        let docs = parse(r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"a"}}"#).unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn other_kinds_are_skipped_or_with_strict_fail_the_whole_file() {
        let docs = || {
            vec![
                ("document 1".to_string(), json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "a"}})),
                ("document 2".to_string(), json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}})),
            ]
        };
        let applied = check_all(docs(), "default", false).unwrap();
        assert_eq!(applied.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a"]);
        let err = check_all(docs(), "default", true).err().unwrap().to_string();
        assert!(err.starts_with("document 2: Pod \"p\" (v1) is not a kind berth serves"), "{err}");
        assert!(err.contains("ImageStream (image.openshift.io/v1)") && err.ends_with("nothing was applied"), "{err}");
        let only_others = vec![("document 1".to_string(), json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}))];
        assert!(check_all(only_others, "default", false).err().unwrap().to_string().starts_with("no objects of a kind berth serves"));
    }

    #[test]
    fn legacy_image_api_versions_are_rewritten_and_status_dropped() {
        let Ok(Checked::Document(doc)) =
            check(json!({"kind": "ImageStream", "apiVersion": "v1", "metadata": {"name": "ruby"}, "status": {"tags": []}}), "team")
        else {
            panic!("an image stream to apply")
        };
        assert_eq!(doc.object, json!({"kind": "ImageStream", "apiVersion": "image.openshift.io/v1", "metadata": {"name": "ruby"}}));
        assert_eq!(doc.namespace, "team");
    }

    #[test]
    fn an_identical_object_is_unchanged_whatever_its_version() {
        let before = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}});
        let same = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 1}});
        let changed = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 2}});
        assert!(unchanged(&before, &same));
        assert!(!unchanged(&before, &changed));
    }
}
