//! `berth-bench-admission`: load for berth's validating admission webhook, as the
//! Kubernetes API server sends it: AdmissionReviews (`admission.k8s.io/v1`) of the Pods
//! of `--workloads` Deployments (a ReplicaSet's pods, as the API server sees them: no name
//! yet, an owner reference), each with one container of a tag some stream of the pod's
//! namespace imports (`registry.example.com/ns-XXX/app-YYY:tZ`, as `berth-bench-seed`
//! writes them), over HTTPS with keep-alive connections.
//!
//! Two modes:
//! - `--rate R` (open loop): reviews are sent at R a second, on a fixed schedule, whatever
//!   the answers do; each latency counts from when its review was due, so a server that
//!   falls behind shows it (no coordinated omission).
//! - `--rate 0` (closed loop): `--connections` clients each send the next review when the
//!   last is answered: the most the server answers.
//!
//! Every answer is checked: HTTP 200, `allowed: true`, and the image resolved (the audit
//! annotation names a digest). Prints reviews/s, latency percentiles and errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// berth's URL (https://127.0.0.1:PORT).
    #[arg(long)]
    url: String,
    /// A token of cluster-read role.
    #[arg(long, env = "BERTH_TOKEN")]
    token: String,
    /// berth's CA certificate (PEM) to trust.
    #[arg(long)]
    ca: std::path::PathBuf,
    /// Reviews a second; 0 sends as fast as answers come back.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Connections (closed loop), or the most reviews in flight (open loop).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The seeded store's shape.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    #[arg(long, default_value_t = 100)]
    streams_per_namespace: usize,
    #[arg(long, default_value_t = 10)]
    tags: usize,
    /// Distinct Deployments whose pods are reviewed (spread over the namespaces).
    #[arg(long, default_value_t = 2000)]
    workloads: usize,
}

/// A review of a pod of Deployment `app-{stream}` in `ns-{ns}`, running the image tag
/// `app-{stream}:t{tag}`.
fn review(idx: usize, ns: usize, stream: usize, tag: usize) -> Vec<u8> {
    let namespace = format!("ns-{ns:03}");
    let image = format!("registry.example.com/{namespace}/app-{stream:03}:t{tag}");
    let hash = format!("{:x}", 0x5d8f_7c00 + stream * 16 + tag);
    let replica_set = format!("app-{stream:03}-{hash}");
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("bench-{idx}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": format!("{replica_set}-"), "namespace": namespace,
                    "labels": {"app": format!("app-{stream:03}"), "pod-template-hash": hash},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                        "uid": format!("rs-{ns}-{stream}"), "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]}},
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    });
    serde_json::to_vec(&body).expect("reviews serialise")
}

/// What one review got.
struct Outcome {
    latency: Duration,
    ok: bool,
}

async fn send(client: &reqwest::Client, url: &str, token: &str, body: Vec<u8>) -> bool {
    let Ok(response) = client.post(url).bearer_auth(token).header("content-type", "application/json").body(body).send().await else {
        return false;
    };
    if response.status() != reqwest::StatusCode::OK {
        return false;
    }
    let Ok(answer) = response.json::<Value>().await else { return false };
    let response = &answer["response"];
    response["allowed"] == true
        && response["auditAnnotations"].as_object().is_some_and(|a| {
            a.iter().any(|(k, v)| k.starts_with("berth.dev/resolved") && v.as_str().is_some_and(|v| v.contains("@sha256:")))
        })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let client = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca)?).build()?;
    let url = format!("{}/admission/validate?cluster=bench", args.url.trim_end_matches('/'));
    // Reviews made before the clock starts, one per workload, the workloads spread over
    // the namespaces, streams and tags.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.workloads)
            .map(|idx: usize| {
                let mix = idx.wrapping_mul(2_654_435_761usize);
                review(idx, idx % args.namespaces, (mix / 101) % args.streams_per_namespace, (mix / 10_007) % args.tags)
            })
            .collect(),
    );
    // Warm the connections and check the store answers as expected.
    for idx in 0..args.connections {
        ensure!(send(&client, &url, &args.token, bodies[idx].clone()).await, "a warm-up review was not admitted with a resolved image");
    }
    let metrics_url = format!("{}/metrics", args.url.trim_end_matches('/'));
    let before = handler_buckets(&client, &metrics_url, &args.token).await?;
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let outcomes: Vec<Outcome> = if args.rate == 0 {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..args.connections {
            let (client, url, token, bodies, next) = (client.clone(), url.clone(), args.token.clone(), bodies.clone(), next.clone());
            workers.spawn(async move {
                let mut got = Vec::new();
                while started.elapsed() < duration {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let ok = send(&client, &url, &token, bodies[idx % bodies.len()].clone()).await;
                    got.push(Outcome { latency: sent.elapsed(), ok });
                }
                got
            });
        }
        let mut all = Vec::new();
        while let Some(got) = workers.join_next().await {
            all.extend(got?);
        }
        all
    } else {
        let total = (args.rate * args.seconds) as usize;
        let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
        // The schedule is kept by a thread of its own: tokio's timer ticks by the
        // millisecond, which at 2,000/s would send reviews in late pairs.
        let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        std::thread::spawn(move || {
            for idx in 0..total {
                let due = started + interval * idx as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if due_tx.send((idx, due)).is_err() {
                    return;
                }
            }
        });
        let in_flight = Arc::new(tokio::sync::Semaphore::new(args.connections));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some((idx, due)) = due_rx.recv().await {
            let permit = in_flight.clone().acquire_owned().await?;
            let (client, url, token, body) = (client.clone(), url.clone(), args.token.clone(), bodies[idx % bodies.len()].clone());
            tasks.spawn(async move {
                let ok = send(&client, &url, &token, body).await;
                drop(permit);
                Outcome { latency: due.elapsed(), ok }
            });
        }
        let mut all = Vec::with_capacity(total);
        while let Some(outcome) = tasks.join_next().await {
            all.push(outcome?);
        }
        all
    };
    let elapsed = started.elapsed();
    let after = handler_buckets(&client, &metrics_url, &args.token).await?;
    let errors = outcomes.iter().filter(|o| !o.ok).count();
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    let mode =
        if args.rate == 0 { format!("closed loop, {} connections", args.connections) } else { format!("open loop at {}/s", args.rate) };
    println!(
        "{mode}: {} reviews in {:.1} s = {:.0}/s; latency ms p50 {} p90 {} p99 {} p99.9 {} max {}; errors {errors}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        outcomes.len() as f64 / elapsed.as_secs_f64(),
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(at(0.999)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );
    // berth's own histogram of the handler's time (request head in to response head out,
    // without TLS, the kernel or this client): the share of reviews under each bound.
    let count = after.last().map_or(0.0, |b| b.1) - before.last().map_or(0.0, |b| b.1);
    let shares: Vec<String> = after
        .iter()
        .zip(&before)
        .filter(|((le, _), _)| ["0.0005", "0.001", "0.0025", "0.005"].contains(&le.as_str()))
        .map(|((le, a), (_, b))| format!("<= {} ms {:.2}%", le.parse::<f64>().unwrap_or(0.0) * 1000.0, (a - b) / count.max(1.0) * 100.0))
        .collect();
    println!("  in berth's handler ({count} reviews): {}", shares.join(", "));
    Ok(())
}

/// The cumulative buckets of berth's `berth_http_request_duration_seconds` for the
/// validating webhook: `(le, count)`, `+Inf` last.
async fn handler_buckets(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let text = client.get(url).bearer_auth(token).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("berth_http_request_duration_seconds_bucket{") && line.contains("route=\"/admission/validate\""))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?.to_string();
            let count = line.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect())
}
