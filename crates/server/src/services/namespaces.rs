//! Namespaces and the pull-credential Secrets in them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_model::Time;
use berth_model::access::Action;
use berth_model::core::{Namespace, NamespaceStatus, Secret};
use berth_model::imagestream::ImageStream;
use berth_model::quota::{LimitRange, ResourceQuota};
use berth_store::{Precondition, transact};

use crate::services::{
    Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, ensure_namespace, keep_server_fields, place_in_namespace,
    precondition, stamp_new,
};

/// The namespaced resources a namespace holds, deleted with it.
const CONTENTS: [&str; 4] = [ImageStream::RESOURCE, Secret::RESOURCE, ResourceQuota::RESOURCE, LimitRange::RESOURCE];

/// The namespace that always exists, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Catalog {
    pub fn get_namespace(&self, caller: &Caller, name: &str) -> Result<Namespace> {
        caller.require(Action::SeeNamespace(name), "get", "namespaces")?;
        self.require("", name)
    }

    /// Lists the namespaces the caller can see.
    pub fn list_namespaces(&self, caller: &Caller, options: &ListOptions) -> Result<LazyList<Namespace>> {
        let grant = caller.grant.clone();
        self.list_objects::<Namespace>(None, options, move |ns| grant.allows(Action::SeeNamespace(&ns.metadata.name)))
    }

    pub fn create_namespace(&self, caller: &Caller, mut namespace: Namespace) -> Result<Namespace> {
        caller.require(Action::AdministerCluster, "create", "namespaces")?;
        let name = namespace.metadata.name.clone();
        let errors = namespace.validate();
        if !errors.is_empty() {
            return Err(Error::invalid("namespaces", &name, errors));
        }
        namespace.metadata.namespace.clear();
        stamp_new(&mut namespace.metadata, Time::now());
        namespace.status = NamespaceStatus { phase: "Active".to_string() };
        let (key, body) = (Namespace::key("", &name), namespace.encode());
        let revision = transact(&**self.store(), move |txn| txn.put(&key, &body, &[], Precondition::Absent))
            .map_err(|err| Error::from_store(err, "namespaces", &name))?;
        namespace.metadata.resource_version = revision.to_string();
        namespace.set_type();
        Ok(namespace)
    }

    /// Makes the `default` namespace when it does not exist (a new data directory, or one
    /// from before it was made), as Kubernetes keeps it: commands without `-n` work in it.
    pub fn ensure_default_namespace(&self) -> Result<()> {
        let key = Namespace::key("", DEFAULT_NAMESPACE);
        let mut namespace = Namespace {
            metadata: berth_model::ObjectMeta { name: DEFAULT_NAMESPACE.to_string(), ..berth_model::ObjectMeta::default() },
            status: NamespaceStatus { phase: "Active".to_string() },
            ..Namespace::default()
        };
        stamp_new(&mut namespace.metadata, Time::now());
        let body = namespace.encode();
        transact(&**self.store(), move |txn| {
            if txn.get(&key)?.is_none() {
                txn.put(&key, &body, &[], Precondition::Absent)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// Updates a namespace's labels and annotations.
    pub fn update_namespace(&self, caller: &Caller, name: &str, update: Namespace) -> Result<Namespace> {
        caller.require(Action::AdministerCluster, "update", "namespaces")?;
        if let Some(error) = berth_model::tags::immutable::check_annotation(&update.metadata.annotations) {
            return Err(Error::invalid("namespaces", name, vec![error]));
        }
        let expect = precondition(&update.metadata)?;
        let owned = name.to_string();
        transact(&**self.store(), move |txn| {
            let name = owned.as_str();
            let key = Namespace::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found("namespaces", name))?;
            let mut namespace = Namespace::decode(&stored)?;
            let mut meta = update.metadata.clone();
            keep_server_fields(&mut meta, &namespace.metadata);
            meta.name = name.to_string();
            namespace.metadata = meta;
            let revision = txn.put(&key, &namespace.encode(), &[], expect).map_err(|err| Error::from_store(err, "namespaces", name))?;
            namespace.metadata.resource_version = revision.to_string();
            Ok(namespace)
        })
    }

    /// Deletes a namespace and everything in it, in one transaction.
    pub fn delete_namespace(&self, caller: &Caller, name: &str) -> Result<Namespace> {
        caller.require(Action::AdministerCluster, "delete", "namespaces")?;
        if name == DEFAULT_NAMESPACE {
            return Err(Error::forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted (as in Kubernetes); delete what is in it instead"
            )));
        }
        let owned = name.to_string();
        transact(&**self.store(), move |txn| {
            let name = owned.as_str();
            let key = Namespace::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found("namespaces", name))?;
            for resource in CONTENTS {
                for object in txn.list(resource, Some(name))? {
                    txn.delete(&object.key, Precondition::Any)?;
                }
            }
            txn.delete(&key, Precondition::Any)?;
            let mut namespace = Namespace::decode(&stored)?;
            namespace.status.phase = "Terminating".to_string();
            Ok(namespace)
        })
    }

    /// A secret as this caller may see it: without its data below admin.
    pub(crate) fn secret_for(&self, caller: &Caller, mut secret: Secret) -> Secret {
        secret.string_data = None;
        if !caller.grant.allows(Action::ReadSecretData(&secret.metadata.namespace)) {
            secret.data = None;
        }
        secret
    }

    pub fn get_secret(&self, caller: &Caller, namespace: &str, name: &str) -> Result<Secret> {
        caller.require(Action::Read(namespace), "get", "secrets")?;
        Ok(self.secret_for(caller, self.require(namespace, name)?))
    }

    pub fn list_secrets(&self, caller: &Caller, namespace: Option<&str>, options: &ListOptions) -> Result<LazyList<Secret>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", "secrets")?,
            None => caller.require(Action::ReadCluster, "list", "secrets")?,
        }
        let (catalog, caller) = (self.clone(), caller.clone());
        Ok(self.list_objects::<Secret>(namespace, options, |_| true)?.view(move |s| Ok(Some(catalog.secret_for(&caller, s)))))
    }

    /// Creates (`create`) or replaces a secret. Data is write-only below admin.
    pub fn put_secret(&self, caller: &Caller, namespace: &str, name: Option<&str>, mut secret: Secret) -> Result<Secret> {
        let verb = if name.is_some() { "update" } else { "create" };
        caller.require(Action::Write(namespace), verb, "secrets")?;
        place_in_namespace(&mut secret.metadata, namespace)?;
        if let Some(name) = name
            && !secret.metadata.name.is_empty()
            && secret.metadata.name != name
        {
            return Err(Error::bad_request(format!(
                "the name of the object ({:?}) does not match the name in the URL ({name:?})",
                secret.metadata.name
            )));
        }
        let name = name.map_or_else(|| secret.metadata.name.clone(), str::to_string);
        secret.metadata.name = name.clone();
        let mut data: BTreeMap<String, String> = secret.data.take().unwrap_or_default();
        for (key, value) in secret.string_data.take().unwrap_or_default() {
            data.insert(key, STANDARD.encode(value));
        }
        if let Some(key) = data.iter().find(|(_, v)| STANDARD.decode(v).is_err()).map(|(k, _)| k.clone()) {
            return Err(Error::invalid(
                "secrets",
                &name,
                vec![berth_model::FieldError::new(format!("data[{key}]"), "is not valid base64")],
            ));
        }
        let decoded = data.get(secret.credentials_key()).map(|v| STANDARD.decode(v));
        let decoded = match decoded {
            Some(Err(_)) => {
                let field = format!("data[{}]", secret.credentials_key());
                return Err(Error::invalid("secrets", &name, vec![berth_model::FieldError::new(field, "is not valid base64")]));
            }
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        let errors = secret.validate(decoded.as_deref());
        if !errors.is_empty() {
            return Err(Error::invalid("secrets", &name, errors));
        }
        secret.data = Some(data);
        let expect = if verb == "create" { Precondition::Absent } else { precondition(&secret.metadata)? };
        let now = Time::now();
        let owned_namespace = namespace.to_string();
        let stored = transact(&**self.store(), move |txn| {
            let namespace = owned_namespace.as_str();
            ensure_namespace(txn, namespace)?;
            let key = Secret::key(namespace, &name);
            match txn.get(&key)? {
                Some(existing) => keep_server_fields(&mut secret.metadata, &Secret::decode(&existing)?.metadata),
                None if verb == "update" => return Err(Error::not_found("secrets", &name)),
                None => stamp_new(&mut secret.metadata, now),
            }
            let revision = txn.put(&key, &secret.encode(), &[], expect).map_err(|err| Error::from_store(err, "secrets", &name))?;
            secret.metadata.resource_version = revision.to_string();
            secret.set_type();
            Ok::<_, Error>(secret)
        })?;
        Ok(self.secret_for(caller, stored))
    }

    pub fn delete_secret(&self, caller: &Caller, namespace: &str, name: &str) -> Result<Secret> {
        caller.require(Action::Write(namespace), "delete", "secrets")?;
        let (owned_namespace, owned) = (namespace.to_string(), name.to_string());
        let deleted = transact(&**self.store(), move |txn| {
            let (namespace, name) = (owned_namespace.as_str(), owned.as_str());
            ensure_namespace(txn, namespace)?;
            let key = Secret::key(namespace, name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found("secrets", name))?;
            txn.delete(&key, Precondition::Any)?;
            Secret::decode(&stored)
        })?;
        Ok(self.secret_for(caller, deleted))
    }
}
