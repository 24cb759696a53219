//! Pod templates from a tag's contract: the Kubernetes Deployment and Service that run an
//! image as its contract says (`berth generate deployment`), and the check of a running
//! Deployment's pod template against a tag's current contract (`--check`), judged by the
//! same rule as every other contract change ([`super::diff`]).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Contract, ContractChanges, diff, normalize_port};

/// The annotation a generated Deployment carries: the image stream tag it runs.
pub const SOURCE_ANNOTATION: &str = "berth.dev/image-stream-tag";

/// What a generated Deployment is made of.
#[derive(Clone, Debug)]
pub struct Template<'a> {
    /// The name of the Deployment, its Service, its container and its `app` label.
    pub name: &'a str,
    pub replicas: u32,
    /// The image by digest (`registry/repository@sha256:...`).
    pub image: &'a str,
    /// `namespace/stream:tag`, recorded in [`SOURCE_ANNOTATION`].
    pub source: &'a str,
    pub contract: &'a Contract,
}

/// The name of the pod volume for an image volume at `path`: `/var/lib/data` → `var-lib-data`.
pub fn volume_name(path: &str) -> String {
    let name: String = path
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let name = if name.is_empty() { "root".to_string() } else { name };
    name.chars().take(63).collect::<String>().trim_end_matches('-').to_string()
}

/// `8080/tcp` → (8080, "TCP").
fn port_parts(port: &str) -> Option<(u16, String)> {
    let normalized = normalize_port(port)?;
    let (number, protocol) = normalized.split_once('/')?;
    Some((number.parse().ok()?, protocol.to_ascii_uppercase()))
}

/// The port's name in the pod and the Service: `tcp-8080` (at most 15 characters).
fn port_name(number: u16, protocol: &str) -> String {
    format!("{}-{number}", protocol.to_ascii_lowercase())
}

/// A numeric image user (`1001`, `1001:1001`) as a security context; a named user stays
/// the image's own (Kubernetes takes only numbers).
fn security_context(user: &str) -> Option<Value> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid: i64 = uid.parse().ok()?;
    let mut context = json!({"runAsUser": uid});
    if uid != 0 {
        context["runAsNonRoot"] = json!(true);
    }
    if let Some(gid) = gid.and_then(|g| g.parse::<i64>().ok()) {
        context["runAsGroup"] = json!(gid);
    }
    Some(context)
}

/// The Deployment (`apps/v1`) that runs the template's image as its contract says.
pub fn deployment(template: &Template) -> Value {
    let contract = template.contract;
    let mut container = json!({"name": template.name, "image": template.image});
    if !contract.entrypoint.is_empty() {
        container["command"] = json!(contract.entrypoint);
    }
    if !contract.cmd.is_empty() {
        container["args"] = json!(contract.cmd);
    }
    if !contract.working_dir.is_empty() {
        container["workingDir"] = json!(contract.working_dir);
    }
    if !contract.env.is_empty() {
        container["env"] = contract.env.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
    }
    let ports: Vec<Value> = contract
        .ports
        .iter()
        .filter_map(|p| port_parts(p))
        .map(|(number, protocol)| json!({"name": port_name(number, &protocol), "containerPort": number, "protocol": protocol}))
        .collect();
    if !ports.is_empty() {
        container["ports"] = json!(ports);
    }
    if !contract.volumes.is_empty() {
        container["volumeMounts"] = contract.volumes.iter().map(|path| json!({"name": volume_name(path), "mountPath": path})).collect();
    }
    if !contract.resources.is_empty() {
        let mut resources = json!({});
        if !contract.resources.requests.is_empty() {
            resources["requests"] = json!(contract.resources.requests);
        }
        if !contract.resources.limits.is_empty() {
            resources["limits"] = json!(contract.resources.limits);
        }
        container["resources"] = resources;
    }
    if let Some(context) = security_context(&contract.user) {
        container["securityContext"] = context;
    }
    let mut pod_spec = json!({"containers": [container]});
    if !contract.volumes.is_empty() {
        pod_spec["volumes"] = contract.volumes.iter().map(|path| json!({"name": volume_name(path), "emptyDir": {}})).collect();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": template.name,
            "labels": {"app": template.name},
            "annotations": {SOURCE_ANNOTATION: template.source},
        },
        "spec": {
            "replicas": template.replicas,
            "selector": {"matchLabels": {"app": template.name}},
            "template": {
                "metadata": {"labels": {"app": template.name}},
                "spec": pod_spec,
            },
        },
    })
}

/// The Service (`v1`) for the contract's exposed ports, `None` when it exposes none.
pub fn service(template: &Template) -> Option<Value> {
    let ports: Vec<Value> = template
        .contract
        .ports
        .iter()
        .filter_map(|p| port_parts(p))
        .map(|(number, protocol)| json!({"name": port_name(number, &protocol), "port": number, "targetPort": number, "protocol": protocol}))
        .collect();
    if ports.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": template.name, "labels": {"app": template.name}},
        "spec": {"selector": {"app": template.name}, "ports": ports},
    }))
}

/// The container of `deployment`'s pod template that runs an image of `stream`: the one
/// whose image names the stream's repository, or the only one.
fn container_of<'a>(deployment: &'a Value, stream: &str) -> Result<&'a Value, String> {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("the file has no Deployment with containers in spec.template.spec.containers")?;
    let runs_stream = |c: &&Value| {
        c.get("image").and_then(Value::as_str).is_some_and(|image| {
            let repository = image.split('@').next().unwrap_or(image);
            let repository = repository.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(repository, |(r, _)| r);
            repository.rsplit('/').next() == Some(stream)
        })
    };
    match containers.iter().find(runs_stream) {
        Some(container) => Ok(container),
        None if containers.len() == 1 => Ok(&containers[0]),
        None => Err(format!("no container of the Deployment runs an image of stream {stream:?}, and it has several")),
    }
}

/// The contract a running pod template relies on: what it states of the container's
/// ports, emptyDir volume mounts (image volumes as `generate` writes them), user, working
/// directory, command and args; what it does not state it takes from the image, so it is
/// `current`'s. Environment variables are left out: the pod's own values win over the
/// image's, so no change of the image's defaults reaches them.
pub fn pod_contract(deployment: &Value, stream: &str, current: &Contract) -> Result<Contract, String> {
    let container = container_of(deployment, stream)?;
    let pod = deployment.pointer("/spec/template/spec").cloned().unwrap_or(Value::Null);
    let mut contract = current.clone();
    if let Some(ports) = container.get("ports").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        contract.ports = ports
            .iter()
            .filter_map(|p| {
                let number = p.get("containerPort")?.as_u64()?;
                let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                normalize_port(&format!("{number}/{protocol}"))
            })
            .collect();
    }
    let empty_dirs: BTreeSet<&str> = pod
        .get("volumes")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter(|v| v.get("emptyDir").is_some()).filter_map(|v| v.get("name")?.as_str()).collect())
        .unwrap_or_default();
    let mounted: BTreeSet<String> = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter(|m| m.get("name").and_then(Value::as_str).is_some_and(|n| empty_dirs.contains(n)))
                .filter_map(|m| m.get("mountPath")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !mounted.is_empty() {
        contract.volumes = mounted;
    }
    let context_user = |context: Option<&Value>| -> Option<String> {
        let context = context?;
        let uid = context.get("runAsUser")?.as_i64()?;
        Some(match context.get("runAsGroup").and_then(Value::as_i64) {
            Some(gid) => format!("{uid}:{gid}"),
            None => uid.to_string(),
        })
    };
    if let Some(user) = context_user(container.get("securityContext")).or_else(|| context_user(pod.get("securityContext"))) {
        contract.user = user;
    }
    let words = |field: &str| -> Option<Vec<String>> {
        let items = container.get(field)?.as_array()?;
        Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect())
    };
    if let Some(command) = words("command") {
        contract.entrypoint = command;
    }
    if let Some(args) = words("args") {
        contract.cmd = args;
    }
    if let Some(dir) = container.get("workingDir").and_then(Value::as_str) {
        contract.working_dir = dir.to_string();
    }
    Ok(contract)
}

/// Whether the tag's `current` contract still fits the running `deployment`: the changes
/// from what its pod template relies on to what the image offers now, judged.
pub fn check(deployment: &Value, stream: &str, current: &Contract) -> Result<ContractChanges, String> {
    Ok(diff(&pod_contract(deployment, stream, current)?, current))
}
