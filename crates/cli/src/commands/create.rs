//! `berth create namespace NAME`, `berth create imagestream NAME` (as `oc create
//! imagestream`) and `berth create secret generic|docker-registry NAME`, as kubectl makes
//! them.
//!
//! Secret values go to the server as `stringData` (the server encodes them into `data`
//! and never returns `stringData`), and nothing this command prints repeats a value.

use std::collections::BTreeMap;

use anyhow::bail;
use berth_model::core::{SECRET_TYPE_DOCKERCONFIGJSON, SECRET_TYPE_OPAQUE};
use serde_json::{Value, json};

use crate::commands::Context;
use crate::kinds;

/// Docker Hub's key in a Docker config, as `docker login` and kubectl write it.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a namespace.
    #[command(alias = "ns")]
    Namespace {
        /// The namespace's name.
        name: String,
    },
    /// Create an empty image stream, to push or tag into (only a namespace admin's push or
    /// tag creates one that does not exist, unless the server says otherwise).
    #[command(alias = "is")]
    Imagestream {
        /// The stream's name.
        name: String,
    },
    /// Create a secret: `generic` (type Opaque, e.g. a Subscription's signing key) or
    /// `docker-registry` (a pull secret for imports).
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Create a secret of type Opaque from literal values.
    Generic {
        /// The secret's name.
        name: String,
        /// A key and its value, `KEY=VALUE` (repeatable).
        #[arg(long = "from-literal", value_name = "KEY=VALUE", required = true)]
        literals: Vec<String>,
    },
    /// Create a kubernetes.io/dockerconfigjson secret, the pull credentials imports from
    /// that registry use.
    DockerRegistry(DockerRegistryArgs),
}

#[derive(Debug, clap::Args)]
pub struct DockerRegistryArgs {
    /// The secret's name.
    name: String,
    /// The registry, e.g. quay.io or registry.example.com:5000 (default: Docker Hub).
    #[arg(long, value_name = "HOST", default_value = DOCKER_HUB_SERVER)]
    docker_server: String,
    /// The user name to log in with.
    #[arg(long, value_name = "USER")]
    docker_username: String,
    /// The password or access token to log in with.
    #[arg(long, value_name = "PASSWORD")]
    docker_password: String,
    /// The account's email address, kept in the Docker config as `docker login` did.
    #[arg(long, value_name = "EMAIL")]
    docker_email: Option<String>,
}

pub fn run(ctx: &Context, command: CreateCommand) -> anyhow::Result<()> {
    match command {
        CreateCommand::Namespace { name } => {
            let kind = &kinds::NAMESPACE;
            let namespace = json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name}});
            ctx.client()?.post(&kind.collection(None), &namespace)?;
            println!("{}/{name} created", kind.qualified());
            Ok(())
        }
        CreateCommand::Imagestream { name } => {
            let kind = &kinds::IMAGE_STREAM;
            let namespace = ctx.namespace();
            let stream = json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name, "namespace": namespace}});
            ctx.client()?.post(&kind.collection(Some(&namespace)), &stream)?;
            println!("{}/{name} created", kind.qualified());
            Ok(())
        }
        CreateCommand::Secret(command) => {
            let namespace = ctx.namespace();
            let (name, secret) = match &command {
                SecretCommand::Generic { name, literals } => (name, secret(name, &namespace, SECRET_TYPE_OPAQUE, literal_data(literals)?)),
                SecretCommand::DockerRegistry(args) => (&args.name, docker_registry_secret(args, &namespace)),
            };
            let kind = &kinds::SECRET;
            ctx.client()?.post(&kind.collection(Some(&namespace)), &secret)?;
            println!("{}/{name} created", kind.qualified());
            Ok(())
        }
    }
}

fn secret(name: &str, namespace: &str, secret_type: &str, string_data: BTreeMap<String, String>) -> Value {
    let kind = &kinds::SECRET;
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "stringData": string_data,
    })
}

/// The keys and values of `--from-literal=KEY=VALUE` (the value may itself hold `=`).
/// A key given twice is refused, as kubectl does, rather than one value silently winning.
fn literal_data(literals: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    for (index, literal) in literals.iter().enumerate() {
        // Messages name the key or the position only: the value may be the secret itself.
        let Some((key, value)) = literal.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            bail!("--from-literal takes KEY=VALUE, and --from-literal number {} has no key or no `=`", index + 1);
        };
        if data.insert(key.to_string(), value.to_string()).is_some() {
            bail!("--from-literal gives the key {key:?} twice: give each key once");
        }
    }
    Ok(data)
}

/// The Secret kubectl's `create secret docker-registry` makes: a Docker config with
/// one entry for the registry, holding the user name and password both as they are and as
/// `auth` (base64 of `user:password`), which is what most readers of the format take.
fn docker_registry_secret(args: &DockerRegistryArgs, namespace: &str) -> Value {
    let mut entry = json!({
        "username": args.docker_username,
        "password": args.docker_password,
        "auth": base64(format!("{}:{}", args.docker_username, args.docker_password).as_bytes()),
    });
    if let Some(email) = &args.docker_email {
        entry["email"] = Value::String(email.clone());
    }
    let config = json!({"auths": {args.docker_server.as_str(): entry}});
    let data = BTreeMap::from([(".dockerconfigjson".to_string(), config.to_string())]);
    secret(&args.name, namespace, SECRET_TYPE_DOCKERCONFIGJSON, data)
}

/// Standard base64 with padding (RFC 4648). Written out rather than taking the `base64`
/// crate: this is its one use in the CLI, and encoding is a dozen lines.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (i, byte)| group | u32::from(*byte) << (16 - 8 * i));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(char::from(ALPHABET[(group >> (18 - 6 * position) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_follows_rfc_4648() {
        let vectors =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn literals_become_string_data_and_bad_ones_never_echo_the_value() {
        let data = literal_data(&["signing-key=s3cr=t".to_string(), "other=".to_string()]).unwrap();
        assert_eq!(data, BTreeMap::from([("other".to_string(), String::new()), ("signing-key".to_string(), "s3cr=t".to_string())]));
        let err = literal_data(&["=hunter2".to_string()]).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = literal_data(&["hunter2".to_string()]).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = literal_data(&["k=hunter2".to_string(), "k=other".to_string()]).unwrap_err().to_string();
        assert!(err.contains("\"k\"") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_docker_registry_secret_holds_a_docker_config_for_its_registry() {
        let args = DockerRegistryArgs {
            name: "quay-pull".into(),
            docker_server: "quay.io".into(),
            docker_username: "robot".into(),
            docker_password: "pw".into(),
            docker_email: None,
        };
        let secret = docker_registry_secret(&args, "team");
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(secret["metadata"], json!({"name": "quay-pull", "namespace": "team"}));
        let config: Value = serde_json::from_str(secret["stringData"][".dockerconfigjson"].as_str().unwrap()).unwrap();
        assert_eq!(config, json!({"auths": {"quay.io": {"username": "robot", "password": "pw", "auth": "cm9ib3Q6cHc="}}}));
    }
}
