//! `cargo bench -p berth-lineage --bench index`: the image chain index at the scale of a big registry, beside the
//! full scan zot runs for every BaseImageList / DerivedImageList query.
//!
//! A generated population: `--bases` base images in a tree (roots of 1-5 layers, each
//! other base extends an earlier one by 1-5 layers, so bases share prefixes and branch, up
//! to 40 layers deep), then application images up to `--images` in all, each on a base
//! chosen with a skew (a few bases are very popular, as in real registries) adding 1-4
//! layers of its own; a tenth of them are built on another application image instead, and
//! one in twenty carries the OCI base annotation. The population is held compactly
//! (parents and layer counts) and each image's facts are made in batches, so that the
//! resident memory measured after the build is the index's.
//!
//! Prints: the build time and insertion rate, resident memory per image, ancestors and
//! descendants latency (p50, p99, max) for application images and for bases, the same
//! queries answered by a scan (every image's layer list compared with the target's, as
//! zot does, here over 32-byte digests held in memory, which is faster than zot's scan of
//! its database), and the ratio; then removals.

use std::time::{Duration, Instant};

use berth_lineage::{ImageFacts, Index};
use berth_model::Digest;
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest as _, Sha256};

/// The allocator the `berth` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Images in all, bases included.
    #[arg(long, default_value_t = 1_000_000)]
    images: usize,
    #[arg(long, default_value_t = 1_000)]
    bases: usize,
    /// Queries timed per kind against the index.
    #[arg(long, default_value_t = 10_000)]
    queries: usize,
    /// Queries timed per kind against the scan (each reads every image).
    #[arg(long, default_value_t = 50)]
    scans: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

const NONE: u32 = u32::MAX;

/// The population: for each image, what it is built on, and its own layers (whose
/// digests are the sha256 of `(image, k)`).
struct Population {
    parent: Vec<u32>,
    own_layers: Vec<u8>,
    annotated: Vec<bool>,
}

impl Population {
    fn generate(args: &Args) -> Population {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let mut parent = Vec::with_capacity(args.images);
        let mut own_layers = Vec::with_capacity(args.images);
        let mut depth: Vec<u8> = Vec::with_capacity(args.images);
        let mut annotated = Vec::with_capacity(args.images);
        let roots = (args.bases / 20).max(1);
        for i in 0..args.bases.min(args.images) {
            let (p, d) = if i < roots {
                (NONE, 0)
            } else {
                let p = rng.random_range(0..i);
                if depth[p] >= 35 { (NONE, 0) } else { (p as u32, depth[p]) }
            };
            let own = rng.random_range(1..=5u8);
            parent.push(p);
            own_layers.push(own);
            depth.push(d + own);
            annotated.push(false);
        }
        for i in args.bases..args.images {
            // A skewed choice: the square of a uniform number favours the first bases.
            let on_app = rng.random_bool(0.1) && i > args.bases;
            let p = if on_app {
                rng.random_range(args.bases..i)
            } else {
                let u: f64 = rng.random();
                ((u * u) * args.bases as f64) as usize
            };
            let own = if on_app { rng.random_range(1..=2u8) } else { rng.random_range(1..=4u8) };
            let (p, own) = if depth[p] as usize + own as usize > 40 { (NONE, own) } else { (p as u32, own) };
            parent.push(p);
            own_layers.push(own);
            depth.push(if p == NONE { own } else { depth[p as usize] + own });
            annotated.push(rng.random_bool(0.05));
        }
        Population { parent, own_layers, annotated }
    }

    fn len(&self) -> usize {
        self.parent.len()
    }

    fn digest(i: usize) -> [u8; 32] {
        Sha256::digest(format!("image {i}").as_bytes()).into()
    }

    fn layer(i: usize, k: u8) -> [u8; 32] {
        Sha256::digest(format!("layer {i} {k}").as_bytes()).into()
    }

    /// The image's layers, base first.
    fn layers(&self, i: usize) -> Vec<[u8; 32]> {
        let mut owners = vec![i];
        let mut up = self.parent[i];
        while up != NONE {
            owners.push(up as usize);
            up = self.parent[up as usize];
        }
        owners.iter().rev().flat_map(|&owner| (0..self.own_layers[owner]).map(move |k| Population::layer(owner, k))).collect()
    }

    fn facts(&self, i: usize) -> ImageFacts {
        let mut facts = ImageFacts::new(Digest::from_sha256(&Population::digest(i)));
        facts.layers = self.layers(i).iter().map(Digest::from_sha256).collect();
        if self.annotated[i] && self.parent[i] != NONE {
            facts.base = Some(Digest::from_sha256(&Population::digest(self.parent[i] as usize)));
        }
        facts
    }
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Timings(Vec<Duration>);

impl Timings {
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let at = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[at]
    }

    fn summary(&mut self) -> String {
        format!("p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}", self.percentile(0.5), self.percentile(0.99), self.percentile(1.0))
    }
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let population = Population::generate(&args);
    println!(
        "population: {} images on {} bases, generated in {:.1?} (seed {})",
        population.len(),
        args.bases,
        started.elapsed(),
        args.seed
    );

    // Build: facts are made a batch at a time, only the inserts are timed.
    let before = resident_kib();
    let mut index = Index::new();
    let mut building = Duration::ZERO;
    let mut layers_total = 0usize;
    for batch in (0..population.len()).collect::<Vec<_>>().chunks(10_000) {
        let facts: Vec<ImageFacts> = batch.iter().map(|&i| population.facts(i)).collect();
        layers_total += facts.iter().map(|f| f.layers.len()).sum::<usize>();
        let start = Instant::now();
        for f in &facts {
            index.insert(f);
        }
        building += start.elapsed();
    }
    let after = resident_kib();
    let n = population.len() as f64;
    println!(
        "index build: {:.2?} for {} images ({:.0} inserts/s); {} distinct chains, {:.1} layers per image",
        building,
        index.len(),
        n / building.as_secs_f64(),
        index.chain_count(),
        layers_total as f64 / n
    );
    println!(
        "resident memory: {} MiB after the build ({} MiB before it): {:.0} bytes per image",
        after / 1024,
        before / 1024,
        (after.saturating_sub(before) * 1024) as f64 / n
    );

    let mut rng = StdRng::seed_from_u64(args.seed + 1);
    let apps: Vec<usize> = (0..args.queries).map(|_| rng.random_range(args.bases.min(population.len() - 1)..population.len())).collect();
    let bases: Vec<usize> = (0..args.queries).map(|_| rng.random_range(0..args.bases.min(population.len()))).collect();
    let digest_of = |i: usize| Digest::from_sha256(&Population::digest(i));
    let report = |name: &str, targets: &[usize], descendants: bool| -> Duration {
        let mut times = Timings(Vec::with_capacity(targets.len()));
        let mut results = 0usize;
        for &i in targets {
            let digest = digest_of(i);
            let start = Instant::now();
            let answer = if descendants { index.descendants(&digest) } else { index.ancestors(&digest) };
            times.0.push(start.elapsed());
            results += answer.map_or(0, |a| a.len());
        }
        let total: Duration = times.0.iter().sum();
        let p50 = times.percentile(0.5);
        println!(
            "index {name:<24} {}  mean {:.1} results, {:.0} ns per result",
            times.summary(),
            results as f64 / targets.len() as f64,
            total.as_nanos() as f64 / results.max(1) as f64
        );
        p50
    };
    let index_app_descendants = report("descendants of an app", &apps, true);
    let index_app_ancestors = report("ancestors of an app", &apps, false);
    let index_base_descendants = report("descendants of a base", &bases, true);
    report("ancestors of a base", &bases, false);

    // The scan: every image's layers held in memory as 32-byte digests.
    let held: Vec<Box<[[u8; 32]]>> = (0..population.len()).map(|i| population.layers(i).into_boxed_slice()).collect();
    let scan = |target: usize, descendants: bool| -> usize {
        let layers = &held[target];
        held.iter()
            .enumerate()
            .filter(|(i, other)| {
                *i != target && if descendants { other.starts_with(layers) } else { !other.is_empty() && layers.starts_with(other) }
            })
            .count()
    };
    let scan_report = |name: &str, targets: &[usize], descendants: bool, index_p50: Duration| {
        let mut times = Timings(Vec::new());
        for &i in targets.iter().take(args.scans) {
            let start = Instant::now();
            std::hint::black_box(scan(i, descendants));
            times.0.push(start.elapsed());
        }
        let p50 = times.percentile(0.5);
        println!(
            "scan  {name:<24} {}  index is {:.0}x faster at p50",
            times.summary(),
            p50.as_secs_f64() / index_p50.as_secs_f64().max(1e-9)
        );
    };
    scan_report("descendants of an app", &apps, true, index_app_descendants);
    scan_report("ancestors of an app", &apps, false, index_app_ancestors);
    scan_report("descendants of a base", &bases, true, index_base_descendants);
    drop(held);

    // A class on the most popular root base. Its labels are computed on read: moving the
    // class's target costs resolving the new version's last chain once; then each image's
    // label is a walk up its chains against the classes' marks.
    let target = (0..args.bases.min(population.len())).find(|&i| population.parent[i] == NONE).unwrap_or(0);
    let layers: Vec<Digest> = population.layers(target).iter().map(Digest::from_sha256).collect();
    let chains = berth_lineage::chain_ids(&layers);
    let start = Instant::now();
    let chain = index.find_chain(layers.last().unwrap(), chains.last().unwrap()).expect("the base's chain is indexed");
    let resolving = start.elapsed();
    let start = Instant::now();
    let members = index.images_with_chain(chain).len();
    let enumerating = start.elapsed();
    let marks: std::collections::HashMap<berth_lineage::ChainRef, &str> = [(chain, "current")].into_iter().collect();
    let mut times = Timings(Vec::new());
    let mut labelled = 0usize;
    for &i in &apps {
        let digest = digest_of(i);
        let start = Instant::now();
        let label = index.chain_refs(&digest).iter().find_map(|c| marks.get(c)).is_some();
        times.0.push(start.elapsed());
        labelled += usize::from(label);
    }
    println!(
        "class on a base with {members} images: target move resolved in {resolving:.2?}; listing its images {enumerating:.2?}; \
         an image's class label {} ({labelled} of {} sampled apps labelled)",
        times.summary(),
        apps.len()
    );

    // Removals: a tenth of the application images, then their insertion again.
    let removed: Vec<usize> = (args.bases..population.len()).step_by(10).collect();
    let facts: Vec<ImageFacts> = removed.iter().map(|&i| population.facts(i)).collect();
    let start = Instant::now();
    for f in &facts {
        index.remove(&f.digest);
    }
    let removing = start.elapsed();
    let start = Instant::now();
    for f in &facts {
        index.insert(f);
    }
    println!(
        "{} removals in {:.2?} ({:.0}/s), inserted again in {:.2?}; {} images indexed",
        facts.len(),
        removing,
        facts.len() as f64 / removing.as_secs_f64(),
        start.elapsed(),
        index.len()
    );
}
