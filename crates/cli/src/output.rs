//! Everything berth prints: tables (one generic path fed by per-kind column
//! definitions), JSON, YAML and `-o name`, humanised ages and sizes, and errors.

use std::fmt;
use std::io::Write;

pub use berth_server::printers::{
    Column, ImportState, ImportStateText, ago, array, image_facts, image_layers, image_platforms, image_size, interval, parse_image,
    short_digest, source_text, text, until,
};
use berth_server::printers::{NAMESPACE_COLUMN, RECORD_NAMESPACE_COLUMN, columns_of, record_name};
use comfy_table::{Table as Grid, presets};
use serde::Serialize;
use serde_json::Value;

use crate::client::ApiError;
use crate::kinds::Kind;

/// An error whose details were already printed (for example each failed document of an
/// apply): `main` only sets the exit code.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the errors above were reported")
    }
}

impl std::error::Error for Reported {}

/// Prints an error as kubectl does: server errors as `Error from server (Reason): ...`,
/// the client's own as `error: ...`.
pub fn print_error(err: &anyhow::Error) {
    if err.downcast_ref::<Reported>().is_some() {
        return;
    }
    match err.downcast_ref::<ApiError>() {
        Some(api) => eprintln!("{api}"),
        None => eprintln!("error: {err:#}"),
    }
}

/// `-o` of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wide,
    Json,
    Yaml,
    Name,
}

/// `-o` of verbs that print the one object the server answered: its JSON or YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DocumentFormat {
    Json,
    Yaml,
}

impl DocumentFormat {
    pub fn print(self, value: &Value) -> anyhow::Result<()> {
        match self {
            DocumentFormat::Json => print_json(value),
            DocumentFormat::Yaml => print_yaml(value),
        }
    }
}

/// JSON without passing through typed structs, so nothing (timestamps included) is
/// rewritten.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    value.serialize(&mut serializer)?;
    writeln!(out)?;
    Ok(())
}

pub fn print_yaml(value: &Value) -> anyhow::Result<()> {
    print!("{}", yaml_serde::to_string(value)?);
    Ok(())
}

/// `imagestream.image.openshift.io/ruby`, as `-o name` and `apply` print objects.
pub fn qualified_name(kind: &Kind, object: &Value) -> String {
    format!("{}/{}", kind.qualified(), item_name(kind, object))
}

/// The name of an item of a list: `metadata.name`, or `stream:tag` for the plain records
/// of a view without metadata (ScheduledImport).
pub fn item_name(kind: &Kind, item: &Value) -> String {
    if kind.metadata { text(item, "/metadata/name").to_string() } else { record_name(item) }
}

/// Lays rows out as kubectl does: no borders, columns two spaces apart.
pub fn render_rows(rows: &[Vec<String>]) -> Vec<String> {
    let mut grid = Grid::new();
    grid.load_style(presets::NOTHING);
    grid.add_rows(rows.iter().cloned());
    // comfy-table pads each cell with a space on both sides: between columns that is
    // kubectl's two spaces; the outer ones are trimmed.
    grid.lines().map(|line| line.strip_prefix(' ').unwrap_or(&line).trim_end().to_string()).collect()
}

/// Prints a table of rows, the first being the header, laid out as kubectl does.
pub fn print_rows(rows: &[Vec<String>]) {
    for line in render_rows(rows) {
        println!("{line}");
    }
}

/// A table of one kind, printed all at once or (for a watch) a row at a time.
pub struct Table {
    columns: Vec<&'static Column>,
    /// The widest cell printed so far in each column, so that rows printed one at a
    /// time line up with those before them.
    widest: Vec<String>,
}

impl Table {
    pub fn new(kind: &Kind, wide: bool, all_namespaces: bool) -> Table {
        let namespace_column = if kind.metadata { &NAMESPACE_COLUMN } else { &RECORD_NAMESPACE_COLUMN };
        let namespace = (all_namespaces && kind.namespaced).then_some(namespace_column);
        let columns: Vec<&'static Column> = namespace.into_iter().chain(columns_of(kind.kind).iter().filter(|c| wide || !c.wide)).collect();
        Table { columns, widest: Vec::new() }
    }

    fn header(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.header.to_string()).collect()
    }

    fn cells(&self, object: &Value) -> Vec<String> {
        self.columns.iter().map(|c| (c.cell)(object)).collect()
    }

    fn remember(&mut self, rows: &[Vec<String>]) {
        for row in rows {
            if self.widest.is_empty() {
                self.widest = row.clone();
            }
            for (widest, cell) in self.widest.iter_mut().zip(row) {
                if cell.chars().count() > widest.chars().count() {
                    widest.clone_from(cell);
                }
            }
        }
    }

    /// Prints the header and a row per object.
    pub fn print(&mut self, objects: &[Value]) {
        let rows: Vec<Vec<String>> = std::iter::once(self.header()).chain(objects.iter().map(|o| self.cells(o))).collect();
        self.remember(&rows);
        for line in render_rows(&rows) {
            println!("{line}");
        }
    }

    /// Prints one more row, aligned with what was printed before (the header first, if
    /// nothing was).
    pub fn print_row(&mut self, object: &Value) {
        if self.widest.is_empty() {
            return self.print(std::slice::from_ref(object));
        }
        let row = self.cells(object);
        self.remember(std::slice::from_ref(&row));
        if let Some(line) = render_rows(&[self.widest.clone(), row]).pop() {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds;

    #[test]
    fn tables_have_no_borders_and_two_space_gaps() {
        let rows = vec![vec!["NAME".to_string(), "DATA".to_string()], vec!["pull-secret".to_string(), "1".to_string()]];
        assert_eq!(render_rows(&rows), vec!["NAME         DATA", "pull-secret  1"]);
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column_and_wide_adds_wide_columns() {
        let table = Table::new(&kinds::IMAGE_STREAM_TAG, true, true);
        assert_eq!(
            table.header(),
            vec!["NAMESPACE", "NAME", "IMAGE REFERENCE", "UPDATED", "IMAGE", "SIZE", "LAYERS", "PLATFORM", "IMPORT"]
        );
        let table = Table::new(&kinds::NAMESPACE, false, true);
        assert_eq!(table.header(), vec!["NAME", "STATUS", "AGE"]);
    }

    /// An RFC 3339 time `seconds` from now (negative: in the past).
    fn from_now(seconds: i64) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
    }

    fn row(kind: &Kind, wide: bool, all_namespaces: bool, object: &Value) -> Vec<(String, String)> {
        let table = Table::new(kind, wide, all_namespaces);
        table.header().into_iter().zip(table.cells(object)).collect()
    }

    fn cells(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(h, c)| (h.to_string(), c.to_string())).collect()
    }

    #[test]
    fn subscription_rows_show_where_what_and_how_delivery_stands() {
        let subscription = json!({"kind": "Subscription", "metadata": {"name": "hooks", "namespace": "team"},
            "spec": {"url": "https://ci.example.com/hook", "events": ["TagCreated", "TagMoved"]},
            "status": {"delivered": 12, "backlog": 3, "lastDeliveredTime": from_now(-150),
                "lastError": "POST https://ci.example.com/hook: 503\nService Unavailable", "lastErrorTime": from_now(-30)}});
        assert_eq!(
            row(&kinds::SUBSCRIPTION, true, true, &subscription),
            cells(&[
                ("NAMESPACE", "team"),
                ("NAME", "hooks"),
                ("URL", "https://ci.example.com/hook"),
                ("EVENTS", "TagCreated,TagMoved"),
                ("DELIVERED", "12"),
                ("BACKLOG", "3"),
                ("LAST DELIVERED", "2m"),
                ("LAST ERROR", "POST https://ci.example.com/hook: 503 Service Unavailable"),
            ])
        );
        let fresh = json!({"metadata": {"name": "all"}, "spec": {"url": "http://h/x"}, "status": {}});
        assert_eq!(
            row(&kinds::SUBSCRIPTION, true, false, &fresh),
            cells(&[
                ("NAME", "all"),
                ("URL", "http://h/x"),
                ("EVENTS", "all"),
                ("DELIVERED", "0"),
                ("BACKLOG", "0"),
                ("LAST DELIVERED", "<none>"),
                ("LAST ERROR", "<none>"),
            ])
        );
        assert!(!Table::new(&kinds::SUBSCRIPTION, false, false).header().contains(&"LAST ERROR".to_string()));
    }

    #[test]
    fn scheduled_import_rows_are_named_stream_colon_tag() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let checked = json!({"namespace": "team", "stream": "app", "tag": "latest", "from": "quay.io/team/app:latest",
            "intervalSeconds": 900, "lastCheck": from_now(-150), "nextCheck": from_now(13 * 60 + 30),
            "lastResult": format!("Imported {digest}")});
        assert_eq!(
            row(&kinds::SCHEDULED_IMPORT, false, true, &checked),
            cells(&[
                ("NAMESPACE", "team"),
                ("NAME", "app:latest"),
                ("FROM", "quay.io/team/app:latest"),
                ("INTERVAL", "15m"),
                ("LAST CHECK", "2m"),
                ("NEXT CHECK", "in 13m"),
                ("LAST RESULT", "Imported sha256:0123456789ab"),
            ])
        );
        let new = json!({"namespace": "team", "stream": "db", "tag": "8", "from": "mysql:8", "intervalSeconds": 90,
            "nextCheck": from_now(-5)});
        assert_eq!(
            row(&kinds::SCHEDULED_IMPORT, false, false, &new),
            cells(&[
                ("NAME", "db:8"),
                ("FROM", "mysql:8"),
                ("INTERVAL", "1m30s"),
                ("LAST CHECK", "<none>"),
                ("NEXT CHECK", "due"),
                ("LAST RESULT", "<none>"),
            ])
        );
        let failed = json!({"stream": "db", "tag": "8", "lastResult": "Failed (Unauthorized): authentication required"});
        assert_eq!(
            row(&kinds::SCHEDULED_IMPORT, false, false, &failed).last().unwrap().1,
            "Failed (Unauthorized): authentication required"
        );
        assert_eq!(qualified_name(&kinds::SCHEDULED_IMPORT, &new), "scheduledimport.berth.dev/db:8");
        assert_eq!(qualified_name(&kinds::SUBSCRIPTION, &json!({"metadata": {"name": "hooks"}})), "subscription.berth.dev/hooks");
    }
}
