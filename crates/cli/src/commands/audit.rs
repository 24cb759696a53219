//! `berth audit`: the server's audit trail (cluster admins), newest events last, filtered
//! by namespace, user, object, verb and time.

use anyhow::{Context as _, bail};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

use crate::commands::Context;
use crate::kinds;
use crate::output::{self, DocumentFormat, text};

const PATH: &str = "/apis/berth.dev/v1/auditevents";

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only events of this user (a token's name, `system:anonymous`, `system:webhook:NAME`).
    #[arg(long)]
    user: Option<String>,
    /// Only events of this object: KIND/NAME, as in `istag/app:1.0` or `imagestream/app`.
    #[arg(long, value_name = "KIND/NAME")]
    object: Option<String>,
    /// Only events of this verb (`create`, `update`, `patch`, `delete`; `put` and `post` for
    /// registry pushes and webhooks).
    #[arg(long)]
    verb: Option<String>,
    /// Only events since this long ago (`1h`, `30m`) or this time (RFC 3339).
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// At most this many events, the newest.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(short = 'o', long, value_enum)]
    output: Option<DocumentFormat>,
}

pub fn run(ctx: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    // Only a namespace typed here narrows the trail: by default it is the whole server's.
    if let Some(namespace) = ctx.typed_namespaces().last() {
        query.push(("namespace", namespace.clone()));
    }
    if let Some(user) = args.user {
        query.push(("user", user));
    }
    if let Some(verb) = args.verb {
        query.push(("verb", verb));
    }
    if let Some(object) = &args.object {
        let Some((kind, name)) = object.split_once('/') else {
            bail!("--object {object:?} names no kind: write KIND/NAME, as in istag/app:1.0");
        };
        query.push(("resource", kinds::lookup(kind)?.plural.to_string()));
        query.push(("name", name.to_string()));
    }
    if let Some(since) = &args.since {
        query.push(("since", point_in_time(since, Utc::now())?));
    }
    if let Some(until) = &args.until {
        query.push(("until", point_in_time(until, Utc::now())?));
    }
    let list = ctx.client()?.get(PATH, &query)?;
    if let Some(format) = args.output {
        return format.print(&list);
    }
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("No audit events match.");
        return Ok(());
    }
    let mut rows = vec![["TIME", "USER", "VERB", "NAMESPACE", "OBJECT", "CODE"].map(String::from).to_vec()];
    rows.extend(items.iter().map(row));
    output::print_rows(&rows);
    Ok(())
}

fn row(event: &Value) -> Vec<String> {
    let at = text(event, "/requestReceivedTimestamp");
    let at = DateTime::parse_from_rfc3339(at).map(|t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default();
    let (resource, name) = (text(event, "/objectRef/resource"), text(event, "/objectRef/name"));
    let object = match (resource, name) {
        ("", _) => text(event, "/requestURI").to_string(),
        (resource, "") => resource.to_string(),
        (resource, name) => format!("{resource}/{name}"),
    };
    let namespace = text(event, "/objectRef/namespace");
    let code = event.pointer("/responseStatus/code").and_then(Value::as_u64).map(|c| c.to_string()).unwrap_or_default();
    vec![
        at,
        text(event, "/user/username").to_string(),
        text(event, "/verb").to_string(),
        if namespace.is_empty() { "<none>".to_string() } else { namespace.to_string() },
        object,
        code,
    ]
}

/// `1h` (that long before `now`) or an RFC 3339 time, as the server takes it.
fn point_in_time(typed: &str, now: DateTime<Utc>) -> anyhow::Result<String> {
    let at = match DateTime::parse_from_rfc3339(typed) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => {
            let ago = berth_model::duration::parse_duration(typed)
                .map_err(|err| anyhow::anyhow!("{typed:?} is neither a duration (1h, 30m) nor an RFC 3339 time: {err}"))?;
            now - chrono::Duration::from_std(ago).with_context(|| format!("{typed:?} is too long ago"))?
        }
    };
    Ok(at.trunc_subsecs(6).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(point_in_time("90m", now).unwrap(), "2026-12-02T08:30:00.000000Z");
        assert_eq!(point_in_time("2026-12-01T00:00:00+01:00", now).unwrap(), "2026-11-30T23:00:00.000000Z");
        assert!(point_in_time("yesterday", now).unwrap_err().to_string().contains("neither a duration"));
    }

    #[test]
    fn rows_name_who_did_what_to_which_object() {
        let event = json!({"requestReceivedTimestamp": "2026-12-02T08:45:01.123456Z", "user": {"username": "ci"}, "verb": "put",
            "objectRef": {"resource": "imagestreamtags", "namespace": "team", "name": "app:1.0"}, "responseStatus": {"code": 201}});
        assert_eq!(row(&event), ["2026-12-02T08:45:01Z", "ci", "put", "team", "imagestreamtags/app:1.0", "201"]);
    }
}
