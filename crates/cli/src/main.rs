//! `berth`: the server (`berth serve`) and a kubectl/oc-style client for it.
//!
//! This file holds the command line's shape and the dispatch; each verb lives in
//! [`commands`], the HTTP client in [`client`], the kind table in [`kinds`] and every
//! way of printing in [`output`].

mod client;
mod commands;
mod kinds;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands::Context;

/// mimalloc allocates faster under many concurrent requests: glibc's malloc was 15% of
/// the server's CPU in the catalog benchmark (BENCHMARKS.md). Bytes in use are counted
/// (one relaxed atomic add per allocation, on a counter of the thread's own), so that
/// `/metrics` tells live data from what the allocator keeps.
#[global_allocator]
static ALLOCATOR: Counted = Counted(mimalloc::MiMalloc);

struct Counted(mimalloc::MiMalloc);

/// The live byte count, in slots on cache lines of their own: threads allocating at once
/// do not contend for one counter. A thread takes a slot the first time it allocates; a
/// slot may go below zero (memory freed by another thread than the one that allocated
/// it), the sum does not.
#[repr(align(128))]
struct Slot(std::sync::atomic::AtomicIsize);
const SLOTS: usize = 16;
static LIVE: [Slot; SLOTS] = [const { Slot(std::sync::atomic::AtomicIsize::new(0)) }; SLOTS];
static NEXT_SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    // No destructor and a constant start: reading it allocates nothing.
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn count(delta: isize) {
    let slot = SLOT
        .try_with(|slot| {
            if slot.get() == usize::MAX {
                slot.set(NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS);
            }
            slot.get()
        })
        .unwrap_or(0);
    LIVE[slot].0.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
}

// SAFETY: every call goes to mimalloc with its arguments unchanged; the counting touches
// no memory of the caller's.
unsafe impl std::alloc::GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Gives the calling thread's free memory (and what other threads left behind) back to
/// the system: mimalloc's forced collection.
pub(crate) fn release_memory() {
    // SAFETY: mi_collect takes no pointers; it works on the calling thread's heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Gives every free page of the process back to the system: mimalloc's forced collection
/// (which also returns its arenas' free pages at once, not after its purge delay) and
/// glibc's trim of the heap SQLite allocates from.
pub(crate) fn release_all_memory() {
    release_memory();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and is safe to call from any thread.
        unsafe { malloc_trim(0) };
    }
}

/// The bytes Rust code has allocated and not freed.
pub(crate) fn heap_live() -> u64 {
    LIVE.iter().map(|slot| slot.0.load(std::sync::atomic::Ordering::Relaxed)).sum::<isize>().max(0) as u64
}

/// berth: an image catalog that speaks OpenShift's image API.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every client verb understands.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The berth server's URL, e.g. http://127.0.0.1:7440 (default: the client config's).
    #[arg(long, global = true, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// The bearer token to authenticate with (default: the client config's).
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The namespace to work in [env: BERTH_NAMESPACE] [default: default]. `token create`
    /// reads it, repeated, as the namespaces the token is for.
    // The environment variable is read by hand (see `Context::namespace`) so that
    // `token create` only ever grants namespaces typed on its own command line.
    #[arg(short = 'n', long = "namespace", global = true, value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// The client config file that `berth serve` writes and the client reads.
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// A PEM file with the CA that signed the server's certificate (default: the client
    /// config's, which `berth serve --tls=self-signed` writes).
    #[arg(long, global = true, env = "BERTH_CERTIFICATE_AUTHORITY", value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the berth server.
    Serve(commands::serve::ServeArgs),
    /// Create or update objects from a JSON or YAML file.
    Apply(commands::apply::ApplyArgs),
    /// List objects, or show one.
    Get(commands::get::GetArgs),
    /// Show an image stream, an image stream tag or a subscription in detail.
    Describe(commands::describe::DescribeArgs),
    /// Delete objects by kind and name.
    Delete(commands::delete::DeleteArgs),
    /// Create an object from the command line.
    #[command(subcommand)]
    Create(commands::create::CreateCommand),
    /// Point image stream tags at another tag or image, or at an image of another
    /// registry (and wait for its import).
    Tag(commands::tag::TagArgs),
    /// What changed in a tag's contract between two of its images, each change judged
    /// compatible or breaking.
    Diff(commands::contract::DiffArgs),
    /// Change the metadata of every image a stream or tag points at, without a new image:
    /// environment, ports, volumes, labels, user, working directory, entrypoint, cmd,
    /// resources.
    Override(commands::contract::OverrideArgs),
    /// Point a tag back at an earlier image of its history (imports from upstream pause).
    Rollback(commands::contract::RollbackArgs),
    /// Generate Kubernetes objects from a tag's contract.
    #[command(subcommand)]
    Generate(commands::contract::GenerateCommand),
    /// Import images from another registry into an image stream.
    ImportImage(commands::import_image::ImportImageArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Set-up for cluster administrators: the admission webhook configuration.
    #[command(subcommand)]
    Adm(commands::adm::AdmCommand),
    /// What an image is built on and what is built on it (lineage).
    #[command(subcommand)]
    Lineage(commands::lineage::LineageCommand),
    /// The images of an ImageClass: current and outdated ones, their tags, their usage.
    #[command(subcommand)]
    Class(commands::lineage::ClassCommand),
    /// Show who changed what: the server's audit trail (cluster admins).
    Audit(commands::audit::AuditArgs),
    /// Print a shell completion script.
    Completion(commands::completion::CompletionArgs),
    /// Show the client config, or print a kubeconfig for kubectl.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(cli.global);
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(&ctx, args),
        Command::Apply(args) => commands::apply::run(&ctx, args),
        Command::Get(args) => commands::get::run(&ctx, args),
        Command::Describe(args) => commands::describe::run(&ctx, args),
        Command::Delete(args) => commands::delete::run(&ctx, args),
        Command::Create(command) => commands::create::run(&ctx, command),
        Command::Tag(args) => commands::tag::run(&ctx, args),
        Command::Diff(args) => commands::contract::diff(&ctx, args),
        Command::Override(args) => commands::contract::override_metadata(&ctx, args),
        Command::Rollback(args) => commands::contract::rollback(&ctx, args),
        Command::Generate(command) => commands::contract::generate(&ctx, command),
        Command::ImportImage(args) => commands::import_image::run(&ctx, args),
        Command::Token(command) => commands::token::run(&ctx, command),
        Command::Adm(command) => commands::adm::run(&ctx, command),
        Command::Lineage(command) => commands::lineage::run(&ctx, command),
        Command::Class(command) => commands::lineage::run_class(&ctx, command),
        Command::Audit(args) => commands::audit::run(&ctx, args),
        Command::Completion(args) => commands::completion::run::<Cli>(args),
        Command::Config(command) => commands::config::run(&ctx, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
