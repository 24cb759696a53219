//! Admission: Kubernetes asks berth about each workload it is about to store
//! (AdmissionReview, `admission.k8s.io/v1`), and berth resolves every container image it
//! can to an immutable digest, so that every replica runs the same bytes
//! (immutable-image-identifier), returning a JSON patch from the mutating webhook.
//!
//! What is resolved, for a workload in namespace `ns` (never anything of another
//! namespace, whose digests the pod's author may not be allowed to learn):
//! - a short name (`app`, `app:1.0`) when the stream `ns/app` has `lookupPolicy.local`;
//! - a reference to berth's own registry for a stream of `ns`
//!   (`registry.berth/ns/app:1.0`);
//! - an external tag a stream of `ns` imports (`docker.io/library/ruby:3.3`), to the
//!   digest it imported, in the same registry.
//!
//! How much is done per resource follows OpenShift's resolution modes.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use berth_model::Digest;
use berth_model::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, IMAGE_REVIEW_VERSION, ImageAt, ImageReview, ImageReviewStatus, image_patch,
    images_of,
};
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::policy::{
    DENY_EXECUTION, Enforcement, FailurePolicy, ImageFacts, KnownImage, Verdict, canonical_source, execution_denied,
};
use berth_model::reference::ImageReference;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::services::policy::AdmissionSnapshot;
use crate::services::usage::seen_now;
use crate::services::{Catalog, Resource, Result};

/// OpenShift's `resolveImages` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolutionMode {
    /// Leave images as they are.
    DoNotAttempt,
    /// Resolve where possible, for the decision; rewrite nothing.
    Attempt,
    /// Refuse a workload with an image berth cannot resolve; rewrite nothing.
    Required,
    /// Resolve where possible and rewrite what was resolved.
    #[default]
    AttemptRewrite,
    /// Refuse a workload with an image berth cannot resolve, and rewrite the others.
    RequiredRewrite,
}

impl ResolutionMode {
    fn rewrites(self) -> bool {
        matches!(self, ResolutionMode::AttemptRewrite | ResolutionMode::RequiredRewrite)
    }

    fn requires(self) -> bool {
        matches!(self, ResolutionMode::Required | ResolutionMode::RequiredRewrite)
    }
}

/// The server config's `admission:` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdmissionSettings {
    /// The mode for every resource not named in `resources`.
    #[serde(default)]
    pub resolve_images: ResolutionMode,
    /// Modes per resource (`pods`, `deployments`, `cronjobs`, `buildconfigs`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, ResolutionMode>,
    /// What an image marked `images.openshift.io/deny-execution: "true"` stops.
    #[serde(default)]
    pub deny_execution: DenyExecution,
}

/// The built-in `execution-denied` rule (OpenShift's default rule, on by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DenyExecution {
    /// The marked image may not run.
    #[default]
    Image,
    /// Neither may any image built on it (found through the lineage index).
    ImageAndDescendants,
    /// The mark stops nothing.
    Ignore,
}

impl AdmissionSettings {
    pub fn mode_for(&self, resource: &str) -> ResolutionMode {
        self.resources.get(resource).copied().unwrap_or(self.resolve_images)
    }
}

/// The name of a cluster that sends reviews, from the webhook URL's `?cluster=` (several
/// clusters may share one berth); `default` when it names none.
pub fn cluster_name(given: Option<&str>) -> Result<String> {
    match given.filter(|name| !name.is_empty()) {
        None => Ok("default".to_string()),
        Some(name) => berth_model::names::check_dns_label("cluster", name)
            .map(|()| name.to_string())
            .map_err(|err| crate::services::Error::bad_request(format!("cluster={name:?}: {}", err.message))),
    }
}

/// Which webhook was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Webhook {
    Mutating,
    Validating,
}

/// What berth decided about a workload's images.
#[derive(Clone, Debug, Default)]
struct Decision {
    resolved: Vec<Resolved>,
    /// Why the workload may not run; empty when it may.
    denials: Vec<String>,
    /// What dry-run rules would have refused, and what rules that fail open could not
    /// decide: admitted, and said as warnings (`kubectl` prints them).
    warnings: Vec<String>,
    /// The digest of each image berth could pin, for the usage record.
    digests: Vec<Digest>,
}

/// One image resolved: where it is, and the reference by digest it resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub at: ImageAt,
    pub by_digest: String,
}

impl Catalog {
    /// Answers an AdmissionReview. A review without a request is refused by the caller
    /// (it is not a review); a request for a kind with no images is allowed unchanged.
    pub fn review(
        &self,
        settings: &AdmissionSettings,
        cluster: &str,
        webhook: Webhook,
        request: &AdmissionRequest,
    ) -> Result<AdmissionReview> {
        let mut response = AdmissionResponse { uid: request.uid.clone(), allowed: true, ..AdmissionResponse::default() };
        response.audit_annotations.insert("berth.dev/cluster".to_string(), cluster.to_string());
        let mode = settings.mode_for(&request.resource.resource);
        let object = match (&request.object, request.operation.as_str()) {
            (Some(object), "CREATE" | "UPDATE") if mode != ResolutionMode::DoNotAttempt => object,
            _ => return Ok(reviewed(response)),
        };
        let images = images_of(&request.kind.group, &request.kind.kind, object);
        let rewrites = webhook == Webhook::Mutating && mode.rewrites();
        let decision = self.decide(settings, mode, rewrites, &request.resource.resource, &request.namespace, images)?;
        response.warnings = decision.warnings.clone();
        if !decision.warnings.is_empty() {
            response.audit_annotations.insert("berth.dev/warnings".to_string(), decision.warnings.join("; "));
        }
        if !decision.denials.is_empty() {
            response.allowed = false;
            let message = format!("berth (cluster {cluster}, namespace {}): {}", request.namespace, decision.denials.join("; "));
            response.status = Some(json!({"code": 403, "reason": "Forbidden", "message": message}));
            return Ok(reviewed(response));
        }
        for at in &decision.resolved {
            response.audit_annotations.insert(format!("berth.dev/resolved{}", at.at.pointer.replace('/', ".")), at.by_digest.clone());
        }
        // The validating webhook sees the object as it will be stored; a dry run stores nothing.
        if webhook == Webhook::Validating && request.dry_run != Some(true) {
            let (kind, name) = crate::services::usage::workload_of(&request.kind.kind, &request.name, object);
            for digest in &decision.digests {
                self.usage_recorder().note(digest.clone(), seen_now(cluster, &request.namespace, kind.clone(), name.clone()));
            }
        }
        if rewrites && !decision.resolved.is_empty() {
            let rewrites: Vec<(ImageAt, String)> = decision.resolved.into_iter().map(|r| (r.at, r.by_digest)).collect();
            let patch = serde_json::to_vec(&image_patch(&rewrites)).expect("a patch serialises");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(patch));
            response.patch_type = Some("JSONPatch".to_string());
        }
        Ok(reviewed(response))
    }

    /// Answers an ImageReview (`imagepolicy.k8s.io/v1alpha1`, Kubernetes' ImagePolicyWebhook
    /// plugin) as the validating webhook would answer a Pod with these containers. An
    /// annotation `<anything>.image-policy.k8s.io/break-glass: "true"` admits the pod
    /// anyway, and the audit annotations say so and why it would have been refused.
    pub fn image_review(&self, settings: &AdmissionSettings, cluster: &str, resource: &str, review: &ImageReview) -> Result<ImageReview> {
        let mode = settings.mode_for(resource);
        let images: Vec<ImageAt> = review
            .spec
            .containers
            .iter()
            .enumerate()
            .map(|(idx, c)| ImageAt { pointer: format!("/spec/containers/{idx}/image"), image: c.image.clone() })
            .collect();
        let decision = if mode == ResolutionMode::DoNotAttempt {
            Decision::default()
        } else {
            self.decide(settings, mode, false, resource, &review.spec.namespace, images)?
        };
        let break_glass = review
            .spec
            .annotations
            .iter()
            .find(|(key, value)| key.ends_with(".image-policy.k8s.io/break-glass") && value.as_str() == "true")
            .map(|(key, _)| key.clone());
        let mut status = ImageReviewStatus { allowed: decision.denials.is_empty(), ..ImageReviewStatus::default() };
        status.audit_annotations.insert("berth.dev/cluster".to_string(), cluster.to_string());
        for at in &decision.resolved {
            status.audit_annotations.insert(format!("berth.dev/resolved{}", at.at.pointer.replace('/', ".")), at.by_digest.clone());
        }
        if !decision.warnings.is_empty() {
            status.audit_annotations.insert("berth.dev/warnings".to_string(), decision.warnings.join("; "));
        }
        if decision.denials.is_empty() || break_glass.is_some() {
            for digest in &decision.digests {
                self.usage_recorder().note(digest.clone(), seen_now(cluster, &review.spec.namespace, "Pod".to_string(), "-".to_string()));
            }
        }
        if !decision.denials.is_empty() {
            let reason = decision.denials.join("; ");
            match break_glass {
                Some(key) => {
                    status.allowed = true;
                    status.audit_annotations.insert("berth.dev/break-glass".to_string(), key);
                    status.audit_annotations.insert("berth.dev/would-deny".to_string(), reason);
                }
                None => status.reason = format!("berth (cluster {cluster}, namespace {}): {reason}", review.spec.namespace),
            }
        }
        Ok(ImageReview {
            api_version: IMAGE_REVIEW_VERSION.to_string(),
            kind: "ImageReview".to_string(),
            spec: review.spec.clone(),
            status: Some(status),
        })
    }

    /// What berth decides about the images of a workload of `resource` in `namespace`:
    /// each resolved where it can be, and judged by the built-in `execution-denied` rule
    /// and every ImagePolicy that applies. When this answer `rewrites` the images it
    /// resolves, they count as named by digest (the validating webhook, called after, sees
    /// them so).
    fn decide(
        &self,
        settings: &AdmissionSettings,
        mode: ResolutionMode,
        rewrites: bool,
        resource: &str,
        namespace: &str,
        images: Vec<ImageAt>,
    ) -> Result<Decision> {
        let snapshot = self.admission_snapshot()?;
        let rules: Vec<_> = snapshot.policies.applying(resource, namespace).collect();
        let classes_needed = rules.iter().any(|rule| !rule.policy.spec.require.descendant_of.is_empty());
        let mut decision = Decision::default();
        let mut unresolved = Vec::new();
        for at in images {
            let resolution = match snapshot.resolution(namespace, &at.image) {
                Some(kept) => Ok(kept),
                None => self.resolve_image(namespace, &at.image).inspect(|r| snapshot.keep_resolution(namespace, &at.image, r.clone())),
            };
            let mut facts = self.image_facts(settings, &snapshot, &at.image, &resolution, classes_needed);
            facts.by_digest |= rewrites && matches!(&resolution, Ok(Some(_)));
            if settings.deny_execution != DenyExecution::Ignore
                && let Some(reason) = execution_denied(&facts)
            {
                decision.denials.push(reason);
            }
            for rule in &rules {
                let spec = &rule.policy.spec;
                match (rule.judge(&facts), spec.enforcement, spec.failure_policy) {
                    (Verdict::Pass, _, _) => {}
                    (Verdict::Deny(reason), Enforcement::Enforce, _) => decision.denials.push(reason),
                    (Verdict::Deny(reason), Enforcement::DryRun, _) => decision.warnings.push(format!("dry run, not enforced: {reason}")),
                    (Verdict::CannotDecide(why), _, FailurePolicy::Fail) => {
                        decision.denials.push(format!("{why}; the rule fails closed: try again shortly, or ask an admin"))
                    }
                    (Verdict::CannotDecide(why), _, FailurePolicy::Ignore) => {
                        decision.warnings.push(format!("{why}; admitted, as the rule fails open"))
                    }
                }
            }
            if let Ok(Some(known)) = &facts.image
                && let Some(digest) = &known.digest
            {
                decision.digests.push(digest.clone());
            }
            match resolution {
                Ok(Some(by_digest)) if by_digest != at.image => decision.resolved.push(Resolved { at, by_digest }),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => unresolved.push(at.image),
            }
        }
        if decision.denials.is_empty() && mode.requires() && !unresolved.is_empty() {
            decision.denials.push(format!(
                "berth could not resolve {} to a digest, and resolution is required for {resource}: tag the image into an image stream of namespace {namespace:?} (with lookupPolicy.local for a short name), or refer to it by digest",
                unresolved.join(", "),
            ));
        }
        Ok(decision)
    }

    /// What berth knows of an image a workload names as `written`, resolved (or not) to
    /// `resolution`.
    fn image_facts(
        &self,
        settings: &AdmissionSettings,
        snapshot: &AdmissionSnapshot,
        written: &str,
        resolution: &Result<Option<String>>,
        classes: bool,
    ) -> ImageFacts {
        let parsed = ImageReference::parse(written).ok();
        let resolved = resolution.as_ref().ok().and_then(Option::as_deref).and_then(|r| ImageReference::parse(r).ok());
        let (registry, repository) =
            resolved.as_ref().or(parsed.as_ref()).map(|r| canonical_source(&r.registry, &r.path)).unwrap_or_default();
        let digest = resolved.and_then(|r| r.digest);
        let mut image = match (resolution, &digest) {
            (Err(err), _) => Err(err.message.clone()),
            (Ok(_), None) => Ok(None),
            (Ok(_), Some(digest)) => self.known_image(settings, snapshot, digest).map_err(|err| err.message),
        };
        let mut built_on = Default::default();
        if let (true, Ok(Some(_)), Some(digest)) = (classes, &image, &digest) {
            // Classes the store cannot tell are as unknown as an image it cannot read.
            match self.classes_of(digest) {
                Ok(found) => built_on = found,
                Err(err) => image = Err(err.message),
            }
        }
        ImageFacts {
            written: written.to_string(),
            registry,
            repository,
            by_digest: parsed.is_some_and(|r| r.digest.is_some()),
            image,
            classes: built_on,
        }
    }

    /// The image `digest` as berth holds it, read once and kept in the snapshot.
    fn known_image(&self, settings: &AdmissionSettings, snapshot: &AdmissionSnapshot, digest: &Digest) -> Result<Option<Arc<KnownImage>>> {
        if let Some(kept) = snapshot.image(digest) {
            return Ok(kept);
        }
        let read = self.read_known_image(settings, digest)?.map(Arc::new);
        snapshot.keep_image(digest.clone(), read.clone());
        Ok(read)
    }

    /// The ImageClasses the image `digest` is built on.
    fn classes_of(&self, digest: &Digest) -> Result<std::collections::BTreeSet<String>> {
        let domain = format!("{}/", self.config().classes.label_domain);
        Ok(self.class_labels_of(digest)?.into_keys().filter_map(|key| key.strip_prefix(&domain).map(str::to_string)).collect())
    }

    /// The image `digest` as the store holds it, and the marked image that stops it, if
    /// any (itself, or one it is built on when marks reach descendants).
    fn read_known_image(&self, settings: &AdmissionSettings, digest: &Digest) -> Result<Option<KnownImage>> {
        let Some(image) = self.load::<Image>("", digest.as_str())? else { return Ok(None) };
        let mut known = KnownImage {
            digest: Some(digest.clone()),
            labels: berth_model::manifest::labels(&image),
            denied_by: denies_execution(&image).then(|| digest.clone()),
            ..KnownImage::default()
        };
        if known.denied_by.is_none() && settings.deny_execution == DenyExecution::ImageAndDescendants {
            let ancestors = self.lineage_index().read(|index| index.ancestors(digest)).unwrap_or_default();
            for ancestor in ancestors {
                if self.load::<Image>("", ancestor.image.as_str())?.is_some_and(|a| denies_execution(&a)) {
                    known.denied_by = Some(ancestor.image);
                    break;
                }
            }
        }
        known.annotations = image.metadata.annotations;
        Ok(Some(known))
    }

    /// The reference by digest `image` resolves to in `namespace`, or `None` when berth
    /// cannot resolve it. A reference already by digest resolves to itself.
    pub fn resolve_image(&self, namespace: &str, image: &str) -> Result<Option<String>> {
        let Ok(reference) = ImageReference::parse(image) else { return Ok(None) };
        if reference.digest.is_some() {
            return Ok(Some(image.to_string()));
        }
        let tag = reference.tag.clone().unwrap_or_else(|| "latest".to_string());
        let config = self.config();
        let ours = !reference.registry.is_empty()
            && (reference.registry == config.registry_hostname || config.public_registry_hostnames.contains(&reference.registry));
        // A short name, through a stream of the namespace that allows local lookup.
        if reference.registry.is_empty()
            && !reference.path.contains('/')
            && let Some(stream) = self.load::<ImageStream>(namespace, &reference.path)?
            && stream.spec.lookup_policy.local
        {
            return Ok(self.stream_tag_digest(&stream, &tag, None));
        }
        // berth's own registry, for a stream of the namespace.
        if ours {
            let Some((stream_namespace, stream_name)) = reference.path.split_once('/') else { return Ok(None) };
            if stream_namespace != namespace || stream_name.contains('/') {
                return Ok(None);
            }
            return Ok(match self.load::<ImageStream>(namespace, stream_name)? {
                Some(stream) => self.stream_tag_digest(&stream, &tag, Some(&reference.registry)),
                None => None,
            });
        }
        // An external tag a stream of the namespace imports.
        let Some(key) = reference.tracking_key() else { return Ok(None) };
        for stream_key in self.store().referrers(ImageStream::RESOURCE, &format!("from:{key}"))? {
            if stream_key.namespace != namespace {
                continue;
            }
            let Some(stream) = self.load::<ImageStream>(namespace, &stream_key.name)? else { continue };
            for spec in stream.spec.tags.iter().filter(|t| !t.reference) {
                let tracks = spec.from.as_ref().filter(|f| f.kind == "DockerImage").and_then(|f| ImageReference::parse(&f.name).ok());
                if tracks.and_then(|r| r.tracking_key()).as_deref() != Some(key.as_str()) {
                    continue;
                }
                if let Some(digest) = stream.latest_event(&spec.name).map(|e| e.image.clone()).filter(|d| !d.is_empty()) {
                    let registry = if reference.registry.is_empty() { String::new() } else { format!("{}/", reference.registry) };
                    return Ok(Some(format!("{registry}{}@{digest}", reference.path)));
                }
            }
        }
        Ok(None)
    }

    /// The pull spec by digest of a stream tag's current image: in berth's registry (under
    /// `registry`, or the configured hostname) for `Local` reference policy or when asked
    /// through berth's registry, else where the image came from.
    fn stream_tag_digest(&self, stream: &ImageStream, tag: &str, registry: Option<&str>) -> Option<String> {
        let event = stream.latest_event(tag).filter(|e| !e.image.is_empty())?;
        let local = stream.spec_tag(tag).is_some_and(|t| t.reference_policy.policy_type == "Local");
        if registry.is_some() || local || event.docker_image_reference.is_empty() {
            let host = registry.unwrap_or(&self.config().registry_hostname);
            return Some(format!("{host}/{}/{}@{}", stream.metadata.namespace, stream.metadata.name, event.image));
        }
        Some(event.docker_image_reference.clone())
    }
}

fn denies_execution(image: &Image) -> bool {
    image.metadata.annotations.get(DENY_EXECUTION).map(String::as_str) == Some("true")
}

fn reviewed(response: AdmissionResponse) -> AdmissionReview {
    AdmissionReview {
        api_version: "admission.k8s.io/v1".to_string(),
        kind: "AdmissionReview".to_string(),
        request: None,
        response: Some(response),
    }
}
