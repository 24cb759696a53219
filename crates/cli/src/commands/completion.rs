//! `berth completion SHELL`: prints a completion script generated from the command
//! definitions, so it never falls behind them.

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run<C: CommandFactory>(args: CompletionArgs) -> anyhow::Result<()> {
    let mut command = C::command();
    clap_complete::generate(args.shell, &mut command, "berth", &mut std::io::stdout());
    Ok(())
}
