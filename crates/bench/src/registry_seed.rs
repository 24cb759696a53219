//! `berth-bench-registry-seed`: fills one repository of a running registry (the import
//! benchmark's local distribution registry) with distinct small images and several tags
//! per image, over the registry HTTP API, with berth-testkit's deterministic images.
//!
//! Image `i` is OCI when `i` is even and Docker schema 2 when it is odd, with 2 or 3
//! layers of 2-5 KB; the same arguments always give the same digests. Its tags, for the
//! version `M.m.p` that `i` stands for (1.0.0, 1.0.1, ... 1.4.9, 2.0.0, ...):
//!
//! - `M.m.p` and `vM.m.p`;
//! - a build id: `M.m.p-b<build number>`;
//! - a commit id, `sha-<7 hex digits>`, except the newest image, which is `latest`;
//! - `vM.m` on the last patch of each minor version, `M.m.p-rc1` on the others;
//!
//! and, when asked for more than 5 tags an image, `M.m.p-<n>` for the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use berth_testkit::{Format, RegistryClient, TestImage};
use clap::Parser;
use sha2::{Digest as _, Sha256};

/// Pushes distinct images and their tags into a registry repository.
#[derive(Parser)]
struct Args {
    /// The registry, `host:port`, reached over plain HTTP.
    #[arg(long)]
    registry: String,
    /// The repository to push to.
    #[arg(long, default_value = "bench/app")]
    repository: String,
    /// How many distinct images.
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// How many tags in all; a multiple of --images, each image getting the same number.
    #[arg(long, default_value_t = 500)]
    tags: usize,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// HTTP Basic credentials, `user:password`, if the registry needs them.
    #[arg(long)]
    creds: Option<String>,
}

/// Minor versions per major version and patches per minor version of the tag names.
const MINORS: usize = 5;
const PATCHES: usize = 10;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.images > 0 && args.parallel > 0, "--images and --parallel must be positive");
    ensure!(
        args.tags >= args.images && args.tags.is_multiple_of(args.images),
        "--tags ({}) must be a positive multiple of --images ({})",
        args.tags,
        args.images
    );
    let per_image = args.tags / args.images;
    let credentials = args.creds.as_deref().map(|creds| creds.split_once(':').context("--creds is user:password")).transpose()?;
    let client = RegistryClient::new(&args.registry, credentials)?;
    ensure!(client.ping(), "the registry at {} does not answer GET /v2/ with 200", args.registry);

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.parallel.min(args.images))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let idx = next.fetch_add(1, Ordering::Relaxed);
                        if idx >= args.images {
                            return Ok(());
                        }
                        let image = image(idx);
                        let tags = tags(idx, args.images, per_image);
                        let pushed = client
                            .push(&args.repository, Some(&tags[0]), &image)
                            .with_context(|| format!("pushing image {idx} as {}", tags[0]))?;
                        for tag in &tags[1..] {
                            client
                                .push_manifest(&args.repository, Some(tag), &pushed.media_type, &pushed.manifest)
                                .with_context(|| format!("tagging image {idx} as {tag}"))?;
                        }
                        let size = image.layers.iter().map(Vec::len).sum::<usize>() + image.config_bytes().len();
                        bytes.fetch_add(size, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().expect("a push worker panicked"))
    })?;
    println!(
        "pushed {} images ({} OCI, {} Docker; {} KB of blobs) and {} tags to {}/{} in {:.1} s",
        args.images,
        args.images.div_ceil(2),
        args.images / 2,
        bytes.load(Ordering::Relaxed) / 1000,
        args.images * per_image,
        args.registry,
        args.repository,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Image `idx`: OCI or Docker in turn, 2 or 3 layers of 2-5 KB.
fn image(idx: usize) -> TestImage {
    let format = if idx.is_multiple_of(2) { Format::Oci } else { Format::Docker };
    let layers = 2 + (idx / 2) % 2;
    let layer_size = 2048 + (idx % 4) * 1024;
    // Seeds far from testkit's small test seeds, so these never share layers with them.
    TestImage::new(format, 0xbe4c_0000 + idx as u64, layers, layer_size, "amd64")
}

/// The tags of image `idx` of `images`, `per_image` of them; the first is pushed with the blobs.
fn tags(idx: usize, images: usize, per_image: usize) -> Vec<String> {
    let (major, minor, patch) = (1 + idx / (MINORS * PATCHES), (idx / PATCHES) % MINORS, idx % PATCHES);
    let version = format!("{major}.{minor}.{patch}");
    let commit = &hex::encode(Sha256::digest(format!("commit-{idx}").as_bytes()))[..7];
    let mut tags = vec![
        version.clone(),
        format!("v{version}"),
        format!("{version}-b{}", 4000 + idx * 3),
        if idx + 1 == images { "latest".to_string() } else { format!("sha-{commit}") },
        if patch + 1 == PATCHES { format!("v{major}.{minor}") } else { format!("{version}-rc1") },
    ];
    tags.extend((tags.len()..per_image).map(|n| format!("{version}-{n}")));
    tags.truncate(per_image);
    tags
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn tags_are_distinct_and_valid_and_images_distinct() {
        let all: Vec<String> = (0..100).flat_map(|idx| tags(idx, 100, 5)).collect();
        assert_eq!(all.len(), 500);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 500, "no tag names two images");
        let valid = |tag: &str| {
            tag.len() <= 128
                && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        assert!(all.iter().all(|tag| valid(tag)), "{all:?}");
        for expected in ["latest", "1.0.0", "v1.0.0", "1.0.0-b4000", "v1.0", "1.0.1-rc1", "2.4.9"] {
            assert!(all.iter().any(|tag| tag == expected), "{expected}");
        }
        assert!(all.iter().any(|tag| tag.starts_with("sha-") && tag.len() == 11));
        assert_eq!(tags(3, 10, 7).len(), 7);
        assert_eq!(tags(3, 10, 2), ["1.0.3", "v1.0.3"]);
        let digests: HashSet<String> = (0..100).map(|idx| image(idx).digest()).collect();
        assert_eq!(digests.len(), 100);
        assert_eq!(image(0).digest(), image(0).digest());
        assert_eq!((image(0).layers.len(), image(2).layers.len(), image(1).format), (2, 3, Format::Docker));
    }
}
