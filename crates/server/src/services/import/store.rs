//! The importer's store work: a namespace's pull credentials, the spec tags an import
//! sets, and the results it records, each in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::Time;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, TagReference};
use berth_model::tags::{self, PendingImport, immutable};
use berth_store::{Precondition, transact};
use berth_upstream::Keyring;

use crate::services::streams::{immutable_tags, implicit_stream, read_stream};
use crate::services::{Caller, Catalog, Error, Resource, Result, ensure_namespace, stamp_new};

use super::ISI;

/// The reason an import records when a result would take the namespace over a quota or
/// a limit (as OpenShift records limit failures: `ImportSuccess=False`).
const QUOTA_EXCEEDED: &str = "QuotaExceeded";
use super::lookup::Outcome;

impl Catalog {
    /// The pull credentials of a namespace: its dockerconfigjson and dockercfg secrets,
    /// except those annotated `openshift.io/image.excludeSecret=true`.
    pub(crate) fn pull_keyring(&self, namespace: &str) -> Result<Keyring> {
        use base64::Engine;
        let mut keyring = Keyring::default();
        let all = crate::services::ListOptions::default();
        for secret in self.list_objects::<berth_model::core::Secret>(Some(namespace), &all, |_| true)?.collect()?.items {
            if secret.metadata.annotations.get("openshift.io/image.excludeSecret").is_some_and(|v| v == "true") {
                continue;
            }
            let Some(encoded) = secret.data.as_ref().and_then(|d| d.get(secret.credentials_key())) else {
                continue;
            };
            let Ok(document) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                continue;
            };
            if let Err(message) = keyring.add_docker_config(&secret.metadata.name, &document) {
                tracing::warn!(namespace, %message, "skipping a pull secret");
            }
        }
        Ok(keyring)
    }

    /// Sets the spec tags an import asks for (each asking for a re-import now), creating
    /// the stream when it is missing and the caller may create it so. Returns the stream
    /// as stored.
    pub(super) fn set_import_tags(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
        specs: Vec<TagReference>,
        cause: &str,
    ) -> Result<ImageStream> {
        let (namespace, name, cause) = (namespace.to_string(), name.to_string(), cause.to_string());
        let (caller, creation) = (caller.clone(), self.config().streams.implicit_create);
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            ensure_namespace(txn, &namespace)?;
            let now = Time::now();
            let old = read_stream(txn, &namespace, &name)?;
            let mut stream = match &old {
                Some(old) => old.clone(),
                None => implicit_stream(&caller, creation, &namespace, &name, "importing into it", now)?,
            };
            for spec in specs {
                // A rolled-back tag stays where its rollback put it until it is resumed.
                if let Some(why) = stream.spec_tag(&spec.name).and_then(tags::paused) {
                    return Err(Error::conflict(ISI, &name).with_message(format!(
                        "the imports of {name}:{} are paused ({why}): resume them with `berth tag --resume {name}:{}`, which imports \
                         upstream's image",
                        spec.name, spec.name
                    )));
                }
                let annotations = stream.spec_tag(&spec.name).and_then(|t| t.annotations.clone());
                tags::set_spec_tag(&mut stream, TagReference { annotations, ..spec });
            }
            let sources = tags::SourceStreams::new();
            let prepared = match &old {
                Some(old) => tags::prepare_update(old, &mut stream, &sources, now),
                None => tags::prepare_create(&mut stream, &sources, now),
            };
            prepared.map_err(|causes| Error::invalid(ISI, &name, causes))?;
            let expect = if old.is_some() { Precondition::Any } else { Precondition::Absent };
            crate::services::streams::put_stream(txn, &gate, &mut stream, expect, &cause)?;
            Ok::<_, Error>(stream)
        })
    }

    /// Stores new images and records import results on a stream's tags, in one
    /// transaction; `cause` says what started the import. A result that would move an
    /// immutable tag leaves it where it was and records why on the tag (the other results
    /// are recorded all the same), and its images are not stored. Returns the tags so
    /// refused, with why.
    pub(super) fn record_imports(
        &self,
        namespace: &str,
        name: &str,
        images: Vec<Image>,
        results: Vec<(PendingImport, Outcome)>,
        cause: &str,
    ) -> Result<BTreeMap<String, String>> {
        let (namespace, name, cause) = (namespace.to_string(), name.to_string(), cause.to_string());
        let gate = self.quota_gate();
        transact(&**self.store(), move |txn| {
            let now = Time::now();
            let mut refused = BTreeMap::new();
            let Some(mut stream) = read_stream(txn, &namespace, &name)? else {
                return Ok(refused);
            };
            let rules = immutable_tags(txn, &namespace, &[&stream])?;
            // Quotas and limits are checked per result (one over a limit is recorded as
            // that tag's failure, the others go on), against the stream as stored.
            let limits = crate::services::quotas::image_limits_in(txn, &namespace)?;
            let stored = stream.clone();
            let unstored = |digest: &str| -> Option<crate::services::storage::Layers> {
                let found = |digest: &str| images.iter().find(|i| i.metadata.name == digest);
                crate::services::storage::layers_with_children(found(digest)?, |child| Ok(found(child).cloned())).ok()
            };
            // The images of the results recorded, and of those refused.
            let (mut kept, mut dropped) = (BTreeSet::new(), BTreeSet::new());
            // Images stored ahead of their tag (a notified digest) check no tag.
            let checked = !results.is_empty();
            for (pending, outcome) in results {
                if !tags::still_pending(&stream, &pending) {
                    continue;
                }
                match outcome {
                    Ok(found) => {
                        let event = berth_model::imagestream::TagEvent {
                            created: now,
                            docker_image_reference: found.pull_spec,
                            image: found.image.metadata.name.clone(),
                            generation: pending.generation,
                            cause: cause.clone(),
                        };
                        let (tag, generation) = (pending.tag.as_str(), pending.generation);
                        let before = (!limits.is_empty()).then(|| stream.clone());
                        let recorded = immutable::apply_unless_pinned(&mut stream, tag, generation, &rules, now, |s| {
                            tags::record_import(s, tag, event, now)
                        });
                        let digests = std::iter::once(&found.image).chain(&found.manifests).map(|image| image.metadata.name.clone());
                        let over_limit = match (&recorded, &before) {
                            (Ok(_), Some(_)) => match gate.check_within(txn, &limits, Some(&stored), &stream, &cause, &unstored) {
                                Ok(_) => None,
                                Err(err) if err.kind == crate::services::ErrorKind::Forbidden => Some(err.message),
                                Err(err) => return Err(err),
                            },
                            _ => None,
                        };
                        match (recorded, over_limit) {
                            (Ok(_), None) => kept.extend(digests),
                            (Ok(_), Some(message)) => {
                                stream = before.expect("kept when limits are set");
                                tags::record_import_failure(&mut stream, tag, generation, QUOTA_EXCEEDED, &message, now);
                                dropped.extend(digests);
                            }
                            (Err(pinned), _) => {
                                dropped.extend(digests);
                                refused.insert(pending.tag.clone(), pinned.message());
                            }
                        }
                    }
                    Err(err) => tags::record_import_failure(&mut stream, &pending.tag, pending.generation, err.reason(), &err.message, now),
                }
            }
            let refused_only = |digest: &String| dropped.contains(digest) && !kept.contains(digest);
            for mut image in images {
                // A list kept for a refused image goes with it.
                if refused_only(&image.metadata.name) || image.docker_image_manifests.iter().any(|child| refused_only(&child.digest)) {
                    continue;
                }
                let key = Image::key("", &image.metadata.name);
                if txn.get(&key)?.is_none() {
                    stamp_new(&mut image.metadata, now);
                    txn.put(&key, &image.encode(), &[], Precondition::Absent)?;
                }
            }
            if checked {
                tags::mark_repository_checked(&mut stream, now);
            }
            crate::services::streams::put_stream(txn, &gate, &mut stream, Precondition::Any, &cause)?;
            Ok::<_, Error>(refused)
        })
    }
}
