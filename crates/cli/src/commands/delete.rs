//! `berth delete KIND NAME...`.

use anyhow::bail;

use crate::commands::Context;
use crate::kinds;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The kind: imagestreams (is), imagestreamtags (istag), imagetags (itag), images,
    /// namespaces (ns), secrets, tokens, subscriptions (sub).
    kind: String,
    /// The objects to delete.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(ctx: &Context, args: DeleteArgs) -> anyhow::Result<()> {
    let kind = kinds::lookup(&args.kind)?;
    if kind.kind == kinds::SCHEDULED_IMPORT.kind {
        bail!(
            "scheduled imports are the tags whose importPolicy.scheduled is true: stop one with \
             `berth import-image STREAM:TAG --scheduled=false`"
        );
    }
    if !kind.delete {
        bail!("the server cannot delete {}: delete the image stream tag (istag) or the image instead", kind.plural);
    }
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    for name in &args.names {
        client.delete(&kind.object(&namespace, name))?;
        println!("{} {name:?} deleted", kind.qualified());
    }
    Ok(())
}
