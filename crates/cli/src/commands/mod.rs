//! The verbs, one module per verb group, and the [`Context`] they share: the global
//! flags and how they turn into a namespace and a connected [`Client`].

pub mod adm;
pub mod apply;
pub mod audit;
pub mod completion;
pub mod config;
pub mod contract;
pub mod create;
pub mod delete;
pub mod describe;
pub mod get;
pub mod import_image;
pub mod importing;
pub mod lifecycle;
pub mod lineage;
pub mod serve;
pub mod tag;
pub mod token;

use std::path::PathBuf;

use anyhow::bail;
use berth_server::ClientConfig;

use crate::GlobalArgs;
use crate::client::Client;

/// The namespace used when neither `-n` nor `BERTH_NAMESPACE` names one.
const DEFAULT_NAMESPACE: &str = "default";

pub struct Context {
    global: GlobalArgs,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Context {
        Context { global }
    }

    /// The namespace to work in: the last `-n`, else `$BERTH_NAMESPACE`, else `default`.
    pub fn namespace(&self) -> String {
        self.global
            .namespaces
            .last()
            .cloned()
            .or_else(|| std::env::var("BERTH_NAMESPACE").ok().filter(|ns| !ns.is_empty()))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    }

    /// The namespaces typed with `-n` on this command line (not from the environment).
    pub fn typed_namespaces(&self) -> &[String] {
        &self.global.namespaces
    }

    /// `--config`/`$BERTH_CONFIG`, else the default client config path.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.global.config.clone().or_else(ClientConfig::default_path)
    }

    fn client_config(&self) -> anyhow::Result<Option<ClientConfig>> {
        match self.config_path() {
            Some(path) if path.exists() => ClientConfig::load(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// A client for the server named by `--server`, else by the client config. The
    /// config's token is only sent to the config's own server, so that pointing
    /// `--server` elsewhere never hands that server the local admin token.
    pub fn client(&self) -> anyhow::Result<Client> {
        let config = self.client_config()?;
        let configured = config.as_ref().filter(|c| !c.server.is_empty());
        let Some(server) = self.global.server.clone().or_else(|| configured.map(|c| c.server.clone())) else {
            bail!("no server: start one with `berth serve`, or pass --server");
        };
        let own = configured.filter(|c| same_server(&c.server, &server));
        let token = self.global.token.clone().or_else(|| own.map(|c| c.token.clone()));
        let certificate_authority = self.global.certificate_authority.clone().or_else(|| own.and_then(|c| c.certificate_authority.clone()));
        Client::new(&server, token.filter(|t| !t.is_empty()), certificate_authority.as_deref())
    }

    /// The server URL: `--server`, or the client config's.
    pub fn server_url(&self, config: &ClientConfig) -> String {
        self.global.server.clone().unwrap_or_else(|| config.server.clone())
    }

    /// The token: `--token`, or the client config's.
    pub fn token(&self, config: &ClientConfig) -> String {
        self.global.token.clone().unwrap_or_else(|| config.token.clone())
    }

    /// The client config as it stands, for `berth config`.
    pub fn config(&self) -> anyhow::Result<Option<ClientConfig>> {
        self.client_config()
    }
}

fn same_server(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim_end_matches('/').trim_start_matches("https://").trim_start_matches("http://").to_string();
    strip(a) == strip(b)
}

/// Splits `NS/REST` into its namespace and the rest; `None` as the namespace when there
/// is no slash.
pub fn split_namespace(typed: &str) -> (Option<&str>, &str) {
    match typed.split_once('/') {
        Some((ns, rest)) => (Some(ns), rest),
        None => (None, typed),
    }
}
