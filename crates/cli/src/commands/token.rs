//! `berth token create|list|revoke`: API tokens with a role on some namespaces or on
//! the whole cluster.

use anyhow::{Context as _, bail};
use chrono::{SubsecRound, Utc};
use serde_json::{Value, json};

use crate::commands::Context;
use crate::commands::get::{self, GetArgs};
use crate::kinds;
use crate::output::{Format, text};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only this once).
    ///
    /// Name the namespaces it is for with -n/--namespace (repeatable), or pass --cluster.
    Create(CreateArgs),
    /// List tokens (never their secrets).
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
    },
    /// Revoke a token: it stops working at once.
    #[command(alias = "delete")]
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The token's name.
    name: String,
    /// What the token may do: view reads, edit also writes, admin also manages
    /// namespaces, secrets' data and (cluster-wide) tokens; scanner (with --cluster) reads
    /// and marks images (deny-execution, vulnerability reports).
    #[arg(long, value_parser = ["view", "edit", "admin", "scanner"])]
    role: String,
    /// Grant the role on the whole cluster instead of on namespaces.
    #[arg(long)]
    cluster: bool,
    /// What the token is for.
    #[arg(long)]
    description: Option<String>,
    /// Make the token expire after this long: 30m, 24h, 7d, 1h30m (s, m, h, d, w).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires_in: Option<chrono::Duration>,
}

pub fn run(ctx: &Context, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => create(ctx, args),
        TokenCommand::List { output } => get::run(ctx, GetArgs { kind: kinds::TOKEN.plural.to_string(), output, ..GetArgs::default() }),
        TokenCommand::Revoke { name } => {
            ctx.client()?.delete(&kinds::TOKEN.object("", &name))?;
            println!("{} {name:?} revoked", kinds::TOKEN.qualified());
            Ok(())
        }
    }
}

fn create(ctx: &Context, args: CreateArgs) -> anyhow::Result<()> {
    // Only namespaces typed on this command line count: a token's reach must never come
    // from whatever $BERTH_NAMESPACE happens to be.
    let namespaces: Vec<String> = match (args.cluster, ctx.typed_namespaces()) {
        (true, []) => vec!["*".to_string()],
        (false, []) => bail!("say where the token applies: -n/--namespace NS (repeatable), or --cluster"),
        (true, _) => bail!("--cluster and --namespace cannot be combined: a cluster token already covers every namespace"),
        (false, typed) => typed.to_vec(),
    };
    let mut spec = json!({"role": args.role, "namespaces": namespaces});
    if let Some(description) = args.description {
        spec["description"] = Value::String(description);
    }
    if let Some(lifetime) = args.expires_in {
        let at = (Utc::now() + lifetime).trunc_subsecs(0);
        spec["expirationTimestamp"] = Value::String(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let kind = &kinds::TOKEN;
    let token = json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": args.name}, "spec": spec});
    let created = ctx.client()?.post(&kind.collection(None), &token)?;
    let bearer = text(&created, "/status/token");
    if bearer.is_empty() {
        bail!("the server created token {:?} but sent no bearer token back: revoke it and try again", args.name);
    }
    println!("{bearer}");
    eprintln!("token {:?} created: this is the only time it is shown; pass it with --token or $BERTH_TOKEN", args.name);
    Ok(())
}

/// Parses `90s`, `30m`, `24h`, `7d`, `2w` and sums like `1h30m`. A token's lifetime
/// needs its unit written out and must be longer than nothing.
fn parse_duration(typed: &str) -> anyhow::Result<chrono::Duration> {
    if typed.trim().bytes().all(|b| b.is_ascii_digit()) {
        bail!("{typed:?} is not a duration: use a number and a unit, as in 30m, 24h or 7d");
    }
    let duration = berth_model::duration::parse_duration(typed).map_err(|err| anyhow::anyhow!(err))?;
    if duration.is_zero() {
        bail!("{typed:?} is no time at all: use a number and a unit, as in 30m, 24h or 7d");
    }
    chrono::Duration::from_std(duration).with_context(|| format!("{typed:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_sums() {
        assert_eq!(parse_duration("24h").unwrap(), chrono::Duration::hours(24));
        assert_eq!(parse_duration("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_duration("1h30m").unwrap(), chrono::Duration::minutes(90));
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
