//! ImagePolicies (berth.dev/v1, cluster-scoped, written by cluster admins) and the set of
//! rules admission judges images by.
//!
//! Admission must answer in well under a millisecond, so the rules are compiled once and
//! kept in memory with the labels of every namespace (what `namespaceSelector` reads).
//! The set is current as of a store revision: a review first compares the store's
//! revision with the set's (an atomic read), and only when they differ asks the event log
//! whether a policy or a namespace changed since; when one did, the whole set is read
//! again. Following the event log rather than this process's own writes keeps every
//! replica of a shared store in step.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use berth_model::FieldError;
use berth_model::access::Action;
use berth_model::core::Namespace;
use berth_model::policy::{ImagePolicy, Rule};
use berth_store::{ListQuery, Precondition, StoreError, transact};

use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, keep_server_fields, precondition, stamp_new};

/// The rules and namespace labels as of a store revision.
#[derive(Default)]
pub struct PolicySet {
    pub revision: u64,
    pub rules: Vec<Rule>,
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

impl PolicySet {
    pub fn labels_of(&self, namespace: &str) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.namespace_labels.get(namespace).unwrap_or(&NONE)
    }
}

#[derive(Default)]
pub struct PolicyCache {
    current: RwLock<Option<Arc<PolicySet>>>,
    /// Held while the set is brought up to date, so that one review does it and the
    /// others wait for it rather than read the store too.
    refreshing: Mutex<()>,
}

impl Catalog {
    pub fn get_policy(&self, _caller: &Caller, name: &str) -> Result<ImagePolicy> {
        self.require::<ImagePolicy>("", name)
    }

    /// Any token may read the policies: a developer whose workload was refused needs to
    /// read the rule that refused it.
    pub fn list_policies(&self, _caller: &Caller, options: &ListOptions) -> Result<LazyList<ImagePolicy>> {
        self.list_objects::<ImagePolicy>(None, options, |_| true)
    }

    pub fn put_policy(&self, caller: &Caller, name: Option<&str>, policy: ImagePolicy) -> Result<ImagePolicy> {
        self.put_cluster_object(caller, name, policy, ImagePolicy::validate)
    }

    pub fn delete_policy(&self, caller: &Caller, name: &str) -> Result<ImagePolicy> {
        self.delete_cluster_object::<ImagePolicy>(caller, name)
    }

    /// Creates (`name` is `None`) or replaces a cluster-scoped object that only cluster
    /// admins write and that has no status.
    pub(crate) fn put_cluster_object<T: Resource>(
        &self,
        caller: &Caller,
        name: Option<&str>,
        mut object: T,
        validate: fn(&T) -> Vec<FieldError>,
    ) -> Result<T> {
        let verb = if name.is_some() { "update" } else { "create" };
        caller.require(Action::AdministerCluster, verb, T::QUALIFIED)?;
        crate::services::name_from_url(object.meta_mut(), name)?;
        object.meta_mut().namespace.clear();
        let name = object.meta().name.clone();
        let errors = validate(&object);
        if !errors.is_empty() {
            return Err(Error::invalid(T::QUALIFIED, &name, errors));
        }
        let expect = if verb == "create" { Precondition::Absent } else { precondition(object.meta())? };
        transact(&**self.store(), move |txn| {
            let key = T::key("", &name);
            match txn.get(&key)? {
                Some(existing) => keep_server_fields(object.meta_mut(), T::decode(&existing)?.meta()),
                None if verb == "update" => return Err(Error::not_found(T::QUALIFIED, &name)),
                None => stamp_new(object.meta_mut(), berth_model::Time::now()),
            }
            let revision = txn.put(&key, &object.encode(), &[], expect).map_err(|err| Error::from_store(err, T::QUALIFIED, &name))?;
            object.meta_mut().resource_version = revision.to_string();
            object.set_type();
            Ok::<_, Error>(object)
        })
    }

    /// Deletes a cluster-scoped object that only cluster admins write.
    pub(crate) fn delete_cluster_object<T: Resource>(&self, caller: &Caller, name: &str) -> Result<T> {
        caller.require(Action::AdministerCluster, "delete", T::QUALIFIED)?;
        let owned = name.to_string();
        transact(&**self.store(), move |txn| {
            let key = T::key("", &owned);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(T::QUALIFIED, &owned))?;
            txn.delete(&key, Precondition::Any)?;
            T::decode(&stored)
        })
    }

    /// The rules as the store holds them now (see the module's doc). When the store
    /// cannot be read, the last set read is used, and the first review after a start
    /// fails (the webhook's own `failurePolicy` then decides).
    pub fn policy_set(&self) -> Result<Arc<PolicySet>> {
        let cache = &self.policies;
        let now = self.store().current_revision()?;
        if let Some(set) = cache.current.read().unwrap_or_else(PoisonError::into_inner).as_ref()
            && set.revision == now
        {
            return Ok(set.clone());
        }
        let _refreshing = cache.refreshing.lock().unwrap_or_else(PoisonError::into_inner);
        let known = cache.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        let next = match &known {
            Some(set) if set.revision == now => return Ok(set.clone()),
            Some(set) => match self.policies_changed_since(set.revision) {
                Ok(false) => {
                    Arc::new(PolicySet { revision: now, rules: set.rules.clone(), namespace_labels: set.namespace_labels.clone() })
                }
                Ok(true) | Err(_) => match self.read_policy_set(now) {
                    Ok(set) => Arc::new(set),
                    Err(err) => {
                        tracing::warn!(error = %err.message, "image policies could not be read again; the last rules read stay in force");
                        return Ok(set.clone());
                    }
                },
            },
            None => Arc::new(self.read_policy_set(now)?),
        };
        *cache.current.write().unwrap_or_else(PoisonError::into_inner) = Some(next.clone());
        Ok(next)
    }

    /// Whether a policy or a namespace changed after `revision`.
    fn policies_changed_since(&self, revision: u64) -> Result<bool> {
        for resource in [ImagePolicy::RESOURCE, Namespace::RESOURCE] {
            match self.store().events_since(resource, None, revision, 1) {
                Ok(events) if events.is_empty() => {}
                Ok(_) | Err(StoreError::Compacted { .. }) => return Ok(true),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(false)
    }

    fn read_policy_set(&self, revision: u64) -> Result<PolicySet> {
        let mut rules = Vec::new();
        for stored in self.store().scan(&ListQuery { resource: ImagePolicy::RESOURCE.to_string(), ..ListQuery::default() })?.items {
            rules.push(Rule::new(ImagePolicy::decode(&stored?)?));
        }
        let mut namespace_labels = HashMap::new();
        for stored in self.store().scan(&ListQuery { resource: Namespace::RESOURCE.to_string(), ..ListQuery::default() })?.items {
            let namespace = Namespace::decode(&stored?)?;
            if !namespace.metadata.labels.is_empty() {
                namespace_labels.insert(namespace.metadata.name, namespace.metadata.labels);
            }
        }
        Ok(PolicySet { revision, rules, namespace_labels })
    }
}
