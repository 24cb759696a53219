//! Everything berth prints: tables (one generic path fed by per-kind column
//! definitions), JSON, YAML and `-o name`, humanised ages and sizes, and errors.

use std::fmt;
use std::io::Write;

use berth_model::image::Image;
use berth_model::imagestream::{ImageStreamTag, ImageTag, TagEventCondition};
use chrono::{DateTime, Utc};
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

/// The string at a JSON pointer, or "" when it is absent or not a string.
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The array at a JSON pointer, or an empty slice.
pub fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Pretty JSON with kubectl's four-space indent. Objects are printed from the server's
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

/// A number of seconds in kubectl's short form: `45s`, `5m`, `3h`, `2d`, `3y`. Negative
/// spans (a clock ahead of this one) read as `0s`.
pub fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 60 * 60 => format!("{}m", s / 60),
        s if s < 48 * 60 * 60 => format!("{}h", s / 3600),
        s if s < 2 * 365 * 24 * 60 * 60 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

fn parse_time(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at).ok().map(|t| t.with_timezone(&Utc))
}

fn seconds_since(at: &str) -> Option<i64> {
    parse_time(at).map(|t| (Utc::now() - t).num_seconds())
}

fn ago_since(at: DateTime<Utc>) -> String {
    format!("{} ago", short_duration((Utc::now() - at).num_seconds()))
}

/// The AGE column: `5m`; empty when the time is absent.
pub fn age(at: &str) -> String {
    seconds_since(at).map(short_duration).unwrap_or_default()
}

/// The UPDATED column and describe's times: `5m ago`; empty when the time is absent.
pub fn ago(at: &str) -> String {
    parse_time(at).map(ago_since).unwrap_or_default()
}

/// A time to come: `in 13m`, or `due` when it has come; empty when the time is absent.
pub fn until(at: &str) -> String {
    match parse_time(at).map(|t| (t - Utc::now()).num_seconds()) {
        None => String::new(),
        Some(seconds) if seconds <= 0 => "due".to_string(),
        Some(seconds) => format!("in {}", short_duration(seconds)),
    }
}

/// A check interval exactly, in the units the stream annotation
/// `berth.dev/scheduled-import-interval` takes: `15m`, `1m30s`, `2h`.
pub fn interval(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_string();
    }
    let parts = [(seconds / 3600, "h"), (seconds % 3600 / 60, "m"), (seconds % 60, "s")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

/// A size in decimal units with three significant digits, as `docker images` prints
/// it: `999B`, `1.5kB`, `12.3MB`.
pub fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let number = format!("{value:.decimals$}");
    let number = if number.contains('.') { number.trim_end_matches('0').trim_end_matches('.') } else { &number };
    format!("{number}{}", UNITS[unit])
}

/// Where a tag comes from, as `oc` says it: `DockerImage mysql:5.6`, or
/// `ImageStreamTag other/app:latest` when the source is in another namespace.
pub fn source_text(kind: &str, namespace: &str, name: &str, own_namespace: &str) -> String {
    if namespace.is_empty() || namespace == own_namespace { format!("{kind} {name}") } else { format!("{kind} {namespace}/{name}") }
}

/// An image embedded in or sent as an object; `None` when absent or not an image.
pub fn parse_image(image: Option<&Value>) -> Option<Image> {
    image.and_then(|image| serde_json::from_value::<Image>(image.clone()).ok())
}

/// A manifest list (or OCI index) is an image of images: it has platforms, not layers.
fn is_manifest_list(image: &Image) -> bool {
    !image.docker_image_manifests.is_empty()
}

/// The size of an image: `dockerImageMetadata.Size`, else the sum of its layers (the
/// model's rule, so the CLI and server agree); empty for a manifest list, whose children
/// each have their own.
pub fn image_size(image: &Image) -> String {
    if is_manifest_list(image) { String::new() } else { size(image.size()) }
}

/// The number of layers; empty for a manifest list.
pub fn image_layers(image: &Image) -> String {
    if is_manifest_list(image) { String::new() } else { image.docker_image_layers.len().to_string() }
}

/// An image's platforms, `linux/amd64,linux/arm64`, at most `shown` then `+ N more...`.
pub fn image_platforms(image: &Image, shown: usize) -> String {
    let platforms = berth_model::manifest::platforms(image);
    capped(platforms.iter().map(String::as_str), shown, ",")
}

/// What one line says about an image: `5 layers, 12.3MB, linux/amd64`, or
/// `manifest list: linux/amd64, linux/arm64` (platforms left out when unknown).
pub fn image_facts(image: &Image) -> String {
    let platforms = berth_model::manifest::platforms(image).join(", ");
    if is_manifest_list(image) {
        let count = image.docker_image_manifests.len();
        return if platforms.is_empty() { format!("manifest list of {count}") } else { format!("manifest list: {platforms}") };
    }
    let layers = match image.docker_image_layers.len() {
        1 => "1 layer".to_string(),
        n => format!("{n} layers"),
    };
    let facts = [layers, size(image.size()), platforms];
    facts.into_iter().filter(|f| !f.is_empty()).collect::<Vec<_>>().join(", ")
}

/// `sha256:` and the first 12 hex digits, as tables show an image: enough to tell
/// images apart, and a prefix `berth get isimage STREAM@ID` accepts.
pub fn short_digest(digest: &str) -> String {
    const SHOWN: usize = 12;
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", hex.get(..SHOWN).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// Up to `shown` items joined by `separator`, then `+ N more...` for the rest.
fn capped<'a>(items: impl ExactSizeIterator<Item = &'a str>, shown: usize, separator: &str) -> String {
    let more = items.len().saturating_sub(shown);
    let joined = items.take(shown).collect::<Vec<_>>().join(separator);
    if more == 0 { joined } else { format!("{joined} + {more} more...") }
}

pub use berth_model::tags::ImportState;

/// How the CLI shows an [`ImportState`] (the rule itself is the model's
/// [`berth_model::tags::import_state`]).
pub trait ImportStateText {
    /// The IMPORT column: `Imported`, `Importing`, `Failed: Reason`, or empty.
    fn cell(&self) -> String;
    /// `describe`'s Import line: `importing`, `imported`, `failed (Reason): message`.
    fn describe(&self) -> String;
    /// Whether a condition is one this state already reports: the ImportSuccess
    /// condition of a tag that imports (an older failure is superseded by the state).
    fn reports(&self, condition: &TagEventCondition) -> bool;
}

impl ImportStateText for ImportState<'_> {
    fn cell(&self) -> String {
        match self {
            ImportState::NotImported => String::new(),
            ImportState::Pending => "Importing".to_string(),
            ImportState::Imported => "Imported".to_string(),
            ImportState::Failed { reason, .. } => format!("Failed: {reason}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            ImportState::NotImported => String::new(),
            ImportState::Pending => "importing".to_string(),
            ImportState::Imported => "imported".to_string(),
            ImportState::Failed { reason, message } => format!("failed ({reason}): {message}"),
        }
    }

    fn reports(&self, condition: &TagEventCondition) -> bool {
        *self != ImportState::NotImported && condition.condition_type == berth_model::tags::CONDITION_IMPORT_SUCCESS
    }
}

/// One column of a table: its header, whether only `-o wide` shows it, and its cell.
pub struct Column {
    header: &'static str,
    wide: bool,
    cell: fn(&Value) -> String,
}

const fn column(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column { header, wide: false, cell }
}

const fn wide_column(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column { header, wide: true, cell }
}

fn name(v: &Value) -> String {
    text(v, "/metadata/name").to_string()
}

fn namespace(v: &Value) -> String {
    text(v, "/metadata/namespace").to_string()
}

fn created_age(v: &Value) -> String {
    age(text(v, "/metadata/creationTimestamp"))
}

/// Where clients pull the stream from: the public repository when the server has a
/// public hostname, else the internal one (as `oc get is` shows it).
fn stream_repository(v: &Value) -> String {
    let public = text(v, "/status/publicDockerImageRepository");
    if public.is_empty() { text(v, "/status/dockerImageRepository").to_string() } else { public.to_string() }
}

/// Tag names from spec and status, sorted, at most four and then `+ N more...`.
fn stream_tags(v: &Value) -> String {
    const SHOWN: usize = 4;
    let spec = array(v, "/spec/tags").iter().map(|t| text(t, "/name"));
    let status = array(v, "/status/tags").iter().map(|t| text(t, "/tag"));
    let mut names: Vec<&str> = spec.chain(status).filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    capped(names.into_iter(), SHOWN, ",")
}

/// When any tag of the stream last moved: the newest current TagEvent.
fn stream_updated(v: &Value) -> String {
    let newest = array(v, "/status/tags").iter().filter_map(|t| parse_time(text(t, "/items/0/created"))).max();
    newest.map(ago_since).unwrap_or_default()
}

fn image_reference(v: &Value) -> String {
    text(v, "/dockerImageReference").to_string()
}

fn embedded_image_reference(v: &Value) -> String {
    text(v, "/image/dockerImageReference").to_string()
}

fn embedded_image_name(v: &Value) -> String {
    text(v, "/image/metadata/name").to_string()
}

fn created_ago(v: &Value) -> String {
    ago(text(v, "/metadata/creationTimestamp"))
}

fn image_tag_source(v: &Value) -> String {
    match v.pointer("/spec/from") {
        Some(from) => source_text(text(from, "/kind"), text(from, "/namespace"), text(from, "/name"), text(v, "/metadata/namespace")),
        None => String::new(),
    }
}

fn image_tag_reference(v: &Value) -> String {
    text(v, "/status/items/0/dockerImageReference").to_string()
}

fn image_tag_updated(v: &Value) -> String {
    ago(text(v, "/status/items/0/created"))
}

/// How many platforms a PLATFORM cell names before `+ N more...`.
const PLATFORMS_SHOWN: usize = 2;

fn own_size(v: &Value) -> String {
    parse_image(Some(v)).map(|i| image_size(&i)).unwrap_or_default()
}

fn own_layers(v: &Value) -> String {
    parse_image(Some(v)).map(|i| image_layers(&i)).unwrap_or_default()
}

fn own_platforms(v: &Value) -> String {
    parse_image(Some(v)).map(|i| image_platforms(&i, PLATFORMS_SHOWN)).unwrap_or_default()
}

fn embedded_size(v: &Value) -> String {
    parse_image(v.get("image")).map(|i| image_size(&i)).unwrap_or_default()
}

fn embedded_layers(v: &Value) -> String {
    parse_image(v.get("image")).map(|i| image_layers(&i)).unwrap_or_default()
}

fn embedded_platforms(v: &Value) -> String {
    parse_image(v.get("image")).map(|i| image_platforms(&i, PLATFORMS_SHOWN)).unwrap_or_default()
}

/// The IMPORT cell of an ImageStreamTag: its spec tag against the generation of its
/// image (the top-level `generation`, meaningful only when it has an image).
fn stream_tag_import(v: &Value) -> String {
    let Ok(istag) = serde_json::from_value::<ImageStreamTag>(v.clone()) else {
        return String::new();
    };
    let image_generation = istag.image.as_ref().map(|_| istag.generation);
    berth_model::tags::import_state(istag.tag.as_ref(), image_generation, &istag.conditions).cell()
}

/// The IMPORT cell of an ImageTag: its spec against its newest TagEvent.
fn image_tag_import(v: &Value) -> String {
    let Ok(itag) = serde_json::from_value::<ImageTag>(v.clone()) else {
        return String::new();
    };
    let history = itag.status.as_ref();
    let image_generation = history.and_then(|h| h.items.first()).map(|e| e.generation);
    berth_model::tags::import_state(itag.spec.as_ref(), image_generation, history.map(|h| h.conditions.as_slice()).unwrap_or_default())
        .cell()
}

fn namespace_status(v: &Value) -> String {
    text(v, "/status/phase").to_string()
}

fn secret_type(v: &Value) -> String {
    text(v, "/type").to_string()
}

/// The number of keys; `<hidden>` when the server left the data out (callers without
/// admin rights in the namespace see secrets' metadata only).
fn secret_data(v: &Value) -> String {
    match v.get("data").and_then(Value::as_object) {
        Some(data) => data.len().to_string(),
        None => "<hidden>".to_string(),
    }
}

fn token_role(v: &Value) -> String {
    text(v, "/spec/role").to_string()
}

fn token_namespaces(v: &Value) -> String {
    array(v, "/spec/namespaces").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
}

fn token_expires(v: &Value) -> String {
    match seconds_since(text(v, "/spec/expirationTimestamp")) {
        None => "never".to_string(),
        Some(elapsed) if elapsed >= 0 => "expired".to_string(),
        Some(elapsed) => format!("in {}", short_duration(-elapsed)),
    }
}

fn token_description(v: &Value) -> String {
    text(v, "/spec/description").to_string()
}

/// The EVENTS cell: the changes wanted, or `all` (an empty list means all).
fn subscription_events(v: &Value) -> String {
    let events: Vec<&str> = array(v, "/spec/events").iter().filter_map(Value::as_str).collect();
    if events.is_empty() { "all".to_string() } else { events.join(",") }
}

fn subscription_url(v: &Value) -> String {
    text(v, "/spec/url").to_string()
}

/// A count the server keeps in status, `0` until it writes one.
fn count(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0).to_string()
}

fn subscription_delivered(v: &Value) -> String {
    count(v, "/status/delivered")
}

fn subscription_backlog(v: &Value) -> String {
    count(v, "/status/backlog")
}

/// `<none>` for a value not there yet, as kubectl prints a CronJob never scheduled.
fn or_none(cell: String) -> String {
    if cell.is_empty() { "<none>".to_string() } else { cell }
}

fn subscription_last_delivered(v: &Value) -> String {
    or_none(age(text(v, "/status/lastDeliveredTime")))
}

/// The error of the last delivery attempt, on one line; the server clears it once a
/// delivery succeeds.
fn subscription_last_error(v: &Value) -> String {
    or_none(text(v, "/status/lastError").split_whitespace().collect::<Vec<_>>().join(" "))
}

fn record_namespace(v: &Value) -> String {
    text(v, "/namespace").to_string()
}

/// A scheduled import is named by its tag, `stream:tag`.
fn record_name(v: &Value) -> String {
    format!("{}:{}", text(v, "/stream"), text(v, "/tag"))
}

fn scheduled_from(v: &Value) -> String {
    text(v, "/from").to_string()
}

fn scheduled_interval(v: &Value) -> String {
    v.get("intervalSeconds").and_then(Value::as_u64).map(interval).unwrap_or_default()
}

fn scheduled_last_check(v: &Value) -> String {
    or_none(age(text(v, "/lastCheck")))
}

fn scheduled_next_check(v: &Value) -> String {
    until(text(v, "/nextCheck"))
}

/// The LAST RESULT cell: `Unchanged`, `Imported sha256:0123456789ab` (the digest as
/// tables show images), `Failed (Reason): message`; `<none>` before the first check.
fn scheduled_last_result(v: &Value) -> String {
    let result = text(v, "/lastResult");
    match result.split_once(' ') {
        Some(("Imported", digest)) => format!("Imported {}", short_digest(digest)),
        _ => or_none(result.to_string()),
    }
}

static NAMESPACE_COLUMN: Column = column("NAMESPACE", namespace);
static RECORD_NAMESPACE_COLUMN: Column = column("NAMESPACE", record_namespace);
static NAME_ONLY: [Column; 1] = [column("NAME", name)];
static IMAGE_STREAM_COLUMNS: [Column; 4] =
    [column("NAME", name), column("IMAGE REPOSITORY", stream_repository), column("TAGS", stream_tags), column("UPDATED", stream_updated)];
static IMAGE_STREAM_TAG_COLUMNS: [Column; 8] = [
    column("NAME", name),
    column("IMAGE REFERENCE", embedded_image_reference),
    column("UPDATED", created_ago),
    wide_column("IMAGE", embedded_image_name),
    wide_column("SIZE", embedded_size),
    wide_column("LAYERS", embedded_layers),
    wide_column("PLATFORM", embedded_platforms),
    wide_column("IMPORT", stream_tag_import),
];
static IMAGE_TAG_COLUMNS: [Column; 8] = [
    column("NAME", name),
    column("SPEC", image_tag_source),
    column("IMAGE REFERENCE", image_tag_reference),
    column("UPDATED", image_tag_updated),
    wide_column("SIZE", embedded_size),
    wide_column("LAYERS", embedded_layers),
    wide_column("PLATFORM", embedded_platforms),
    wide_column("IMPORT", image_tag_import),
];
static IMAGE_STREAM_IMAGE_COLUMNS: [Column; 5] = [
    column("NAME", name),
    column("IMAGE REFERENCE", embedded_image_reference),
    column("SIZE", embedded_size),
    wide_column("LAYERS", embedded_layers),
    wide_column("PLATFORM", embedded_platforms),
];
static IMAGE_COLUMNS: [Column; 5] = [
    column("NAME", name),
    column("IMAGE REFERENCE", image_reference),
    column("SIZE", own_size),
    wide_column("LAYERS", own_layers),
    wide_column("PLATFORM", own_platforms),
];
static NAMESPACE_COLUMNS: [Column; 3] = [column("NAME", name), column("STATUS", namespace_status), column("AGE", created_age)];
static SECRET_COLUMNS: [Column; 4] =
    [column("NAME", name), column("TYPE", secret_type), column("DATA", secret_data), column("AGE", created_age)];
static TOKEN_COLUMNS: [Column; 6] = [
    column("NAME", name),
    column("ROLE", token_role),
    column("NAMESPACES", token_namespaces),
    column("EXPIRES", token_expires),
    column("AGE", created_age),
    wide_column("DESCRIPTION", token_description),
];

static SUBSCRIPTION_COLUMNS: [Column; 7] = [
    column("NAME", name),
    column("URL", subscription_url),
    column("EVENTS", subscription_events),
    column("DELIVERED", subscription_delivered),
    column("BACKLOG", subscription_backlog),
    column("LAST DELIVERED", subscription_last_delivered),
    wide_column("LAST ERROR", subscription_last_error),
];
static SCHEDULED_IMPORT_COLUMNS: [Column; 6] = [
    column("NAME", record_name),
    column("FROM", scheduled_from),
    column("INTERVAL", scheduled_interval),
    column("LAST CHECK", scheduled_last_check),
    column("NEXT CHECK", scheduled_next_check),
    column("LAST RESULT", scheduled_last_result),
];

fn columns_of(kind: &Kind) -> &'static [Column] {
    match kind.kind {
        "ImageStream" => &IMAGE_STREAM_COLUMNS,
        "ImageStreamTag" => &IMAGE_STREAM_TAG_COLUMNS,
        "ImageTag" => &IMAGE_TAG_COLUMNS,
        "ImageStreamImage" => &IMAGE_STREAM_IMAGE_COLUMNS,
        "Image" => &IMAGE_COLUMNS,
        "Namespace" => &NAMESPACE_COLUMNS,
        "Secret" => &SECRET_COLUMNS,
        "Token" => &TOKEN_COLUMNS,
        "Subscription" => &SUBSCRIPTION_COLUMNS,
        "ScheduledImport" => &SCHEDULED_IMPORT_COLUMNS,
        _ => &NAME_ONLY,
    }
}

/// Lays rows out as kubectl does: no borders, columns two spaces apart.
fn render(rows: &[Vec<String>]) -> Vec<String> {
    let mut grid = Grid::new();
    grid.load_style(presets::NOTHING);
    grid.add_rows(rows.iter().cloned());
    // comfy-table pads each cell with a space on both sides: between columns that is
    // kubectl's two spaces; the outer ones are trimmed.
    grid.lines().map(|line| line.strip_prefix(' ').unwrap_or(&line).trim_end().to_string()).collect()
}

/// Prints a table of rows, the first being the header, laid out as kubectl does.
pub fn print_rows(rows: &[Vec<String>]) {
    for line in render(rows) {
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
        let columns: Vec<&'static Column> = namespace.into_iter().chain(columns_of(kind).iter().filter(|c| wide || !c.wide)).collect();
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
        for line in render(&rows) {
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
        if let Some(line) = render(&[self.widest.clone(), row]).pop() {
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
    fn durations_are_short() {
        assert_eq!(short_duration(-5), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(5 * 60 + 3), "5m");
        assert_eq!(short_duration(3 * 3600), "3h");
        assert_eq!(short_duration(47 * 3600), "47h");
        assert_eq!(short_duration(2 * 86_400), "2d");
        assert_eq!(short_duration(800 * 86_400), "2y");
    }

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(size(999), "999B");
        assert_eq!(size(1500), "1.5kB");
        assert_eq!(size(12_345_678), "12.3MB");
        assert_eq!(size(123_456_789), "123MB");
        assert_eq!(size(2_000_000_000), "2GB");
    }

    #[test]
    fn stream_tags_are_sorted_and_capped() {
        let stream = json!({"spec": {"tags": [{"name": "b"}, {"name": "a"}, {"name": "f"}]},
            "status": {"tags": [{"tag": "a"}, {"tag": "c"}, {"tag": "d"}, {"tag": "e"}]}});
        assert_eq!(stream_tags(&stream), "a,b,c,d + 2 more...");
    }

    #[test]
    fn the_repository_column_prefers_the_public_one() {
        let internal = json!({"status": {"dockerImageRepository": "10.0.0.1:7440/team/app"}});
        assert_eq!(stream_repository(&internal), "10.0.0.1:7440/team/app");
        let public = json!({"status": {"dockerImageRepository": "10.0.0.1:7440/team/app", "publicDockerImageRepository": "registry.example.com/team/app"}});
        assert_eq!(stream_repository(&public), "registry.example.com/team/app");
    }

    #[test]
    fn tables_have_no_borders_and_two_space_gaps() {
        let rows = vec![vec!["NAME".to_string(), "DATA".to_string()], vec!["pull-secret".to_string(), "1".to_string()]];
        assert_eq!(render(&rows), vec!["NAME         DATA", "pull-secret  1"]);
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

    #[test]
    fn secrets_without_data_say_hidden() {
        assert_eq!(secret_data(&json!({"data": {"a": "", "b": ""}})), "2");
        assert_eq!(secret_data(&json!({})), "<hidden>");
    }

    #[test]
    fn image_cells_tell_images_from_manifest_lists() {
        let image = json!({"metadata": {"name": "sha256:0123456789abcdef"},
            "dockerImageLayers": [{"name": "sha256:1", "size": 1000}, {"name": "sha256:2", "size": 500}],
            "dockerImageMetadata": {"Os": "linux", "Architecture": "arm", "Variant": "v7"}});
        assert_eq!((own_size(&image), own_layers(&image), own_platforms(&image)), ("1.5kB".into(), "2".into(), "linux/arm/v7".into()));
        let list = json!({"metadata": {"name": "sha256:ff"}, "dockerImageManifests": [
            {"digest": "sha256:a", "os": "linux", "architecture": "amd64"},
            {"digest": "sha256:b", "os": "linux", "architecture": "arm64"},
            {"digest": "sha256:c", "os": "linux", "architecture": "s390x"},
            {"digest": "sha256:d", "os": "unknown", "architecture": "unknown"}]});
        assert_eq!((own_size(&list), own_layers(&list)), (String::new(), String::new()));
        assert_eq!(own_platforms(&list), "linux/amd64,linux/arm64 + 1 more...");
        assert_eq!(image_facts(&parse_image(Some(&list)).unwrap()), "manifest list: linux/amd64, linux/arm64, linux/s390x");
        assert_eq!(image_facts(&parse_image(Some(&image)).unwrap()), "2 layers, 1.5kB, linux/arm/v7");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(short_digest("sha256:ab"), "sha256:ab");
    }

    #[test]
    fn import_state_compares_spec_and_image_generations() {
        let istag = |generation: i64, with_image: bool, conditions: Value| {
            let mut v = json!({"tag": {"name": "1", "from": {"kind": "DockerImage", "name": "r/a:1"}, "generation": 3},
                "generation": generation, "conditions": conditions});
            if with_image {
                v["image"] = json!({"metadata": {"name": "sha256:aa"}});
            }
            stream_tag_import(&v)
        };
        assert_eq!(istag(2, true, json!([])), "Importing");
        assert_eq!(istag(3, true, json!([])), "Imported");
        assert_eq!(istag(0, false, json!([])), "Importing");
        let failed = json!([{"type": "ImportSuccess", "status": "False", "reason": "Unauthorized", "generation": 3}]);
        assert_eq!(istag(2, true, failed), "Failed: Unauthorized");
        let stale = json!([{"type": "ImportSuccess", "status": "False", "reason": "Unauthorized", "generation": 2}]);
        assert_eq!(istag(2, true, stale), "Importing");
        assert_eq!(stream_tag_import(&json!({"tag": {"name": "1", "from": {"kind": "ImageStreamTag", "name": "a:1"}}})), "");
        assert_eq!(
            stream_tag_import(&json!({"tag": {"name": "1", "reference": true, "from": {"kind": "DockerImage", "name": "r/a:1"}}})),
            ""
        );
        let itag = json!({"spec": {"name": "1", "from": {"kind": "DockerImage", "name": "r/a:1"}, "generation": 3},
            "status": {"tag": "1", "items": [{"created": "2026-01-01T00:00:00Z", "dockerImageReference": "r/a@sha256:aa", "image": "sha256:aa", "generation": 3}]}});
        assert_eq!(image_tag_import(&itag), "Imported");
    }

    /// An RFC 3339 time `seconds` from now (negative: in the past).
    fn from_now(seconds: i64) -> String {
        (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
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
        assert_eq!(
            scheduled_last_result(&json!({"lastResult": "Failed (Unauthorized): authentication required"})),
            "Failed (Unauthorized): authentication required"
        );
        assert_eq!(qualified_name(&kinds::SCHEDULED_IMPORT, &new), "scheduledimport.berth.dev/db:8");
        assert_eq!(qualified_name(&kinds::SUBSCRIPTION, &json!({"metadata": {"name": "hooks"}})), "subscription.berth.dev/hooks");
    }

    #[test]
    fn intervals_are_exact() {
        assert_eq!(interval(0), "0s");
        assert_eq!(interval(45), "45s");
        assert_eq!(interval(900), "15m");
        assert_eq!(interval(5400), "1h30m");
        assert_eq!(interval(86_400), "24h");
        assert_eq!(interval(3661), "1h1m1s");
    }
}
