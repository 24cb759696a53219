//! `berth config`: the client config `berth serve` wrote, and a kubeconfig with the same
//! server, CA and token for kubectl.

use anyhow::Context as _;
use base64::Engine;
use serde_json::json;

use crate::commands::Context;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Show the client config: the server, the CA it is trusted with, the token's name.
    View,
    /// Print a kubeconfig for kubectl: this server (with its CA), the token, and the
    /// namespace `-n` names (default: default). Use it with `kubectl --kubeconfig FILE`, or
    /// merge it into ~/.kube/config.
    Kubeconfig,
}

pub fn run(ctx: &Context, command: ConfigCommand) -> anyhow::Result<()> {
    let config = ctx.config()?.context("no client config: start a server with `berth serve` on this machine, or write one")?;
    match command {
        ConfigCommand::View => {
            let token_name = config.token.strip_prefix("brt_").and_then(|t| t.split('.').next()).unwrap_or("(not a berth token)");
            println!("server: {}", config.server);
            println!("token: {token_name} (the secret is not shown)");
            match &config.certificate_authority {
                Some(ca) => println!("certificateAuthority: {}", ca.display()),
                None => println!("certificateAuthority: <none: the system's CAs>"),
            }
        }
        ConfigCommand::Kubeconfig => {
            let mut cluster = json!({"server": config.server});
            if let Some(ca) = &config.certificate_authority {
                let pem = std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?;
                cluster["certificate-authority-data"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
            let kubeconfig = json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "berth", "cluster": cluster}],
                "users": [{"name": "berth", "user": {"token": config.token}}],
                "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": "berth", "namespace": ctx.namespace()}}],
                "current-context": "berth",
            });
            print!("{}", yaml_serde::to_string(&kubeconfig)?);
        }
    }
    Ok(())
}
