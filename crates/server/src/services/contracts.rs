//! Images as deployment contracts: the contract diff between two images of a tag
//! (`ContractDiff`), rollback of a tag to an earlier image of its history, and resuming
//! the imports a rollback paused. The rules are the model's (`contract`,
//! `tags::rollback`); every write goes through `streams::put_stream`, so a rollback of an
//! immutable tag is refused like any other move.

use berth_model::access::Action;
use berth_model::contract::{self, Contract, ContractDiff, Overrides};
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, ImageStreamTag};
use berth_model::names::split_stream_tag;
use berth_model::tags::rollback::{self, RollbackTarget};
use berth_model::{BERTH_API_VERSION, FieldError, ObjectMeta, Time};
use berth_store::{Precondition, transact};

use crate::services::streams::{put_stream, read_stream};
use crate::services::{Caller, Catalog, Error, Result};

const ISTAG: &str = "imagestreamtags.image.openshift.io";
const DIFF: &str = "contractdiffs.berth.dev";

fn split(name: &str) -> Result<(&str, &str)> {
    split_stream_tag(name)
        .ok_or_else(|| Error::invalid(ISTAG, name, vec![FieldError::new("metadata.name", format!("{name:?} must be STREAM:TAG"))]))
}

impl Catalog {
    /// The contract diff of `name` (`stream:tag`) between `from` and `to` (revisions of the
    /// tag, or images of the stream; by default the revision before the current one and
    /// the current one), both seen through the tag's overrides as they are now.
    pub fn contract_diff(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<ContractDiff> {
        caller.require(Action::Read(namespace), "get", DIFF)?;
        let (stream_name, tag) = split(name)?;
        let stream = self.load::<ImageStream>(namespace, stream_name)?.ok_or_else(|| Error::not_found(ISTAG, name))?;
        if stream.spec_tag(tag).is_none() && stream.status_tag(tag).is_none() {
            return Err(Error::not_found(ISTAG, name));
        }
        let (from, to) = contract::pick_sides(&stream, tag, from, to).map_err(Error::bad_request)?;
        let overrides = Overrides::of_tag(&stream, tag);
        let contract_of = |digest: &str| -> Result<Contract> {
            let image = self.load::<Image>("", digest)?.ok_or_else(|| {
                Error::not_found("images.image.openshift.io", digest).with_message(format!(
                    "berth does not have image {digest} (a reference tag is never imported): compare images berth imported or was pushed"
                ))
            })?;
            Ok(Contract::of_image(&image).with(&overrides))
        };
        let judged = contract::diff(&contract_of(&from.image)?, &contract_of(&to.image)?);
        Ok(ContractDiff {
            kind: "ContractDiff".to_string(),
            api_version: BERTH_API_VERSION.to_string(),
            metadata: ObjectMeta { name: name.to_string(), namespace: namespace.to_string(), ..ObjectMeta::default() },
            from,
            to,
            verdict: judged.verdict,
            changes: judged.changes,
        })
    }

    /// Points `name` (`stream:tag`) back at an earlier image of its history, recorded as a
    /// new history entry naming the caller; a tag that imports from upstream is paused.
    pub fn rollback_tag(&self, caller: &Caller, namespace: &str, name: &str, target: RollbackTarget) -> Result<ImageStreamTag> {
        caller.require(Action::Write(namespace), "update", ISTAG)?;
        let (stream_name, tag) = split(name)?;
        let (ns, stream_name, tag_owned, cause) =
            (namespace.to_string(), stream_name.to_string(), tag.to_string(), caller.cause("rollback"));
        let owned_name = name.to_string();
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let mut stream = read_stream(txn, &ns, &stream_name)?.ok_or_else(|| Error::not_found(ISTAG, &owned_name))?;
            if stream.spec_tag(&tag_owned).is_none() && stream.status_tag(&tag_owned).is_none() {
                return Err(Error::not_found(ISTAG, &owned_name));
            }
            rollback::rollback(&mut stream, &tag_owned, &target, &cause, Time::now()).map_err(Error::bad_request)?;
            put_stream(txn, &gate, &mut stream, Precondition::Any, &cause)
        })?;
        self.get_tag_view::<ImageStreamTag>(caller, namespace, name)
    }

    /// Lifts the pause a rollback put on `name`'s imports; the importer brings the tag up
    /// to date with upstream.
    pub fn resume_tag(&self, caller: &Caller, namespace: &str, name: &str) -> Result<ImageStreamTag> {
        caller.require(Action::Write(namespace), "update", ISTAG)?;
        let (stream_name, tag) = split(name)?;
        let (ns, stream_name, tag_owned, cause) = (namespace.to_string(), stream_name.to_string(), tag.to_string(), caller.cause("resume"));
        let owned_name = name.to_string();
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let mut stream = read_stream(txn, &ns, &stream_name)?.ok_or_else(|| Error::not_found(ISTAG, &owned_name))?;
            rollback::resume(&mut stream, &tag_owned).map_err(Error::bad_request)?;
            put_stream(txn, &gate, &mut stream, Precondition::Any, &cause)
        })?;
        self.get_tag_view::<ImageStreamTag>(caller, namespace, name)
    }
}
