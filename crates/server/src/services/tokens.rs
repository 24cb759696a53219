//! API tokens: created with a role on namespaces (or the cluster), stored as a SHA-256 of
//! their secret part, shown once, revoked by deletion.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::Time;
use berth_model::access::{Action, Grant};
use berth_model::core::{Token, TokenSpec, TokenStatus};
use berth_store::{Precondition, transact};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::services::error::ErrorKind;
use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, stamp_new};

const TOKENS: &str = Token::QUALIFIED;
const PREFIX: &str = "brt_";

/// Callers already authenticated, keyed by the SHA-256 of their bearer token, so that a
/// request costs no store read for its token. Every token write in this process clears
/// it, so a revoked token stops working at once; on a shared database, [`follow_tokens`]
/// clears it on token events written through other servers.
/// A caller and when its token expires.
type CachedCaller = (Caller, Option<Time>);

#[derive(Default)]
pub struct CallerCache {
    entries: RwLock<HashMap<[u8; 32], CachedCaller>>,
}

/// Bounds the cache; past it the cache starts over.
const MAX_CACHED_CALLERS: usize = 10_000;

impl CallerCache {
    fn get(&self, key: &[u8; 32]) -> Option<(Caller, Option<Time>)> {
        self.entries.read().ok()?.get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], caller: Caller, expires: Option<Time>) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_CACHED_CALLERS {
                entries.clear();
            }
            entries.insert(key, (caller, expires));
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn without_secret(mut token: Token) -> Token {
    token.secret_sha256.clear();
    token.status = None;
    token
}

impl Catalog {
    /// Resolves a bearer token to the caller it names.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Caller> {
        let Some(bearer) = bearer else {
            return Err(Error::unauthorized(
                "no bearer token: pass --token or set BERTH_TOKEN (`berth serve` writes the admin token to <data-dir>/admin.token on first start)",
            ));
        };
        let key: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        let now = Time::now();
        if let Some((caller, expires)) = self.callers.get(&key)
            && expires.is_none_or(|at| at > now)
        {
            return Ok(caller);
        }
        let invalid = || {
            Error::unauthorized(
                "the bearer token is not valid: it may have been revoked; ask an admin for a new one (`berth token create`)",
            )
        };
        let (name, secret) = bearer.strip_prefix(PREFIX).and_then(|rest| rest.split_once('.')).ok_or_else(invalid)?;
        if berth_model::names::check_dns_label("", name).is_err() {
            return Err(invalid());
        }
        let token: Token = self.load("", name)?.ok_or_else(invalid)?;
        if !bool::from(secret_hash(secret).as_bytes().ct_eq(token.secret_sha256.as_bytes())) {
            return Err(invalid());
        }
        if token.expired(now) {
            let at = token.spec.expiration_timestamp.map(|t| t.to_string()).unwrap_or_default();
            return Err(Error::unauthorized(format!("token {name:?} expired at {at}: ask an admin for a new one (`berth token create`)")));
        }
        let caller = Caller { token: name.to_string(), grant: token.grant() };
        self.callers.insert(key, caller.clone(), token.spec.expiration_timestamp);
        Ok(caller)
    }

    /// The caller of the token named `name` (a registry token names the berth token it
    /// was issued for): the token must still exist and not have expired.
    pub fn caller_of_token(&self, name: &str) -> Result<Caller> {
        let key: [u8; 32] = Sha256::digest(format!("name:{name}").as_bytes()).into();
        let now = Time::now();
        if let Some((caller, expires)) = self.callers.get(&key)
            && expires.is_none_or(|at| at > now)
        {
            return Ok(caller);
        }
        let revoked = || Error::unauthorized(format!("token {name:?} was revoked or has expired: log in again with a current berth token"));
        let token: Token = self.load("", name)?.ok_or_else(revoked)?;
        if token.expired(now) {
            return Err(revoked());
        }
        let caller = Caller { token: name.to_string(), grant: token.grant() };
        self.callers.insert(key, caller.clone(), token.spec.expiration_timestamp);
        Ok(caller)
    }

    /// Creates a token; the response carries the bearer token in `status.token`, once.
    pub fn create_token(&self, caller: &Caller, token: Token) -> Result<Token> {
        caller.require(Action::AdministerCluster, "create", TOKENS)?;
        self.insert_token(token)
    }

    fn insert_token(&self, mut token: Token) -> Result<Token> {
        let name = token.metadata.name.clone();
        let errors = token.validate();
        if !errors.is_empty() {
            return Err(Error::invalid(TOKENS, &name, errors));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        token.metadata.namespace.clear();
        stamp_new(&mut token.metadata, Time::now());
        token.secret_sha256 = secret_hash(&secret);
        token.status = None;
        let (key, body) = (Token::key("", &name), token.encode());
        let revision = transact(&**self.store(), move |txn| txn.put(&key, &body, &[], Precondition::Absent))
            .map_err(|err| Error::from_store(err, TOKENS, &name))?;
        self.callers.clear();
        token.metadata.resource_version = revision.to_string();
        token.set_type();
        let mut shown = without_secret(token);
        shown.status = Some(TokenStatus { token: format!("{PREFIX}{name}.{secret}") });
        Ok(shown)
    }

    pub fn get_token(&self, caller: &Caller, name: &str) -> Result<Token> {
        caller.require(Action::AdministerCluster, "get", TOKENS)?;
        Ok(without_secret(self.require("", name)?))
    }

    pub fn list_tokens(&self, caller: &Caller, options: &ListOptions) -> Result<LazyList<Token>> {
        caller.require(Action::AdministerCluster, "list", TOKENS)?;
        Ok(self.list_objects::<Token>(None, options, |_| true)?.view(|t| Ok(Some(without_secret(t)))))
    }

    /// Revokes a token: it stops working at once.
    pub fn delete_token(&self, caller: &Caller, name: &str) -> Result<Token> {
        caller.require(Action::AdministerCluster, "delete", TOKENS)?;
        let owned = name.to_string();
        let stored = transact(&**self.store(), move |txn| {
            let name = owned.as_str();
            let key = Token::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(TOKENS, name))?;
            txn.delete(&key, Precondition::Any)?;
            Token::decode(&stored)
        })?;
        self.callers.clear();
        Ok(without_secret(stored))
    }

    /// On a store with no tokens, creates the cluster-admin token `admin` and returns
    /// the bearer token; otherwise returns `None`.
    pub fn bootstrap_admin(&self) -> Result<Option<String>> {
        let existing = self.list_objects::<Token>(None, &ListOptions { limit: Some(1), ..ListOptions::default() }, |_| true)?.collect()?;
        if !existing.items.is_empty() {
            return Ok(None);
        }
        let admin = Grant::cluster_admin();
        let spec = TokenSpec {
            role: admin.role,
            namespaces: vec!["*".to_string()],
            description: "created by the first start of berth serve".to_string(),
            expiration_timestamp: None,
        };
        match self.insert_token(Token::new("admin", spec)) {
            Ok(created) => Ok(created.status.map(|s| s.token)),
            // Another server on the same database made it first.
            Err(err) if err.kind == ErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Keeps the caller cache right when tokens change through another server on the same
/// database: any token event in the log clears it, as a token write through this server
/// does, so a token revoked anywhere stops working everywhere at once.
pub async fn follow_tokens(catalog: Catalog, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut revisions = catalog.store().subscribe();
    let mut after = *revisions.borrow_and_update();
    loop {
        tokio::select! {
            changed = revisions.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let upto = *revisions.borrow_and_update();
        let store = std::sync::Arc::clone(catalog.store());
        let from = after;
        let changed = match tokio::task::spawn_blocking(move || store.events_since(Token::RESOURCE, None, from, 1)).await {
            Ok(Ok(events)) => !events.is_empty(),
            // The log moved past us, or could not be read: forget every caller to be safe.
            Ok(Err(_)) | Err(_) => true,
        };
        if changed {
            catalog.callers.clear();
        }
        after = upto;
    }
}
