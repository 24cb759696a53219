//! Images: cluster-scoped, named by digest, content immutable. An Image is visible to a
//! caller with cluster read access, or to one who may read a stream that references it;
//! to anyone else it does not exist (404, so that digests do not leak across namespaces).

use berth_model::Time;
use berth_model::access::Action;
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_store::{Precondition, transact};

use crate::services::{Caller, Catalog, Error, LazyList, ListOptions, Resource, Result, keep_server_fields, precondition, stamp_new};

const IMAGES: &str = Image::QUALIFIED;

impl Catalog {
    pub(crate) fn can_see_image(&self, caller: &Caller, digest: &str) -> Result<bool> {
        if caller.grant.allows(Action::ReadCluster) {
            return Ok(true);
        }
        let referrers = self.store().referrers(ImageStream::RESOURCE, digest)?;
        Ok(referrers.iter().any(|key| caller.grant.allows(Action::Read(&key.namespace))))
    }

    pub fn get_image(&self, caller: &Caller, name: &str) -> Result<Image> {
        if !self.can_see_image(caller, name)? {
            return Err(Error::not_found(IMAGES, name));
        }
        self.require("", name)
    }

    pub fn list_images(&self, caller: &Caller, options: &ListOptions) -> Result<LazyList<Image>> {
        let list = self.list_objects::<Image>(None, options, |_| true)?;
        if caller.grant.allows(Action::ReadCluster) {
            return Ok(list);
        }
        // A namespaced caller sees the images its namespaces' streams reference.
        let (catalog, caller) = (self.clone(), caller.clone());
        Ok(list.view(move |image| Ok(catalog.can_see_image(&caller, &image.metadata.name)?.then_some(image))))
    }

    pub fn create_image(&self, caller: &Caller, mut image: Image) -> Result<Image> {
        caller.require(Action::WriteImages, "create", IMAGES)?;
        let name = image.metadata.name.clone();
        image.validate("").map_err(|causes| Error::invalid(IMAGES, &name, causes))?;
        image.metadata.namespace.clear();
        stamp_new(&mut image.metadata, Time::now());
        let (key, body) = (Image::key("", &name), image.encode());
        let revision = transact(&**self.store(), move |txn| txn.put(&key, &body, &[], Precondition::Absent))
            .map_err(|err| Error::from_store(err, IMAGES, &name))?;
        image.metadata.resource_version = revision.to_string();
        image.set_type();
        Ok(image)
    }

    /// Stores an image pushed by digest to a stream of `namespace` (the registry checked
    /// the push), unless berth already has it.
    pub fn store_pushed_image(&self, caller: &Caller, namespace: &str, mut image: Image) -> Result<()> {
        caller.require(Action::Write(namespace), "push", IMAGES)?;
        let name = image.metadata.name.clone();
        image.validate("").map_err(|causes| Error::invalid(IMAGES, &name, causes))?;
        image.metadata.namespace.clear();
        stamp_new(&mut image.metadata, Time::now());
        let (key, body) = (Image::key("", &name), image.encode());
        transact(&**self.store(), move |txn| {
            if txn.get(&key)?.is_none() {
                txn.put(&key, &body, &[], Precondition::Absent)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// Replaces an image's labels and annotations; any other change is refused.
    pub fn update_image(&self, caller: &Caller, name: &str, update: Image) -> Result<Image> {
        caller.require(Action::WriteImages, "update", IMAGES)?;
        if !update.metadata.name.is_empty() && update.metadata.name != name {
            return Err(Error::bad_request(format!(
                "the name of the object ({:?}) does not match the name in the URL ({name:?})",
                update.metadata.name
            )));
        }
        let expect = precondition(&update.metadata)?;
        let name = name.to_string();
        transact(&**self.store(), move |txn| {
            let name = name.as_str();
            let key = Image::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(IMAGES, name))?;
            let mut image = Image::decode(&stored)?;
            let errors = image.immutable_changes(&update);
            if !errors.is_empty() {
                return Err(Error::invalid(IMAGES, name, errors));
            }
            let mut meta = update.metadata.clone();
            keep_server_fields(&mut meta, &image.metadata);
            meta.name = name.to_string();
            meta.namespace.clear();
            image.metadata = meta;
            let revision = txn.put(&key, &image.encode(), &[], expect).map_err(|err| Error::from_store(err, IMAGES, name))?;
            image.metadata.resource_version = revision.to_string();
            Ok(image)
        })
    }

    pub fn delete_image(&self, caller: &Caller, name: &str) -> Result<Image> {
        caller.require(Action::AdministerCluster, "delete", IMAGES)?;
        let name = name.to_string();
        transact(&**self.store(), move |txn| {
            let name = name.as_str();
            let key = Image::key("", name);
            let stored = txn.get(&key)?.ok_or_else(|| Error::not_found(IMAGES, name))?;
            txn.delete(&key, Precondition::Any)?;
            Image::decode(&stored)
        })
    }
}
