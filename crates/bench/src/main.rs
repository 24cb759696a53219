//! `berth-bench-seed`: writes the benchmark's catalog straight into a data directory,
//! through the same store and the same tag rules as the server, so that a load test
//! starts on a realistic store in seconds instead of hours of API calls.

use std::path::PathBuf;

use anyhow::Context;
use berth_model::core::{Namespace, NamespaceStatus};
use berth_model::image::{Image, ImageLayer};
use berth_model::imagestream::{ImageStream, ImageStreamSpec, TagReference};
use berth_model::meta::ObjectReference;
use berth_model::policy::ImagePolicy;
use berth_model::{Digest, ObjectMeta, Time, tags};
use berth_server::services::Resource;
use berth_store::{MetadataStore, PostgresStore, Precondition, SqliteStore, Synchronous, transact};
use clap::Parser;
use serde_json::json;

/// Seeds a berth data directory for benchmarks.
#[derive(Parser)]
struct Args {
    /// The data directory to create (it must not hold a store yet).
    #[arg(long)]
    data_dir: PathBuf,
    /// Seed this (empty) PostgreSQL database instead of the data directory's SQLite store.
    #[arg(long)]
    database: Option<String>,
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    #[arg(long, default_value_t = 100)]
    streams_per_namespace: usize,
    #[arg(long, default_value_t = 10)]
    tags: usize,
    #[arg(long, default_value_t = 5)]
    history: usize,
    /// Distinct images the histories point at.
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// ImagePolicies to write (the admission benchmark): 90% scoped to one namespace
    /// each by label (every namespace is labelled `team=<its name>`), 10% Deny rules for
    /// other registries, and one that requires images berth knows, with a label.
    #[arg(long, default_value_t = 0)]
    policies: usize,
    /// Base images whose layers the images share: each image has the 3 layers of one base
    /// (of this many) and 2 of its own, as images built FROM a few bases do. 0: every
    /// image's 5 layers are its own.
    #[arg(long, default_value_t = 0)]
    bases: usize,
}

/// The benchmark's rule set: what a platform team with many tenants writes.
fn policies(count: usize, namespaces: usize) -> Vec<ImagePolicy> {
    (0..count)
        .map(|idx| {
            let spec = if idx == 0 {
                json!({"resources": ["pods"], "require": {"known": true,
                    "labels": {"matchExpressions": [{"key": "org.opencontainers.image.version", "operator": "Exists"}]}}})
            } else if idx % 10 == 0 {
                json!({"action": "Deny", "images": {"registries": [format!("evil-{idx}.example"), format!("*.evil-{idx}.example")]}})
            } else {
                let team = format!("ns-{:03}", idx % namespaces.max(1));
                json!({"resources": ["pods", "deployments"], "namespaceSelector": {"matchLabels": {"team": team}},
                    "require": {"registries": ["registry.example.com", "*.corp.example"], "repositories": [format!("{team}/*"), "library/*"]},
                    "message": format!("ask the {team} platform owners")})
            };
            let policy = json!({"apiVersion": "berth.dev/v1", "kind": "ImagePolicy", "metadata": {"name": format!("rule-{idx:04}")}, "spec": spec});
            serde_json::from_value(policy).expect("the benchmark's policies are valid")
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(args.data_dir.join("blobs"))?;
    let store: Box<dyn MetadataStore> = match &args.database {
        Some(url) => Box::new(PostgresStore::connect(url).context("opening the database")?),
        None => {
            let db = args.data_dir.join("berth.db");
            anyhow::ensure!(!db.exists(), "{} already holds a store", db.display());
            Box::new(SqliteStore::open(&db, Synchronous::Normal).context("opening the store")?)
        }
    };
    let base = Time::from_datetime(chrono::DateTime::from_timestamp(1_790_000_000, 0).context("time")?);

    let images: Vec<Image> = (0..args.images).map(|idx| image(idx, args.bases, base)).collect();
    for chunk in images.chunks(500) {
        let chunk = chunk.to_vec();
        transact(&*store, move |txn| {
            for image in &chunk {
                txn.put(&Image::key("", &image.metadata.name), &image.encode(), &[], Precondition::Absent)?;
            }
            Ok::<_, berth_store::StoreError>(())
        })?;
    }
    let rules = policies(args.policies, args.namespaces);
    transact(&*store, move |txn| {
        for policy in &rules {
            txn.put(&ImagePolicy::key("", &policy.metadata.name), &policy.encode(), &[], Precondition::Absent)?;
        }
        Ok::<_, berth_store::StoreError>(())
    })?;
    for ns_idx in 0..args.namespaces {
        let namespace = format!("ns-{ns_idx:03}");
        let streams: Vec<ImageStream> = (0..args.streams_per_namespace)
            .map(|s_idx| stream(&args, &namespace, ns_idx * args.streams_per_namespace + s_idx, s_idx, &images, base))
            .collect();
        transact(&*store, move |txn| {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: namespace.clone(),
                    uid: format!("ns-{ns_idx}"),
                    creation_timestamp: Some(base),
                    labels: [("team".to_string(), namespace.clone())].into(),
                    ..ObjectMeta::default()
                },
                status: NamespaceStatus { phase: "Active".into() },
                ..Namespace::default()
            };
            txn.put(&Namespace::key("", &namespace), &ns.encode(), &[], Precondition::Absent)?;
            for stream in &streams {
                txn.put(&ImageStream::key(&namespace, &stream.metadata.name), &stream.encode(), &stream.refs(), Precondition::Absent)?;
            }
            Ok::<_, berth_store::StoreError>(())
        })?;
    }
    println!(
        "seeded {} namespaces, {} image streams, {} tags each with {} history entries, {} images, {} image policies; revision {}",
        args.namespaces,
        args.namespaces * args.streams_per_namespace,
        args.tags,
        args.history,
        args.images,
        args.policies,
        store.current_revision()?
    );
    Ok(())
}

fn image(idx: usize, bases: usize, created: Time) -> Image {
    let layers: Vec<ImageLayer> = (0..5)
        .map(|l| ImageLayer {
            name: match bases {
                0 => Digest::sha256_of(format!("layer-{idx}-{l}").as_bytes()).to_string(),
                _ if l < 3 => Digest::sha256_of(format!("base-{}-{l}", idx % bases).as_bytes()).to_string(),
                _ => Digest::sha256_of(format!("layer-{idx}-{l}").as_bytes()).to_string(),
            },
            size: 10_000_000 + (idx * 7919 + l * 104_729) as i64 % 50_000_000,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(format!("config-{idx}").as_bytes()).to_string(), "size": 1500},
        "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.name, "size": l.size})).collect::<Vec<_>>(),
    })
    .to_string();
    let digest = Digest::sha256_of(manifest.as_bytes());
    Image {
        metadata: ObjectMeta {
            name: digest.to_string(),
            uid: format!("img-{idx}"),
            creation_timestamp: Some(created),
            ..ObjectMeta::default()
        },
        docker_image_reference: format!("registry.example.com/library/app@{digest}"),
        docker_image_metadata: Some(json!({
            "kind": "DockerImage", "apiVersion": "image.openshift.io/1.0", "Id": digest.to_string(), "Created": created,
            "Architecture": "amd64", "Os": "linux", "Size": layers.iter().map(|l| l.size).sum::<i64>(),
            "Config": {"Env": ["PATH=/usr/local/bin:/usr/bin", format!("APP_VERSION={idx}")], "ExposedPorts": {"8080/tcp": {}},
                       "Labels": {"org.opencontainers.image.version": format!("1.{idx}")}, "User": "1001", "Cmd": ["/usr/bin/app"]},
        })),
        docker_image_metadata_version: "1.0".into(),
        docker_image_manifest: manifest,
        docker_image_manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        docker_image_layers: layers,
        ..Image::default()
    }
}

fn stream(args: &Args, namespace: &str, global_idx: usize, s_idx: usize, images: &[Image], base: Time) -> ImageStream {
    let name = format!("app-{s_idx:03}");
    let spec_tags = (0..args.tags)
        .map(|t| TagReference {
            name: format!("t{t}"),
            from: Some(ObjectReference {
                kind: tags::KIND_DOCKER_IMAGE.into(),
                name: format!("registry.example.com/{namespace}/{name}:t{t}"),
                ..ObjectReference::default()
            }),
            ..TagReference::default()
        })
        .collect();
    let mut stream = ImageStream {
        metadata: ObjectMeta {
            name,
            namespace: namespace.to_string(),
            uid: format!("is-{global_idx}"),
            creation_timestamp: Some(base),
            ..ObjectMeta::default()
        },
        spec: ImageStreamSpec { tags: spec_tags, ..ImageStreamSpec::default() },
        ..ImageStream::default()
    };
    tags::prepare_create(&mut stream, &tags::SourceStreams::new(), base).expect("generated streams are valid");
    for t in 0..args.tags {
        for h in 0..args.history {
            let image = &images[(global_idx * 31 + t * 7 + h) % images.len()];
            let at = Time::from_datetime(base.0 + chrono::Duration::minutes((t * args.history + h) as i64));
            tags::map_image(&mut stream, &format!("t{t}"), image, at);
        }
    }
    stream
}
