//! The importer's store work: a namespace's pull credentials, the spec tags an import
//! sets, and the results it records, each in one transaction.

use berth_model::Time;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, TagReference};
use berth_model::tags::{self, PendingImport};
use berth_store::{Precondition, transact};
use berth_upstream::Keyring;

use crate::services::{Catalog, Error, Resource, Result, ensure_namespace, stamp_new};

use super::ISI;
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
    /// the stream when it is missing. Returns the stream as stored.
    pub(super) fn set_import_tags(&self, namespace: &str, name: &str, specs: Vec<TagReference>, cause: &str) -> Result<ImageStream> {
        let (namespace, name, cause) = (namespace.to_string(), name.to_string(), cause.to_string());
        transact(&**self.store(), move |txn| {
            ensure_namespace(txn, &namespace)?;
            let now = Time::now();
            let old = crate::services::streams::read_stream(txn, &namespace, &name)?;
            let mut stream = old.clone().unwrap_or_else(|| crate::services::streams::new_stream(&namespace, &name, now));
            for spec in specs {
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
            crate::services::streams::put_stream(txn, &mut stream, expect, &cause)?;
            Ok::<_, Error>(stream)
        })
    }

    /// Stores new images and records import results on a stream's tags, in one
    /// transaction; `cause` says what started the import.
    pub(super) fn record_imports(
        &self,
        namespace: &str,
        name: &str,
        images: Vec<Image>,
        results: Vec<(PendingImport, Outcome)>,
        cause: &str,
    ) -> Result<()> {
        let (namespace, name, cause) = (namespace.to_string(), name.to_string(), cause.to_string());
        transact(&**self.store(), move |txn| {
            let now = Time::now();
            for mut image in images {
                let key = Image::key("", &image.metadata.name);
                if txn.get(&key)?.is_none() {
                    stamp_new(&mut image.metadata, now);
                    txn.put(&key, &image.encode(), &[], Precondition::Absent)?;
                }
            }
            let Some(mut stream) = crate::services::streams::read_stream(txn, &namespace, &name)? else {
                return Ok(());
            };
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
                        tags::record_import(&mut stream, &pending.tag, event, now);
                    }
                    Err(err) => tags::record_import_failure(&mut stream, &pending.tag, pending.generation, err.reason(), &err.message, now),
                }
            }
            tags::mark_repository_checked(&mut stream, now);
            crate::services::streams::put_stream(txn, &mut stream, Precondition::Any, &cause)?;
            Ok::<_, Error>(())
        })?;
        Ok(())
    }
}
