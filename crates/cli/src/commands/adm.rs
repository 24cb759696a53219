//! `berth adm`: what a cluster administrator sets up around berth and asks of it.
//! `admission-config` prints what registers berth's admission webhooks with a Kubernetes
//! cluster; `vulnerable` and `who-runs` answer what a mark on an image reaches.

use anyhow::Context as _;
use base64::Engine;
use serde_json::{Value, json};

use crate::commands::Context;

#[derive(Debug, clap::Subcommand)]
pub enum AdmCommand {
    /// Print the MutatingWebhookConfiguration and ValidatingWebhookConfiguration that
    /// register berth with a Kubernetes cluster (with berth's CA bundle filled in), the
    /// AdmissionConfiguration and kubeconfig with which the API server authenticates to
    /// berth, and the kubeconfig of the ImagePolicyWebhook plugin (the token given with --token, or the client config's: give it a token of
    /// role view on the whole cluster, e.g. `berth token create kube-apiserver --role view
    /// --cluster`).
    AdmissionConfig(AdmissionConfigArgs),
    /// What a mark on an image reaches: the image's marks, the stream tags pointing at
    /// it, every image built on it and their tags, and the workloads admission saw
    /// running any of them, per cluster and namespace.
    Vulnerable(crate::commands::lineage::ImpactArgs),
    /// The workloads admission saw running an image, or any image a tag has pointed at.
    WhoRuns(crate::commands::lineage::ImpactArgs),
    /// Usage reports: images and image streams with their storage, counted on distinct
    /// layers (all you may read; -n for one namespace).
    #[command(subcommand)]
    Top(crate::commands::lifecycle::TopCommand),
    /// Remove what is no longer needed (a dry run unless --confirm).
    #[command(subcommand)]
    Prune(crate::commands::lifecycle::PruneCommand),
    /// Check the blob store against the Images: manifests hash to their names, configs
    /// and layers of pushed images are stored and intact, links name stored blobs.
    Fsck(crate::commands::lifecycle::FsckArgs),
}

#[derive(Debug, clap::Args)]
pub struct AdmissionConfigArgs {
    /// What the API server does when berth cannot be reached: `Ignore` admits the
    /// workload unchanged, `Fail` refuses it.
    #[arg(long, default_value = "Ignore", value_parser = ["Ignore", "Fail"])]
    failure_policy: String,
    /// Where the API server reads the kubeconfig it authenticates to berth with.
    #[arg(long, default_value = "/etc/kubernetes/berth-webhook-kubeconfig.yaml")]
    kubeconfig_path: String,
    /// The name of this cluster, when several share one berth: every review, decision and
    /// record names it.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Where the API server reads the ImagePolicyWebhook plugin's kubeconfig.
    #[arg(long, default_value = "/etc/kubernetes/berth-imagepolicy-kubeconfig.yaml")]
    image_policy_kubeconfig_path: String,
}

pub fn run(ctx: &Context, command: AdmCommand) -> anyhow::Result<()> {
    match command {
        AdmCommand::AdmissionConfig(args) => admission_config(ctx, &args),
        AdmCommand::Vulnerable(args) => crate::commands::lineage::vulnerable(ctx, &args),
        AdmCommand::WhoRuns(args) => crate::commands::lineage::who_runs(ctx, &args),
        AdmCommand::Top(command) => crate::commands::lifecycle::top(ctx, command),
        AdmCommand::Prune(command) => crate::commands::lifecycle::prune(ctx, command),
        AdmCommand::Fsck(args) => crate::commands::lifecycle::fsck(ctx, args),
    }
}

/// The workloads berth resolves images of, as admission rules.
fn rules() -> Value {
    let operations = json!(["CREATE", "UPDATE"]);
    json!([
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": operations, "resources": ["pods", "replicationcontrollers"]},
        {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": operations,
            "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"]},
        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": operations, "resources": ["jobs", "cronjobs"]},
        {"apiGroups": ["apps.openshift.io"], "apiVersions": ["v1"], "operations": operations, "resources": ["deploymentconfigs"]},
        {"apiGroups": ["build.openshift.io"], "apiVersions": ["v1"], "operations": operations, "resources": ["buildconfigs"]},
    ])
}

fn admission_config(ctx: &Context, args: &AdmissionConfigArgs) -> anyhow::Result<()> {
    let config = ctx.config()?.context("no client config: start a server with `berth serve` on this machine, or write one")?;
    let server = ctx.server_url(&config).trim_end_matches('/').to_string();
    if !server.starts_with("https://") {
        eprintln!(
            "warning: {server} is plain HTTP, and Kubernetes calls webhooks only over HTTPS: start berth with --tls self-signed (or --tls-cert/--tls-key)"
        );
    }
    let ca_bundle = match &config.certificate_authority {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?;
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        None => None,
    };
    let webhook = |name: &str, path: &str, mutating: bool| {
        let mut client = json!({"url": format!("{server}{path}?cluster={}", args.cluster)});
        if let Some(bundle) = &ca_bundle {
            client["caBundle"] = json!(bundle);
        }
        let mut hook = json!({
            "name": name,
            "clientConfig": client,
            "rules": rules(),
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": args.failure_policy,
            "timeoutSeconds": 5,
        });
        if mutating {
            hook["reinvocationPolicy"] = json!("IfNeeded");
        }
        hook
    };
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "berth"},
        "webhooks": [webhook("images.berth.dev", "/admission/mutate", true)],
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "berth"},
        "webhooks": [webhook("images.berth.dev", "/admission/validate", false)],
    });
    let plugin = |name: &str| {
        json!({"name": name, "configuration": {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": args.kubeconfig_path}})
    };
    // Kubernetes' ImagePolicyWebhook plugin, for clusters that use it instead of (or
    // beside) the webhooks: allowed and denied answers cached briefly, fail closed or open
    // as --failure-policy says.
    let image_policy = json!({"name": "ImagePolicyWebhook", "configuration": {"imagePolicy": {
        "kubeConfigFile": args.image_policy_kubeconfig_path,
        "allowTTL": 50,
        "denyTTL": 50,
        "retryBackoff": 500,
        "defaultAllow": args.failure_policy == "Ignore",
    }}});
    let admission = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [plugin("MutatingAdmissionWebhook"), plugin("ValidatingAdmissionWebhook"), image_policy],
    });
    // The API server picks the user whose name is the webhook's host[:port].
    let host = server.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
    let token = ctx.token(&config);
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{"name": host, "user": {"token": token}}],
    });
    println!("# Apply to the cluster: kubectl apply -f this-file (the first two documents).");
    print!("{}", yaml_serde::to_string(&mutating)?);
    println!("---");
    print!("{}", yaml_serde::to_string(&validating)?);
    println!("---");
    println!("# The API server's --admission-control-config-file:");
    print!("{}", yaml_serde::to_string(&admission)?);
    println!("---");
    println!("# {}: how the API server authenticates to berth", args.kubeconfig_path);
    print!("{}", yaml_serde::to_string(&kubeconfig)?);
    let mut cluster = json!({"server": format!("{server}/imagereview?cluster={}", args.cluster)});
    if let Some(bundle) = &ca_bundle {
        cluster["certificate-authority-data"] = json!(bundle);
    }
    let image_policy_kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "berth", "cluster": cluster}],
        "users": [{"name": "kube-apiserver", "user": {"token": token}}],
        "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": "kube-apiserver"}}],
        "current-context": "berth",
    });
    println!("---");
    println!("# {}: where the ImagePolicyWebhook plugin sends ImageReviews", args.image_policy_kubeconfig_path);
    print!("{}", yaml_serde::to_string(&image_policy_kubeconfig)?);
    Ok(())
}
