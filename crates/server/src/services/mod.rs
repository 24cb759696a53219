//! berth's services. HTTP handlers call services; services never call handlers and know
//! nothing of HTTP: each function takes the authenticated [`Caller`] and typed input,
//! applies the model's rules inside one store transaction, and returns typed output or a
//! typed [`Error`]. Services are synchronous (the store is); the HTTP edge runs them on
//! blocking threads.

pub mod admission;
pub mod audit;
pub mod classes;
pub mod contracts;
pub mod delivery;
pub mod error;
pub mod images;
pub mod import;
pub mod lineage;
pub mod namespaces;
pub mod policy;
pub mod prune;
pub mod quotas;
pub mod registry;
pub mod resource;
pub mod storage;
pub mod streams;
pub mod subscriptions;
pub mod tokens;
pub mod usage;
pub mod watch;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::ObjectMeta;
use berth_model::access::{Action, Grant};
use berth_model::meta::ListMeta;
use berth_model::selector::{FieldSelector, LabelSelector};
use berth_store::{ListQuery, MetadataStore, WriteTxn};
use serde::{Deserialize, Serialize};

pub use error::{Error, ErrorKind, Result};
pub use resource::Resource;

/// Settings the services need, given explicitly at start-up.
#[derive(Clone, Debug)]
pub struct CatalogConfig {
    /// `host[:port]` that pull specs of images in berth start with
    /// (`status.dockerImageRepository`).
    pub registry_hostname: String,
    /// Public hostnames of berth's registry; the first one fills
    /// `status.publicDockerImageRepository`.
    pub public_registry_hostnames: Vec<String>,
    /// Where subscriptions may send notifications (`notifications.allowedHosts`).
    pub subscription_hosts: berth_upstream::HostPolicy,
    /// Image classes: the domain of their labels.
    pub classes: classes::ClassSettings,
    /// Image streams: who may create one implicitly.
    pub streams: streams::StreamSettings,
}

/// The catalog: every service over one store.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn MetadataStore>,
    config: Arc<CatalogConfig>,
    callers: Arc<tokens::CallerCache>,
    lineage: Arc<lineage::LineageIndex>,
    classes: Arc<classes::ClassMarks>,
    admission: Arc<policy::AdmissionCache>,
    usage: Arc<usage::UsageRecorder>,
    storage: Arc<storage::StorageIndex>,
}

/// Who is asking: the token's name and what it allows.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token: String,
    pub grant: Grant,
}

impl Caller {
    /// What a write by this caller says caused the tag history it adds: `push by token ci`.
    pub fn cause(&self, action: &str) -> String {
        format!("{action} by token {}", self.token)
    }

    /// Fails with 403 and a message naming what is missing when the caller may not act.
    pub fn require(&self, action: Action<'_>, verb: &str, resource: &str) -> Result<()> {
        if self.grant.allows(action) {
            return Ok(());
        }
        let place = match action {
            Action::Read(ns) | Action::Write(ns) | Action::ReadSecretData(ns) | Action::SeeNamespace(ns) => format!(" in namespace {ns:?}"),
            _ => " at the cluster scope".to_string(),
        };
        Err(Error::forbidden(format!(
            "{resource} is forbidden: token {:?} ({}) cannot {verb} {resource}{place}; ask an admin for a token with that access",
            self.token,
            self.grant.describe()
        )))
    }
}

/// What a list asks for, as the Kubernetes list parameters say it.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A page of a list, with the list's metadata.
#[derive(Clone, Debug)]
pub struct ListResult<T> {
    pub items: Vec<T>,
    pub metadata: ListMeta,
}

/// Items of a list, decoded one at a time as they are taken.
pub type Items<T> = Box<dyn Iterator<Item = Result<T>> + Send>;

/// A page of a list of stored objects, decoded lazily: a page of image streams is
/// megabytes, and only the item being written out need exist in memory.
pub struct LazyList<T> {
    pub items: Items<T>,
    pub metadata: ListMeta,
}

impl<T: 'static> LazyList<T> {
    /// Decodes every item.
    pub fn collect(self) -> Result<ListResult<T>> {
        Ok(ListResult { items: self.items.collect::<Result<Vec<T>>>()?, metadata: self.metadata })
    }

    /// Turns each item into what the caller may see of it, or drops it (`None`).
    pub fn view<U>(self, mut f: impl FnMut(T) -> Result<Option<U>> + Send + 'static) -> LazyList<U> {
        let items = self.items.filter_map(move |item| item.and_then(&mut f).transpose());
        LazyList { items: Box::new(items), metadata: self.metadata }
    }
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    ns: String,
    name: String,
}

impl ListOptions {
    fn matches(&self, meta: &ObjectMeta) -> bool {
        self.label_selector.matches(&meta.labels) && self.field_selector.matches(meta)
    }

    fn after(&self) -> Result<Option<(String, String)>> {
        let Some(token) = &self.continue_token else {
            return Ok(None);
        };
        let decoded = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ContinueToken>(&bytes).ok())
            .ok_or_else(|| Error::bad_request("the continue token is not one this server issued: start the list again without it"))?;
        Ok(Some((decoded.ns, decoded.name)))
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn MetadataStore>, config: CatalogConfig) -> Catalog {
        Catalog {
            store,
            config: Arc::new(config),
            callers: Arc::default(),
            lineage: Arc::default(),
            classes: Arc::default(),
            admission: Arc::default(),
            usage: Arc::default(),
            storage: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// Reads one object, or `None`.
    pub(crate) fn load<T: Resource>(&self, namespace: &str, name: &str) -> Result<Option<T>> {
        match self.store.get(&T::key(namespace, name))? {
            Some(stored) => Ok(Some(T::decode(&stored)?)),
            None => Ok(None),
        }
    }

    /// Reads one object, or fails with 404.
    pub(crate) fn require<T: Resource>(&self, namespace: &str, name: &str) -> Result<T> {
        self.load(namespace, name)?.ok_or_else(|| Error::not_found(T::QUALIFIED, name))
    }

    /// Lists objects of `T` (in `namespace`, or all) that match `options` and pass `keep`.
    pub(crate) fn list_objects<T: Resource>(
        &self,
        namespace: Option<&str>,
        options: &ListOptions,
        keep: impl Fn(&T) -> bool + Send + 'static,
    ) -> Result<LazyList<T>> {
        if let Some(name) = options.field_selector.exact_name()
            && let Some(ns) = namespace.or(if T::NAMESPACED { None } else { Some("") })
        {
            let revision = self.store.current_revision()?;
            let items: Vec<Result<T>> =
                self.load::<T>(ns, name)?.into_iter().filter(|o| options.matches(o.meta()) && keep(o)).map(Ok).collect();
            let metadata = ListMeta { resource_version: revision.to_string(), ..ListMeta::default() };
            return Ok(LazyList { items: Box::new(items.into_iter()), metadata });
        }
        let query = ListQuery {
            resource: T::RESOURCE.to_string(),
            namespace: namespace.map(str::to_string),
            after: options.after()?,
            limit: options.limit,
        };
        let Some(_) = options.limit else {
            // A whole list is read from the store as it is taken, never all at once.
            let scan = self.store.scan(&query)?;
            let options = options.clone();
            let items = scan.items.filter_map(move |stored| match stored.map_err(Error::from).and_then(|stored| T::decode(&stored)) {
                Ok(object) => (options.matches(object.meta()) && keep(&object)).then_some(Ok(object)),
                Err(err) => Some(Err(err)),
            });
            let metadata = ListMeta { resource_version: scan.revision.to_string(), continue_token: String::new() };
            return Ok(LazyList { items: Box::new(items), metadata });
        };
        let page = self.store.list(&query)?;
        let continue_token = match (page.more, page.items.last()) {
            (true, Some(last)) => {
                let token = ContinueToken { ns: last.key.namespace.clone(), name: last.key.name.clone() };
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("continue tokens serialise"))
            }
            _ => String::new(),
        };
        let options = options.clone();
        // Each stored row is decoded when it is taken and freed after.
        let items = page.items.into_iter().filter_map(move |stored| match T::decode(&stored) {
            Ok(object) => (options.matches(object.meta()) && keep(&object)).then_some(Ok(object)),
            Err(err) => Some(Err(err)),
        });
        Ok(LazyList { items: Box::new(items), metadata: ListMeta { resource_version: page.revision.to_string(), continue_token } })
    }
}

/// Fails with 404 (and a hint) unless `namespace` exists, inside a write transaction so
/// that nothing is created in a namespace being deleted.
pub(crate) fn ensure_namespace(txn: &mut dyn WriteTxn, namespace: &str) -> Result<()> {
    let key = <berth_model::core::Namespace as Resource>::key("", namespace);
    if txn.get(&key)?.is_none() {
        return Err(namespace_not_found(namespace));
    }
    Ok(())
}

/// 404 for a namespace that does not exist, saying how to make it.
pub(crate) fn namespace_not_found(namespace: &str) -> Error {
    Error::not_found("namespaces", namespace)
        .with_message(format!("namespaces {namespace:?} not found: create it first with `berth create namespace {namespace}`"))
}

/// Checks that an object's `metadata.name` agrees with the URL's, when the URL names one
/// (an update), and fills it in.
pub(crate) fn name_from_url(meta: &mut ObjectMeta, name: Option<&str>) -> Result<()> {
    let Some(name) = name else { return Ok(()) };
    if !meta.name.is_empty() && meta.name != name {
        return Err(Error::bad_request(format!("the name of the object ({:?}) does not match the name in the URL ({name:?})", meta.name)));
    }
    meta.name = name.to_string();
    Ok(())
}

/// Checks that an object's `metadata.namespace` agrees with the URL's and fills it in.
pub(crate) fn place_in_namespace(meta: &mut ObjectMeta, namespace: &str) -> Result<()> {
    if !meta.namespace.is_empty() && meta.namespace != namespace {
        return Err(Error::bad_request(format!(
            "the namespace of the object ({:?}) does not match the namespace of the request ({namespace:?})",
            meta.namespace
        )));
    }
    meta.namespace = namespace.to_string();
    Ok(())
}

/// The `resourceVersion` a client sent as a precondition, if any.
pub(crate) fn precondition(meta: &ObjectMeta) -> Result<berth_store::Precondition> {
    if meta.resource_version.is_empty() {
        return Ok(berth_store::Precondition::Any);
    }
    meta.resource_version
        .parse()
        .map(berth_store::Precondition::Revision)
        .map_err(|_| Error::bad_request(format!("metadata.resourceVersion {:?} is not one this server issued", meta.resource_version)))
}

/// Fills the fields the server owns on a new object.
pub(crate) fn stamp_new(meta: &mut ObjectMeta, now: berth_model::Time) {
    meta.uid = uuid::Uuid::new_v4().to_string();
    meta.creation_timestamp = Some(now);
    meta.resource_version.clear();
}

/// Keeps the fields the server owns from the stored object on an update.
pub(crate) fn keep_server_fields(meta: &mut ObjectMeta, stored: &ObjectMeta) {
    meta.uid = stored.uid.clone();
    meta.creation_timestamp = stored.creation_timestamp;
    meta.generation = stored.generation;
}
