//! How each kind is shown as a table: the columns of its rows (`-o wide` columns apart),
//! each cell a function of the object's JSON, and the humanised ages, sizes and digests
//! they use. kubectl gets these columns as Kubernetes `Table`s from the API
//! ([`table`]); the `berth` CLI prints the same columns itself. One definition, so the
//! two never disagree.

use berth_model::image::Image;
use berth_model::imagestream::{ImageStreamTag, ImageTag, TagEventCondition};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The string at a JSON pointer, or "" when it is absent or not a string.
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The array at a JSON pointer, or an empty slice.
pub fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
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
            ImportState::Paused { .. } => "Paused".to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            ImportState::NotImported => String::new(),
            ImportState::Pending => "importing".to_string(),
            ImportState::Imported => "imported".to_string(),
            ImportState::Failed { reason, message } => format!("failed ({reason}): {message}"),
            ImportState::Paused { why } => format!("paused by {why}: `berth tag --resume` imports again"),
        }
    }

    fn reports(&self, condition: &TagEventCondition) -> bool {
        *self != ImportState::NotImported && condition.condition_type == berth_model::tags::CONDITION_IMPORT_SUCCESS
    }
}

/// One column of a table: its header, whether only `-o wide` shows it, and its cell.
pub struct Column {
    pub header: &'static str,
    pub wide: bool,
    pub cell: fn(&Value) -> String,
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

fn policy_action(v: &Value) -> String {
    text(v, "/spec/action").to_string()
}

fn policy_resources(v: &Value) -> String {
    let resources: Vec<&str> = array(v, "/spec/resources").iter().filter_map(Value::as_str).collect();
    if resources.is_empty() { "all".to_string() } else { resources.join(",") }
}

fn policy_enforcement(v: &Value) -> String {
    text(v, "/spec/enforcement").to_string()
}

fn policy_failure(v: &Value) -> String {
    text(v, "/spec/failurePolicy").to_string()
}

fn class_target(v: &Value) -> String {
    format!("{}/{}", text(v, "/spec/target/namespace"), text(v, "/spec/target/name"))
}

/// The class's current image, shortened as `docker images` shows ids.
fn class_current(v: &Value) -> String {
    let image = text(v, "/status/current/image");
    match image.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ if image.is_empty() => "<none>".to_string(),
        _ => image.to_string(),
    }
}

fn class_versions(v: &Value) -> String {
    (usize::from(v.pointer("/status/current").is_some_and(|c| !c.is_null())) + array(v, "/status/history").len()).to_string()
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

/// The USED/HARD cell of a ResourceQuota: `resource: used/hard` for each key of `hard`,
/// as kubectl's REQUEST column shows them (`openshift.io/imagestreams: 3/10,
/// berth.dev/image-storage: 1.2Gi/10Gi`); bytes of image storage in binary units, and
/// `-` for a figure the server does not give (a resource berth does not enforce).
fn quota_used_hard(v: &Value) -> String {
    let hard = v.pointer("/status/hard").or_else(|| v.pointer("/spec/hard")).and_then(Value::as_object);
    let Some(hard) = hard else { return "<none>".to_string() };
    let mut cells: Vec<String> = Vec::new();
    for (key, limit) in hard {
        let used = match v.pointer("/status/used").and_then(|used| used.get(key)).and_then(Value::as_str) {
            None => "-".to_string(),
            Some(used) if key == berth_model::quota::IMAGE_STORAGE => {
                berth_model::quantity::parse_quantity(used).map(berth_model::quantity::format_bytes).unwrap_or_else(|_| used.to_string())
            }
            Some(used) => used.to_string(),
        };
        cells.push(format!("{key}: {used}/{}", limit.as_str().unwrap_or_default()));
    }
    or_none(cells.join(", "))
}

/// kubectl's CREATED AT: the creation time as written.
fn created_at(v: &Value) -> String {
    text(v, "/metadata/creationTimestamp").to_string()
}

fn record_namespace(v: &Value) -> String {
    text(v, "/namespace").to_string()
}

/// A scheduled import is named by its tag, `stream:tag`.
pub fn record_name(v: &Value) -> String {
    format!("{}:{}", text(v, "/stream"), text(v, "/tag"))
}

fn scheduled_from(v: &Value) -> String {
    text(v, "/from").to_string()
}

fn scheduled_interval(v: &Value) -> String {
    v.get("intervalSeconds").and_then(Value::as_u64).map(interval).unwrap_or_default()
}

fn pruner_schedule(v: &Value) -> String {
    text(v, "/spec/schedule").to_string()
}

fn pruner_suspend(v: &Value) -> String {
    (v.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)).to_string()
}

/// `3h ago (succeeded)` or `<none>`.
fn pruner_last_run(v: &Value) -> String {
    match array(v, "/status/runs").first() {
        Some(run) => {
            let outcome = if run.get("succeeded").and_then(Value::as_bool) == Some(true) { "succeeded" } else { "failed" };
            format!("{} ({outcome})", age(text(run, "/started")))
        }
        None => "<none>".to_string(),
    }
}

fn pruner_next_run(v: &Value) -> String {
    if v.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return "suspended".to_string();
    }
    or_none(until(text(v, "/status/nextRun")))
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

pub static NAMESPACE_COLUMN: Column = column("NAMESPACE", namespace);
pub static RECORD_NAMESPACE_COLUMN: Column = column("NAMESPACE", record_namespace);
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
static RESOURCE_QUOTA_COLUMNS: [Column; 3] = [column("NAME", name), column("USED/HARD", quota_used_hard), column("AGE", created_age)];
static LIMIT_RANGE_COLUMNS: [Column; 2] = [column("NAME", name), column("CREATED AT", created_at)];
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
static CLASS_COLUMNS: [Column; 4] =
    [column("NAME", name), column("TARGET", class_target), column("CURRENT", class_current), column("VERSIONS", class_versions)];
static POLICY_COLUMNS: [Column; 6] = [
    column("NAME", name),
    column("ACTION", policy_action),
    column("RESOURCES", policy_resources),
    column("ENFORCEMENT", policy_enforcement),
    column("FAILURE POLICY", policy_failure),
    column("AGE", created_age),
];
static PRUNER_COLUMNS: [Column; 6] = [
    column("NAME", name),
    column("SCHEDULE", pruner_schedule),
    column("SUSPEND", pruner_suspend),
    column("LAST RUN", pruner_last_run),
    column("NEXT RUN", pruner_next_run),
    column("AGE", created_age),
];
static SCHEDULED_IMPORT_COLUMNS: [Column; 6] = [
    column("NAME", record_name),
    column("FROM", scheduled_from),
    column("INTERVAL", scheduled_interval),
    column("LAST CHECK", scheduled_last_check),
    column("NEXT CHECK", scheduled_next_check),
    column("LAST RESULT", scheduled_last_result),
];

/// The columns of a kind's table (the name column alone for a kind without its own).
pub fn columns_of(kind: &str) -> &'static [Column] {
    match kind {
        "ImageStream" => &IMAGE_STREAM_COLUMNS,
        "ImageStreamTag" => &IMAGE_STREAM_TAG_COLUMNS,
        "ImageTag" => &IMAGE_TAG_COLUMNS,
        "ImageStreamImage" => &IMAGE_STREAM_IMAGE_COLUMNS,
        "Image" => &IMAGE_COLUMNS,
        "Namespace" => &NAMESPACE_COLUMNS,
        "Secret" => &SECRET_COLUMNS,
        "ResourceQuota" => &RESOURCE_QUOTA_COLUMNS,
        "LimitRange" => &LIMIT_RANGE_COLUMNS,
        "Token" => &TOKEN_COLUMNS,
        "Subscription" => &SUBSCRIPTION_COLUMNS,
        "ImageClass" => &CLASS_COLUMNS,
        "ImagePolicy" => &POLICY_COLUMNS,
        "ImagePruner" => &PRUNER_COLUMNS,
        "ScheduledImport" => &SCHEDULED_IMPORT_COLUMNS,
        _ => &NAME_ONLY,
    }
}

/// A Kubernetes `Table` (`meta.k8s.io/v1`) of `objects` of `kind`, as kubectl asks for it
/// with `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`: a column per
/// [`Column`] (`-o wide` ones at priority 1), and per row the cells and the object, whole
/// or only its metadata (`includeObject`).
pub mod table {
    use super::*;

    /// What each row carries of its object.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Include {
        None,
        Metadata,
        Object,
    }

    /// A column's header as the API names it (`Image Repository`; kubectl shows it
    /// upper-cased).
    fn title(header: &str) -> String {
        header
            .split(' ')
            .map(|word| {
                let mut letters = word.chars();
                match letters.next() {
                    Some(first) => first.to_string() + &letters.as_str().to_ascii_lowercase(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn column_definitions(kind: &str) -> Value {
        let columns: Vec<Value> = columns_of(kind)
            .iter()
            .map(|column| {
                let format = if column.header == "NAME" { "name" } else { "" };
                json!({"name": title(column.header), "type": "string", "format": format, "description": "", "priority": u8::from(column.wide)})
            })
            .collect();
        Value::Array(columns)
    }

    /// One row: the cells of `object` and what `include` keeps of it.
    pub fn row(kind: &str, object: &Value, include: Include) -> Value {
        let cells: Vec<Value> = columns_of(kind).iter().map(|column| Value::String((column.cell)(object))).collect();
        let object = match include {
            Include::None => Value::Null,
            Include::Object => object.clone(),
            Include::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        };
        let mut row = json!({"cells": cells});
        if !object.is_null() {
            row["object"] = object;
        }
        row
    }

    /// The table around `rows`, at list metadata `metadata`.
    pub fn of_rows(kind: &str, metadata: Value, rows: Vec<Value>) -> Value {
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "columnDefinitions": column_definitions(kind),
            "rows": rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn quotas_show_used_over_hard_for_each_resource() {
        let quota = json!({
            "spec": {"hard": {"openshift.io/imagestreams": "10", "berth.dev/image-storage": "10Gi", "pods": "4"}},
            "status": {
                "hard": {"openshift.io/imagestreams": "10", "berth.dev/image-storage": "10Gi", "pods": "4"},
                "used": {"openshift.io/imagestreams": "3", "berth.dev/image-storage": "1288490189"},
            },
        });
        assert_eq!(quota_used_hard(&quota), "berth.dev/image-storage: 1.2Gi/10Gi, openshift.io/imagestreams: 3/10, pods: -/4");
        assert_eq!(quota_used_hard(&json!({"spec": {"hard": {"openshift.io/imagestreams": "1"}}})), "openshift.io/imagestreams: -/1");
        assert_eq!(quota_used_hard(&json!({"spec": {}})), "<none>");
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
    fn intervals_are_exact() {
        assert_eq!(interval(0), "0s");
        assert_eq!(interval(45), "45s");
        assert_eq!(interval(900), "15m");
        assert_eq!(interval(5400), "1h30m");
        assert_eq!(interval(86_400), "24h");
        assert_eq!(interval(3661), "1h1m1s");
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
}
