//! ImagePolicies (berth.dev/v1, cluster-scoped, written by cluster admins) and what
//! admission keeps in memory to answer without reading the store.
//!
//! Admission must answer in well under a millisecond, so the rules are compiled once,
//! with the rules that may apply to each namespace worked out from its labels (what
//! `namespaceSelector` reads), and what reviews resolved (a namespace's reference to a
//! digest) and read (an Image's facts) is kept. All of it is current as of a store
//! revision: a review first compares the store's revision with the snapshot's (an atomic
//! read), and only when they differ asks the event log what changed since: a policy or a
//! namespace (the rules are read again), an image stream (resolutions are dropped), an
//! Image (facts are dropped). Following the event log rather than this process's own
//! writes keeps every replica of a shared store in step, and nothing kept is ever stale:
//! unlike OpenShift's resolution cache (a minute's TTL), a tag moved is seen by the next
//! review.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use berth_model::access::Action;
use berth_model::core::Namespace;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::policy::{ImagePolicy, KnownImage, Rule};
use berth_model::{Digest, FieldError};
use berth_store::{ListQuery, Precondition, StoreError, transact};

use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, keep_server_fields, precondition, stamp_new};

/// The rules, and which of them may apply in each namespace.
#[derive(Default)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
    /// For each namespace with labels: the rules whose namespace selector it matches.
    by_namespace: HashMap<String, Vec<usize>>,
    /// The rules that apply in a namespace without labels.
    unlabelled: Vec<usize>,
}

impl PolicySet {
    fn new(rules: Vec<Rule>, namespace_labels: HashMap<String, BTreeMap<String, String>>) -> PolicySet {
        let none = BTreeMap::new();
        let matching = |labels: &BTreeMap<String, String>| -> Vec<usize> {
            rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.policy.spec.namespace_selector.as_ref().is_none_or(|s| s.matches(labels)))
                .map(|(idx, _)| idx)
                .collect()
        };
        let unlabelled = matching(&none);
        let by_namespace = namespace_labels.iter().map(|(name, labels)| (name.clone(), matching(labels))).collect();
        PolicySet { rules, by_namespace, unlabelled }
    }

    /// The rules that apply to a workload of `resource` in `namespace`.
    pub fn applying(&self, resource: &str, namespace: &str) -> impl Iterator<Item = &Rule> {
        let candidates = self.by_namespace.get(namespace).unwrap_or(&self.unlabelled);
        candidates.iter().map(|&idx| &self.rules[idx]).filter(move |rule| rule.applies_to(resource, namespace))
    }
}

/// What admission keeps, current as of `revision`.
#[derive(Clone, Default)]
pub struct AdmissionSnapshot {
    pub revision: u64,
    pub policies: Arc<PolicySet>,
    /// `(namespace, reference)` to the reference by digest it resolved to.
    resolutions: Arc<Mutex<Resolutions>>,
    /// Images' facts; `None` for a
    /// digest berth does not hold.
    images: Arc<Mutex<HashMap<Digest, Option<Arc<KnownImage>>>>>,
}

/// Past this many entries a kept map starts over.
const MAX_KEPT: usize = 100_000;

impl AdmissionSnapshot {
    pub fn resolution(&self, namespace: &str, reference: &str) -> Option<Option<String>> {
        self.resolutions.lock().unwrap_or_else(PoisonError::into_inner).get(&(namespace.to_string(), reference.to_string())).cloned()
    }

    pub fn keep_resolution(&self, namespace: &str, reference: &str, resolved: Option<String>) {
        keep(&self.resolutions, (namespace.to_string(), reference.to_string()), resolved);
    }

    pub fn image(&self, digest: &Digest) -> Option<Option<Arc<KnownImage>>> {
        self.images.lock().unwrap_or_else(PoisonError::into_inner).get(digest).cloned()
    }

    pub fn keep_image(&self, digest: Digest, image: Option<Arc<KnownImage>>) {
        keep(&self.images, digest, image);
    }
}

fn keep<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, key: K, value: V) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_KEPT {
        map.clear();
    }
    map.insert(key, value);
}

#[derive(Default)]
pub struct AdmissionCache {
    current: RwLock<Option<AdmissionSnapshot>>,
    /// Held while the snapshot is brought up to date, so that one review does it and the
    /// others wait for it rather than read the store too.
    refreshing: Mutex<()>,
}

/// What changed in the store since a revision, as admission cares: whether a policy or
/// a namespace did, the namespaces whose streams did and the Images that did (`None`:
/// too many to name, or an Image was relabelled, which may reach every image built on it).
struct Changed {
    policies: bool,
    stream_namespaces: Option<HashSet<String>>,
    images: Option<HashSet<String>>,
}

/// How many events since the last review are read to name what changed.
const CHANGES_NAMED: usize = 1024;

/// Resolutions kept, keyed by `(namespace, reference)`.
type Resolutions = HashMap<(String, String), Option<String>>;

/// A copy of `kept` without what `gone` says changed (all of it when `None`).
fn without<K: Clone + std::hash::Hash + Eq, V: Clone>(
    kept: &Arc<Mutex<HashMap<K, V>>>,
    gone: &Option<HashSet<String>>,
    name: impl Fn(&K) -> &str,
) -> Arc<Mutex<HashMap<K, V>>> {
    let Some(gone) = gone else { return Arc::default() };
    if gone.is_empty() {
        return kept.clone();
    }
    let map = kept.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::new(Mutex::new(map.iter().filter(|(k, _)| !gone.contains(name(k))).map(|(k, v)| (k.clone(), v.clone())).collect()))
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
        object: T,
        validate: fn(&T) -> Vec<FieldError>,
    ) -> Result<T> {
        self.put_cluster_object_keeping(caller, name, object, validate, |_, _| {})
    }

    /// [`Catalog::put_cluster_object`], for a kind whose status the server keeps: `keep`
    /// copies what the server owns from the stored object into the written one.
    pub(crate) fn put_cluster_object_keeping<T: Resource>(
        &self,
        caller: &Caller,
        name: Option<&str>,
        mut object: T,
        validate: fn(&T) -> Vec<FieldError>,
        keep: fn(&mut T, &T),
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
                Some(existing) => {
                    let existing = T::decode(&existing)?;
                    keep_server_fields(object.meta_mut(), existing.meta());
                    keep(&mut object, &existing);
                }
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

    /// What admission keeps, as the store holds it now (see the module's doc). When the
    /// store cannot be read, the last rules read stay in force (and nothing resolved or
    /// read is kept), and the first review after a start fails (the webhook's own
    /// `failurePolicy` then decides).
    pub fn admission_snapshot(&self) -> Result<AdmissionSnapshot> {
        let cache = &self.admission;
        let now = self.store().current_revision()?;
        if let Some(snapshot) = cache.current.read().unwrap_or_else(PoisonError::into_inner).as_ref()
            && snapshot.revision == now
        {
            return Ok(snapshot.clone());
        }
        let _refreshing = cache.refreshing.lock().unwrap_or_else(PoisonError::into_inner);
        let known = cache.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        let next = match known {
            Some(snapshot) if snapshot.revision == now => return Ok(snapshot),
            Some(snapshot) => match self.changed_since(snapshot.revision) {
                Ok(changed) => {
                    let policies = match changed.policies.then(|| self.read_policy_set()).transpose() {
                        Ok(Some(set)) => Arc::new(set),
                        Ok(None) => snapshot.policies,
                        Err(err) => {
                            tracing::warn!(error = %err.message, "image policies could not be read again; the last ones read stay in force");
                            return Ok(AdmissionSnapshot { policies: snapshot.policies, ..AdmissionSnapshot::default() });
                        }
                    };
                    AdmissionSnapshot {
                        revision: now,
                        policies,
                        // A copy, not the map itself: a review still holding the old
                        // snapshot may yet keep what it read before the change.
                        resolutions: without(&snapshot.resolutions, &changed.stream_namespaces, |(ns, _)| ns),
                        images: without(&snapshot.images, &changed.images, |digest| digest.as_str()),
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err.message, "the store could not be read; the last image policies read stay in force");
                    return Ok(AdmissionSnapshot { policies: snapshot.policies, ..AdmissionSnapshot::default() });
                }
            },
            None => AdmissionSnapshot { revision: now, policies: Arc::new(self.read_policy_set()?), ..AdmissionSnapshot::default() },
        };
        *cache.current.write().unwrap_or_else(PoisonError::into_inner) = Some(next.clone());
        Ok(next)
    }

    /// What changed after `revision` (everything, when the log no longer reaches back).
    fn changed_since(&self, revision: u64) -> Result<Changed> {
        let events = |resource: &str| match self.store().events_since(resource, None, revision, CHANGES_NAMED) {
            Ok(events) if events.len() < CHANGES_NAMED => Ok(Some(events)),
            Ok(_) | Err(StoreError::Compacted { .. }) => Ok(None),
            Err(err) => Err(Error::from(err)),
        };
        let policies =
            events(ImagePolicy::RESOURCE)?.is_none_or(|e| !e.is_empty()) || events(Namespace::RESOURCE)?.is_none_or(|e| !e.is_empty());
        let stream_namespaces = events(ImageStream::RESOURCE)?.map(|e| e.into_iter().map(|e| e.object.key.namespace).collect());
        let images = events(Image::RESOURCE)?
            .filter(|e| e.iter().all(|e| e.event_type != berth_store::EventType::Modified))
            .map(|e| e.into_iter().map(|e| e.object.key.name).collect());
        Ok(Changed { policies, stream_namespaces, images })
    }

    fn read_policy_set(&self) -> Result<PolicySet> {
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
        Ok(PolicySet::new(rules, namespace_labels))
    }
}
