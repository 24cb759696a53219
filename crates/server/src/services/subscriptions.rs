//! Subscriptions (berth.dev/v1) and the outbox that feeds them: every write of an image
//! stream records its tag changes as `tagchanges` objects in the same transaction, when
//! the namespace has a subscription, so a change and its notification commit together or
//! not at all. Delivery is in `services::notify`.

use berth_model::access::Action;
use berth_model::contract::{self, Contract, ContractChanges, Overrides};
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::notify::{ChangeType, Subscription, TagChange, tag_changes};
use berth_model::{ObjectMeta, Time};
use berth_store::{Precondition, WriteTxn, transact};

use crate::services::{
    Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, ensure_namespace, keep_server_fields, place_in_namespace,
    precondition, stamp_new,
};

const SUBSCRIPTIONS: &str = Subscription::QUALIFIED;

impl Catalog {
    pub fn get_subscription(&self, caller: &Caller, namespace: &str, name: &str) -> Result<Subscription> {
        caller.require(Action::Read(namespace), "get", SUBSCRIPTIONS)?;
        self.require(namespace, name)
    }

    pub fn list_subscriptions(&self, caller: &Caller, namespace: Option<&str>, options: &ListOptions) -> Result<LazyList<Subscription>> {
        match namespace {
            Some(ns) => caller.require(Action::Read(ns), "list", SUBSCRIPTIONS)?,
            None => caller.require(Action::ReadCluster, "list", SUBSCRIPTIONS)?,
        }
        self.list_objects::<Subscription>(namespace, options, |_| true)
    }

    /// Creates (`name` is `None`) or replaces a subscription's spec; the status is the
    /// server's. A new subscription starts after the changes already recorded.
    pub fn put_subscription(
        &self,
        caller: &Caller,
        namespace: &str,
        name: Option<&str>,
        mut subscription: Subscription,
    ) -> Result<Subscription> {
        let verb = if name.is_some() { "update" } else { "create" };
        caller.require(Action::Write(namespace), verb, SUBSCRIPTIONS)?;
        place_in_namespace(&mut subscription.metadata, namespace)?;
        crate::services::name_from_url(&mut subscription.metadata, name)?;
        let name = subscription.metadata.name.clone();
        let mut errors = subscription.validate();
        if errors.iter().all(|e| e.field != "spec.url")
            && let Err(message) = self.config().subscription_hosts.check_url(&subscription.spec.url)
        {
            errors.push(berth_model::FieldError::new("spec.url", message));
        }
        if !errors.is_empty() {
            return Err(Error::invalid(SUBSCRIPTIONS, &name, errors));
        }
        let expect = if verb == "create" { Precondition::Absent } else { precondition(&subscription.metadata)? };
        let owned_namespace = namespace.to_string();
        transact(&**self.store(), move |txn| {
            let namespace = owned_namespace.as_str();
            ensure_namespace(txn, namespace)?;
            let key = Subscription::key(namespace, &name);
            match txn.get(&key)? {
                Some(existing) => {
                    let stored = Subscription::decode(&existing)?;
                    keep_server_fields(&mut subscription.metadata, &stored.metadata);
                    subscription.status = stored.status;
                }
                None if verb == "update" => return Err(Error::not_found(SUBSCRIPTIONS, &name)),
                None => {
                    stamp_new(&mut subscription.metadata, Time::now());
                    subscription.status = Default::default();
                    subscription.status.cursor = latest_change(txn, namespace)?;
                }
            }
            let revision =
                txn.put(&key, &subscription.encode(), &[], expect).map_err(|err| Error::from_store(err, SUBSCRIPTIONS, &name))?;
            subscription.metadata.resource_version = revision.to_string();
            subscription.set_type();
            Ok::<_, Error>(subscription)
        })
    }

    pub fn delete_subscription(&self, caller: &Caller, namespace: &str, name: &str) -> Result<Subscription> {
        caller.require(Action::Write(namespace), "delete", SUBSCRIPTIONS)?;
        let (owned_namespace, owned) = (namespace.to_string(), name.to_string());
        transact(&**self.store(), move |txn| {
            let key = Subscription::key(&owned_namespace, &owned);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(SUBSCRIPTIONS, &owned))?;
            txn.delete(&key, Precondition::Any)?;
            Subscription::decode(&stored)
        })
    }
}

/// The name of the newest outbox entry of `namespace` ("" when there is none).
fn latest_change(txn: &mut dyn WriteTxn, namespace: &str) -> Result<String> {
    Ok(txn.list(TagChange::RESOURCE, Some(namespace))?.last().map(|stored| stored.key.name.clone()).unwrap_or_default())
}

/// Whether anyone in `namespace` listens for tag changes (only then are they recorded).
pub(crate) fn has_subscriptions(txn: &mut dyn WriteTxn, namespace: &str) -> Result<bool> {
    Ok(!txn.list(Subscription::RESOURCE, Some(namespace))?.is_empty())
}

/// Records the tag changes of one stream write (`old` before, `new` after, at `revision`)
/// in the outbox.
pub(crate) fn record_tag_changes(
    txn: &mut dyn WriteTxn,
    namespace: &str,
    old: Option<&ImageStream>,
    new: Option<&ImageStream>,
    revision: u64,
) -> Result<()> {
    for (idx, mut change) in tag_changes(old, new, Time::now()).into_iter().enumerate() {
        if let Some(stream) = new.filter(|_| change.change == ChangeType::TagMoved) {
            change.contract = judge_move(txn, stream, &change)?;
        }
        change.metadata = ObjectMeta { name: outbox_name(revision, idx), namespace: namespace.to_string(), ..ObjectMeta::default() };
        txn.put(&TagChange::key(namespace, &change.metadata.name), &change.encode(), &[], Precondition::Absent)?;
    }
    Ok(())
}

/// The contract diff of a tag move, over the stream's overrides, when berth has both images.
fn judge_move(txn: &mut dyn WriteTxn, stream: &ImageStream, change: &TagChange) -> Result<Option<ContractChanges>> {
    let mut contract_of = |digest: &str| -> Result<Option<Contract>> {
        if digest.is_empty() {
            return Ok(None);
        }
        match txn.get(&Image::key("", digest))? {
            Some(stored) => Ok(Some(Contract::of_image(&Image::decode(&stored)?).with(&Overrides::of_tag(stream, &change.tag)))),
            None => Ok(None),
        }
    };
    let Some(previous) = contract_of(&change.previous_image)? else {
        return Ok(None);
    };
    Ok(contract_of(&change.image)?.map(|current| contract::diff(&previous, &current)))
}

/// Records changes that are not a stream's own (`ClassUpdated`, `ImageMarked`; each names
/// its tag's namespace) in the outbox of the namespaces that have a subscription, named
/// after the write at `revision`.
pub(crate) fn record_changes(txn: &mut dyn WriteTxn, changes: Vec<TagChange>, revision: u64) -> Result<()> {
    let mut subscribed: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for (idx, mut change) in changes.into_iter().enumerate() {
        let namespace = change.metadata.namespace.clone();
        let wanted = match subscribed.get(&namespace) {
            Some(wanted) => *wanted,
            None => {
                let wanted = has_subscriptions(txn, &namespace)?;
                subscribed.insert(namespace.clone(), wanted);
                wanted
            }
        };
        if !wanted {
            continue;
        }
        change.metadata = ObjectMeta { name: outbox_name(revision, idx), namespace: namespace.clone(), ..ObjectMeta::default() };
        txn.put(&TagChange::key(&namespace, &change.metadata.name), &change.encode(), &[], Precondition::Absent)?;
    }
    Ok(())
}

/// Outbox names sort in commit order: the revision of the stream write, then the change's
/// place within it.
fn outbox_name(revision: u64, idx: usize) -> String {
    format!("{revision:020}-{idx:04}")
}
