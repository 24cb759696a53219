//! `skopeo`, an independent registry client, to check what the registry (or berth) serves
//! against another implementation. Test registries speak plain HTTP, so TLS verification
//! is turned off for every `docker://` reference.

use std::process::Command;

use anyhow::{Context as _, bail};

const DOCKER_TRANSPORT: &str = "docker://";

/// Runs `skopeo copy [extra_args] src dest`, adding `--src-tls-verify=false` and
/// `--dest-tls-verify=false` for `docker://` references. The error holds skopeo's stderr.
pub fn skopeo_copy(src: &str, dest: &str, extra_args: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["copy"];
    if src.starts_with(DOCKER_TRANSPORT) {
        args.push("--src-tls-verify=false");
    }
    if dest.starts_with(DOCKER_TRANSPORT) {
        args.push("--dest-tls-verify=false");
    }
    args.extend(extra_args);
    args.extend([src, dest]);
    run(&args).map(drop)
}

/// Runs `skopeo inspect --tls-verify=false docker://<reference>` and returns its JSON
/// (`Digest`, `Architecture`, `Labels`, ...). `reference` is a pull spec such as
/// `127.0.0.1:5000/team/app:v1`, with or without `docker://`; `creds` are sent when
/// given, else the request is anonymous.
pub fn skopeo_inspect(reference: &str, creds: Option<(&str, &str)>) -> anyhow::Result<serde_json::Value> {
    let reference = format!("{DOCKER_TRANSPORT}{}", reference.strip_prefix(DOCKER_TRANSPORT).unwrap_or(reference));
    let creds = creds.map(|(user, password)| format!("--creds={user}:{password}"));
    let mut args = vec!["inspect", "--tls-verify=false", creds.as_deref().unwrap_or("--no-creds")];
    args.push(&reference);
    let output = run(&args)?;
    serde_json::from_slice(&output).with_context(|| format!("skopeo inspect {reference} printed no JSON"))
}

/// Runs skopeo with `args`, returning its stdout, or an error with its stderr.
pub fn skopeo(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    run(args)
}

fn run(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    // Passwords (`--creds=`, `--src-creds=`, `--dest-creds=`) stay out of error messages.
    let shown: Vec<String> = args
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((flag, _)) if flag.ends_with("creds") => format!("{flag}=***"),
            _ => arg.to_string(),
        })
        .collect();
    let output = Command::new("skopeo").args(args).output().with_context(|| format!("running skopeo {}", shown.join(" ")))?;
    if !output.status.success() {
        bail!("skopeo {} failed ({}): {}", shown.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output.stdout)
}
