//! The stored kinds and how each is kept: its resource name, qualified name for
//! messages, whether it is namespaced, and the references it declares to the store.

use berth_model::core::{Namespace, Secret, Token};
use berth_model::image::Image;
use berth_model::imagestream::ImageStream;
use berth_model::lineage::{ImageClass, ImageClassGroup};
use berth_model::notify::{Subscription, TagChange};
use berth_model::policy::ImagePolicy;
use berth_model::prune::ImagePruner;
use berth_model::quota::{LimitRange, ResourceQuota};
use berth_model::usage::ImageUsage;
use berth_model::{BERTH_API_VERSION, IMAGE_API_VERSION, ObjectMeta};
use berth_store::{ObjectKey, StoredObject};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::services::error::{Error, Result};

/// A kind kept in the store as JSON.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The plural resource name in URLs and in the store.
    const RESOURCE: &'static str;
    /// `resource.group`, as Kubernetes names resources in messages.
    const QUALIFIED: &'static str;
    const KIND: &'static str;
    const API_VERSION: &'static str;
    const NAMESPACED: bool;

    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn set_type(&mut self);

    /// References this object declares, for reverse look-ups (which streams use an image).
    fn refs(&self) -> Vec<String> {
        Vec::new()
    }

    fn key(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey::new(Self::RESOURCE, if Self::NAMESPACED { namespace } else { "" }, name)
    }

    /// Decodes a stored object, with `resourceVersion` from its revision.
    fn decode(stored: &StoredObject) -> Result<Self> {
        let unreadable = |err: &dyn std::fmt::Display| {
            tracing::error!(key = %stored.key, %err, "stored object does not decode");
            Error::internal(format!("stored {} {:?} could not be read", Self::QUALIFIED, stored.key.name))
        };
        // Checking UTF-8 once over the whole body is cheaper than serde_json checking each
        // string of a large stream separately.
        let text = std::str::from_utf8(&stored.body).map_err(|err| unreadable(&err))?;
        let mut object: Self = serde_json::from_str(text).map_err(|err| unreadable(&err))?;
        object.meta_mut().resource_version = stored.revision.to_string();
        object.set_type();
        Ok(object)
    }

    /// Encodes an object for the store. `resourceVersion` is not stored: it is the
    /// revision the store assigns.
    fn encode(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.meta_mut().resource_version.clear();
        serde_json::to_vec(&copy).expect("API objects always serialise")
    }
}

macro_rules! resource {
    ($type:ty, $resource:literal, $qualified:literal, $kind:literal, $api_version:expr, $namespaced:literal) => {
        resource!($type, $resource, $qualified, $kind, $api_version, $namespaced, |_object: &$type| Vec::new());
    };
    ($type:ty, $resource:literal, $qualified:literal, $kind:literal, $api_version:expr, $namespaced:literal, $refs:expr) => {
        impl Resource for $type {
            const RESOURCE: &'static str = $resource;
            const QUALIFIED: &'static str = $qualified;
            const KIND: &'static str = $kind;
            const API_VERSION: &'static str = $api_version;
            const NAMESPACED: bool = $namespaced;

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }

            fn set_type(&mut self) {
                self.kind = $kind.to_string();
                self.api_version = $api_version.to_string();
            }

            fn refs(&self) -> Vec<String> {
                ($refs)(self)
            }
        }
    };
}

resource!(
    ImageStream,
    "imagestreams",
    "imagestreams.image.openshift.io",
    "ImageStream",
    IMAGE_API_VERSION,
    true,
    |stream: &ImageStream| {
        let mut refs: Vec<String> = stream.referenced_images().into_iter().map(str::to_string).collect();
        refs.extend(stream.tracked_sources());
        refs.extend(berth_model::tags::waiting_sources(stream));
        refs
    }
);
resource!(Image, "images", "images.image.openshift.io", "Image", IMAGE_API_VERSION, false);
resource!(Namespace, "namespaces", "namespaces", "Namespace", "v1", false);
resource!(Secret, "secrets", "secrets", "Secret", "v1", true);
resource!(ResourceQuota, "resourcequotas", "resourcequotas", "ResourceQuota", "v1", true);
resource!(LimitRange, "limitranges", "limitranges", "LimitRange", "v1", true);
resource!(Token, "tokens", "tokens.berth.dev", "Token", BERTH_API_VERSION, false);
resource!(Subscription, "subscriptions", "subscriptions.berth.dev", "Subscription", BERTH_API_VERSION, true);
resource!(ImageClass, "imageclasses", "imageclasses.berth.dev", "ImageClass", BERTH_API_VERSION, false);
resource!(ImageClassGroup, "imageclassgroups", "imageclassgroups.berth.dev", "ImageClassGroup", BERTH_API_VERSION, false);
resource!(ImagePolicy, "imagepolicies", "imagepolicies.berth.dev", "ImagePolicy", BERTH_API_VERSION, false);
resource!(ImagePruner, "imagepruners", "imagepruners.berth.dev", "ImagePruner", BERTH_API_VERSION, false);
resource!(ImageUsage, "imageusages", "imageusages.berth.dev", "ImageUsage", BERTH_API_VERSION, false);
resource!(TagChange, "tagchanges", "tagchanges.berth.dev", "TagChange", BERTH_API_VERSION, true);
