//! What an ImageStreamImport asks for, checked, and the per-image status it gets back.

use std::collections::HashSet;

use berth_model::FieldError;
use berth_model::image::Image;
use berth_model::imagestream::{ImageStream, TagImportPolicy, TagReference, TagReferencePolicy};
use berth_model::imagestreamimport::{ImageImportStatus, ImageStreamImport};
use berth_model::meta::{ObjectReference, Status};
use berth_model::names::{check_stream_name, check_tag};
use berth_model::reference::ImageReference;
use berth_model::tags::KIND_DOCKER_IMAGE;

use crate::services::{Error, Result};

use super::ISI;
use super::lookup::{Lookup, Outcome};

/// One image an ImageStreamImport asks for, with where it goes.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub(super) tag: String,
    pub(super) reference: ImageReference,
    pub(super) import_policy: TagImportPolicy,
    pub(super) reference_policy: TagReferencePolicy,
    pub(super) include_manifest: bool,
    pub(super) from_repository: bool,
}

impl Wanted {
    pub(super) fn spec_tag(&self) -> TagReference {
        TagReference {
            name: self.tag.clone(),
            from: Some(ObjectReference { kind: KIND_DOCKER_IMAGE.to_string(), name: self.reference.to_string(), namespace: String::new() }),
            // 0 asks for a re-import at the stream's next generation.
            generation: Some(0),
            import_policy: self.import_policy.clone(),
            reference_policy: self.reference_policy.clone(),
            ..TagReference::default()
        }
    }

    pub(super) fn lookup(&self, stream: Option<&ImageStream>) -> Lookup {
        Lookup::new(stream, &self.tag, self.reference.clone(), &self.import_policy)
    }
}

pub(super) struct WantedRepository {
    pub(super) reference: ImageReference,
    pub(super) import_policy: TagImportPolicy,
    pub(super) reference_policy: TagReferencePolicy,
    pub(super) include_manifest: bool,
}

pub(super) struct Requested {
    pub(super) images: Vec<Wanted>,
    pub(super) repository: Option<WantedRepository>,
}

/// Checks an ImageStreamImport and turns it into what to look up.
pub(super) fn validate_import(namespace: &str, isi: &ImageStreamImport) -> Result<Requested> {
    let name = &isi.metadata.name;
    let mut errors: Vec<FieldError> = check_stream_name("metadata.name", namespace, name).err().into_iter().collect();
    if isi.spec.images.is_empty() && isi.spec.repository.is_none() {
        errors.push(FieldError::new("spec", "name at least one image in spec.images or a repository in spec.repository"));
    }
    let docker_reference = |field: &str, from: &ObjectReference, errors: &mut Vec<FieldError>| -> Option<ImageReference> {
        if from.kind != KIND_DOCKER_IMAGE {
            errors.push(FieldError::new(format!("{field}.kind"), format!("kind {:?} cannot be imported: use DockerImage", from.kind)));
            return None;
        }
        match ImageReference::parse(&from.name) {
            Ok(reference) => Some(reference),
            Err(message) => {
                errors.push(FieldError::new(format!("{field}.name"), message));
                None
            }
        }
    };
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for (idx, spec) in isi.spec.images.iter().enumerate() {
        let field = format!("spec.images[{idx}]");
        let Some(reference) = docker_reference(&format!("{field}.from"), &spec.from, &mut errors) else {
            continue;
        };
        let tag = match &spec.to {
            Some(to) if !to.name.is_empty() => to.name.clone(),
            _ => reference.tag.clone().unwrap_or_else(|| "latest".to_string()),
        };
        if let Err(err) = check_tag(&format!("{field}.to.name"), &tag) {
            errors.push(err);
        }
        if !seen.insert(tag.clone()) {
            errors.push(FieldError::new(format!("{field}.to.name"), format!("tag {tag:?} is the target of more than one image")));
        }
        images.push(Wanted {
            tag,
            reference,
            import_policy: spec.import_policy.clone(),
            reference_policy: spec.reference_policy.clone(),
            include_manifest: spec.include_manifest,
            from_repository: false,
        });
    }
    let repository = match &isi.spec.repository {
        None => None,
        Some(spec) => docker_reference("spec.repository.from", &spec.from, &mut errors).and_then(|reference| {
            if reference.tag.is_some() || reference.digest.is_some() {
                errors.push(FieldError::new(
                    "spec.repository.from.name",
                    "a repository import names a repository, without a tag or digest: import one image with spec.images",
                ));
                return None;
            }
            Some(WantedRepository {
                reference,
                import_policy: spec.import_policy.clone(),
                reference_policy: spec.reference_policy.clone(),
                include_manifest: spec.include_manifest,
            })
        }),
    };
    for (field, policy) in isi
        .spec
        .images
        .iter()
        .enumerate()
        .map(|(idx, i)| (format!("spec.images[{idx}]"), &i.import_policy))
        .chain(isi.spec.repository.iter().map(|r| ("spec.repository".to_string(), &r.import_policy)))
    {
        if !matches!(policy.import_mode.as_str(), "" | "Legacy" | "PreserveOriginal") {
            errors.push(FieldError::new(format!("{field}.importPolicy.importMode"), "must be Legacy or PreserveOriginal"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::invalid(ISI, name, errors));
    }
    Ok(Requested { images, repository })
}

/// The per-image status of an import; `pinned` says why the tag was left where it was
/// (an immutable tag the image found would have moved).
pub(super) fn image_status(want: &Wanted, outcome: Outcome, pinned: Option<String>) -> ImageImportStatus {
    if let Some(message) = pinned {
        return ImageImportStatus {
            status: Status::failure(berth_model::tags::immutable::IMMUTABLE_TAG_REASON, 403, message),
            image: None,
            tag: want.tag.clone(),
            manifests: Vec::new(),
        };
    }
    match outcome {
        Ok(found) => {
            let shown = |image: &Image| if want.include_manifest { image.clone() } else { image.without_raw_content() };
            let mut image = shown(&found.image);
            image.docker_image_reference = found.pull_spec;
            ImageImportStatus {
                status: Status::success(),
                image: Some(image),
                tag: want.tag.clone(),
                manifests: found.manifests.iter().map(shown).collect(),
            }
        }
        Err(err) => ImageImportStatus {
            status: Status::failure(err.reason(), err.code(), format!("{}: {}", want.reference, err.message)),
            image: None,
            tag: want.tag.clone(),
            manifests: Vec::new(),
        },
    }
}
