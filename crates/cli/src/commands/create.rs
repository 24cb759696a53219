//! `berth create namespace NAME`.

use serde_json::json;

use crate::commands::Context;
use crate::kinds;

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a namespace.
    #[command(alias = "ns")]
    Namespace {
        /// The namespace's name.
        name: String,
    },
}

pub fn run(ctx: &Context, command: CreateCommand) -> anyhow::Result<()> {
    match command {
        CreateCommand::Namespace { name } => {
            let kind = &kinds::NAMESPACE;
            let namespace = json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name}});
            ctx.client()?.post(&kind.collection(None), &namespace)?;
            println!("{}/{name} created", kind.qualified());
            Ok(())
        }
    }
}
