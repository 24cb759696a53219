//! ResourceQuotas and LimitRanges (Kubernetes `v1`), the kinds that carry a namespace's
//! image quotas, and the limits in force in a namespace ([`Catalog::image_limits`]),
//! which the writes that add streams, tags, images and layers check.
//!
//! Quotas are the cluster operators': only cluster admins write them, as Kubernetes RBAC
//! leaves them out of a tenant's `admin` and `edit` roles. Anyone who may read the
//! namespace reads them, since a tenant refused by a quota needs to read it. A
//! ResourceQuota's status is never stored: every read fills it ([`Catalog::quota_view`]),
//! so `used` is as current as the read.

use std::collections::{BTreeMap, HashMap};

use berth_model::access::Action;
use berth_model::imagestream::ImageStream;
use berth_model::quota::{IMAGESTREAMS, ImageLimits, LimitRange, ResourceQuota};
use berth_model::{FieldError, Time};
use berth_store::{ListQuery, Precondition, WriteTxn, transact};

use crate::services::{
    Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, ensure_namespace, keep_server_fields, place_in_namespace,
    precondition, stamp_new,
};

/// What a namespace uses of the resources a ResourceQuota limits: resource name →
/// quantity. Only the keys a quota's `hard` names are shown of it.
pub type QuotaUsage = BTreeMap<String, String>;

impl Catalog {
    pub fn get_resource_quota(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ResourceQuota> {
        caller.require(Action::Read(namespace), "get", ResourceQuota::QUALIFIED)?;
        let quota = self.require::<ResourceQuota>(namespace, name)?;
        self.quota_view(quota, &self.quota_usage(namespace)?)
    }

    pub fn list_resource_quotas(&self, caller: &Caller, namespace: Option<&str>, options: &ListOptions) -> Result<LazyList<ResourceQuota>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", ResourceQuota::QUALIFIED)?,
            None => caller.require(Action::ReadCluster, "list", ResourceQuota::QUALIFIED)?,
        }
        // A namespace's usage is worked out once per list, however many quotas it has.
        let catalog = self.clone();
        let mut usages: HashMap<String, QuotaUsage> = HashMap::new();
        Ok(self.list_objects::<ResourceQuota>(namespace, options, |_| true)?.view(move |quota| {
            let namespace = quota.metadata.namespace.clone();
            if !usages.contains_key(&namespace) {
                usages.insert(namespace.clone(), catalog.quota_usage(&namespace)?);
            }
            catalog.quota_view(quota, &usages[&namespace]).map(Some)
        }))
    }

    /// Creates (`name` is `None`) or replaces a ResourceQuota's spec: cluster admins only.
    pub fn put_resource_quota(
        &self,
        caller: &Caller,
        namespace: &str,
        name: Option<&str>,
        mut quota: ResourceQuota,
    ) -> Result<ResourceQuota> {
        quota.status = Default::default();
        let stored = self.put_quota_object(caller, namespace, name, quota, ResourceQuota::validate)?;
        let namespace = stored.metadata.namespace.clone();
        self.quota_view(stored, &self.quota_usage(&namespace)?)
    }

    pub fn delete_resource_quota(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ResourceQuota> {
        self.delete_quota_object(caller, namespace, name)
    }

    pub fn get_limit_range(&self, caller: &Caller, namespace: &str, name: &str) -> Result<LimitRange> {
        caller.require(Action::Read(namespace), "get", LimitRange::QUALIFIED)?;
        self.require(namespace, name)
    }

    pub fn list_limit_ranges(&self, caller: &Caller, namespace: Option<&str>, options: &ListOptions) -> Result<LazyList<LimitRange>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", LimitRange::QUALIFIED)?,
            None => caller.require(Action::ReadCluster, "list", LimitRange::QUALIFIED)?,
        }
        self.list_objects::<LimitRange>(namespace, options, |_| true)
    }

    /// Creates (`name` is `None`) or replaces a LimitRange: cluster admins only.
    pub fn put_limit_range(&self, caller: &Caller, namespace: &str, name: Option<&str>, range: LimitRange) -> Result<LimitRange> {
        self.put_quota_object(caller, namespace, name, range, LimitRange::validate)
    }

    pub fn delete_limit_range(&self, caller: &Caller, namespace: &str, name: &str) -> Result<LimitRange> {
        self.delete_quota_object(caller, namespace, name)
    }

    /// The image limits in force in `namespace`: one indexed read of its ResourceQuotas
    /// and one of its LimitRanges (each empty, and cheap, in a namespace without them).
    pub fn image_limits(&self, namespace: &str) -> Result<ImageLimits> {
        let quotas = self.namespace_objects::<ResourceQuota>(namespace)?;
        let ranges = self.namespace_objects::<LimitRange>(namespace)?;
        Ok(ImageLimits::of(&quotas, &ranges))
    }

    /// Every object of `T` in `namespace`.
    fn namespace_objects<T: Resource>(&self, namespace: &str) -> Result<Vec<T>> {
        let query = ListQuery { resource: T::RESOURCE.to_string(), namespace: Some(namespace.to_string()), after: None, limit: None };
        self.store().scan(&query)?.items.map(|stored| T::decode(&stored?)).collect()
    }

    /// A ResourceQuota as readers see it: `status.hard` from its spec and `status.used`
    /// from `usage` ([`Catalog::quota_usage`] of its namespace). Every read of a quota
    /// (get, list, watch, the answer to a write) goes through here.
    pub(crate) fn quota_view(&self, quota: ResourceQuota, usage: &QuotaUsage) -> Result<ResourceQuota> {
        Ok(quota.with_status(usage))
    }

    /// What `namespace` uses of each resource a quota limits, as cheaply as the store
    /// can say it: `openshift.io/imagestreams` is a count of the namespace's streams'
    /// keys (no body is read).
    pub(crate) fn quota_usage(&self, namespace: &str) -> Result<QuotaUsage> {
        let query =
            ListQuery { resource: ImageStream::RESOURCE.to_string(), namespace: Some(namespace.to_string()), after: None, limit: None };
        let mut used = QuotaUsage::new();
        used.insert(IMAGESTREAMS.to_string(), self.store().count(&query)?.to_string());
        // storage usage: filled by services::storage
        Ok(used)
    }

    /// Creates (`name` is `None`) or replaces a namespaced object that only cluster admins
    /// write (the quota kinds), after `validate`.
    fn put_quota_object<T: Resource>(
        &self,
        caller: &Caller,
        namespace: &str,
        name: Option<&str>,
        mut object: T,
        validate: fn(&T) -> Vec<FieldError>,
    ) -> Result<T> {
        let verb = if name.is_some() { "update" } else { "create" };
        caller.require(Action::AdministerCluster, verb, T::QUALIFIED)?;
        place_in_namespace(object.meta_mut(), namespace)?;
        crate::services::name_from_url(object.meta_mut(), name)?;
        let name = object.meta().name.clone();
        let errors = validate(&object);
        if !errors.is_empty() {
            return Err(Error::invalid(T::QUALIFIED, &name, errors));
        }
        let expect = if verb == "create" { Precondition::Absent } else { precondition(object.meta())? };
        let owned_namespace = namespace.to_string();
        transact(&**self.store(), move |txn| {
            let namespace = owned_namespace.as_str();
            ensure_namespace(txn, namespace)?;
            let key = T::key(namespace, &name);
            match txn.get(&key)? {
                Some(existing) => keep_server_fields(object.meta_mut(), T::decode(&existing)?.meta()),
                None if verb == "update" => return Err(Error::not_found(T::QUALIFIED, &name)),
                None => stamp_new(object.meta_mut(), Time::now()),
            }
            let revision = txn.put(&key, &object.encode(), &[], expect).map_err(|err| Error::from_store(err, T::QUALIFIED, &name))?;
            object.meta_mut().resource_version = revision.to_string();
            object.set_type();
            Ok::<_, Error>(object)
        })
    }

    /// Deletes a namespaced object that only cluster admins write.
    fn delete_quota_object<T: Resource>(&self, caller: &Caller, namespace: &str, name: &str) -> Result<T> {
        caller.require(Action::AdministerCluster, "delete", T::QUALIFIED)?;
        let (owned_namespace, owned) = (namespace.to_string(), name.to_string());
        transact(&**self.store(), move |txn| {
            let key = T::key(&owned_namespace, &owned);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(T::QUALIFIED, &owned))?;
            txn.delete(&key, Precondition::Any)?;
            T::decode(&stored)
        })
    }
}

/// The image limits in force in `namespace` as the write transaction `txn` sees them,
/// for a check that must agree with the write it guards.
pub fn image_limits_in(txn: &mut dyn WriteTxn, namespace: &str) -> Result<ImageLimits> {
    let quotas = txn.list(ResourceQuota::RESOURCE, Some(namespace))?.iter().map(ResourceQuota::decode).collect::<Result<Vec<_>>>()?;
    let ranges = txn.list(LimitRange::RESOURCE, Some(namespace))?.iter().map(LimitRange::decode).collect::<Result<Vec<_>>>()?;
    Ok(ImageLimits::of(&quotas, &ranges))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::access::Grant;
    use berth_model::core::Namespace;
    use berth_model::quota::{IMAGE_STORAGE, Limit};
    use berth_store::{SqliteStore, Synchronous};

    use super::*;
    use crate::services::CatalogConfig;

    fn catalog(dir: &std::path::Path) -> Catalog {
        let store = SqliteStore::open(&dir.join("berth.db"), Synchronous::Normal).unwrap();
        Catalog::new(
            Arc::new(store),
            CatalogConfig {
                registry_hostname: "registry.berth.test".to_string(),
                public_registry_hostnames: Vec::new(),
                subscription_hosts: berth_upstream::HostPolicy::new(&[], "notifications.allowedHosts"),
                classes: Default::default(),
                streams: Default::default(),
            },
        )
    }

    fn admin() -> Caller {
        Caller { token: "admin".to_string(), grant: Grant::cluster_admin() }
    }

    fn quota(hard: &[(&str, &str)]) -> ResourceQuota {
        let mut quota = ResourceQuota::default();
        quota.metadata.name = "images".to_string();
        quota.spec.hard = hard.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        quota
    }

    #[test]
    fn image_limits_read_the_namespace_s_quotas_and_ranges_inside_and_outside_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(dir.path());
        for name in ["team", "other"] {
            let namespace =
                Namespace { metadata: berth_model::ObjectMeta { name: name.to_string(), ..Default::default() }, ..Default::default() };
            catalog.create_namespace(&admin(), namespace).unwrap();
        }
        assert!(catalog.image_limits("team").unwrap().is_empty());

        catalog.put_resource_quota(&admin(), "team", None, quota(&[(IMAGESTREAMS, "10"), (IMAGE_STORAGE, "1Gi")])).unwrap();
        let mut strict = quota(&[(IMAGESTREAMS, "4")]);
        strict.metadata.name = "strict".to_string();
        catalog.put_resource_quota(&admin(), "team", None, strict).unwrap();
        catalog.put_resource_quota(&admin(), "other", None, quota(&[(IMAGESTREAMS, "1")])).unwrap();
        let range: LimitRange = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "limits"},
            "spec": {"limits": [{"type": "openshift.io/Image", "max": {"storage": "512Mi"}}]},
        }))
        .unwrap();
        catalog.put_limit_range(&admin(), "team", None, range).unwrap();

        let expected = ImageLimits {
            imagestreams: Some(Limit { value: 4, source: "ResourceQuota team/strict".to_string() }),
            storage: Some(Limit { value: 1 << 30, source: "ResourceQuota team/images".to_string() }),
            image_storage: Some(Limit { value: 512 << 20, source: "LimitRange team/limits".to_string() }),
            ..ImageLimits::default()
        };
        assert_eq!(catalog.image_limits("team").unwrap(), expected);
        let in_write = transact(&**catalog.store(), |txn| image_limits_in(txn, "team")).unwrap();
        assert_eq!(in_write, expected);
        assert_eq!(catalog.image_limits("other").unwrap().imagestreams.map(|l| l.value), Some(1));
        assert!(catalog.image_limits("nowhere").unwrap().is_empty());
    }
}
