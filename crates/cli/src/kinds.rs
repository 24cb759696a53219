//! The kinds berth serves: the names a user may type for each, where each lives in the
//! REST API, and what each supports, so that commands ask one table instead of
//! spreading URL rules around.

use anyhow::bail;

pub const IMAGE_GROUP: &str = "image.openshift.io";
pub const BERTH_GROUP: &str = "berth.dev";

/// What `berth apply` does with a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// GET it; POST when absent, else PUT over it.
    Upsert,
    /// POST when absent. The kind has no update (tokens are fixed once made).
    CreateOnly,
    /// Always POST: the kind is an action, not a stored object (ImageStreamMapping).
    Action,
    /// Read-only views cannot be applied.
    Never,
}

/// One kind and what the server offers for it.
#[derive(Debug)]
pub struct Kind {
    pub kind: &'static str,
    pub singular: &'static str,
    pub plural: &'static str,
    pub short: &'static [&'static str],
    /// The API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub namespaced: bool,
    pub list: bool,
    pub watch: bool,
    /// Whether the kind can be listed across all namespaces (`-A`).
    pub all_namespaces: bool,
    pub get: bool,
    pub delete: bool,
    pub apply: Apply,
    /// Whether items are Kubernetes objects, with metadata (a name, labels). False for the
    /// plain records of a read-only view: a ScheduledImport is `{namespace, stream, tag,
    /// ...}`, named `stream:tag`, with no labels to select on and no URL of its own.
    pub metadata: bool,
}

const fn image_kind(kind: &'static str, singular: &'static str, plural: &'static str, short: &'static [&'static str]) -> Kind {
    Kind {
        kind,
        singular,
        plural,
        short,
        group: IMAGE_GROUP,
        namespaced: true,
        list: true,
        watch: false,
        all_namespaces: false,
        get: true,
        delete: true,
        apply: Apply::Upsert,
        metadata: true,
    }
}

pub static IMAGE_STREAM: Kind =
    Kind { watch: true, all_namespaces: true, ..image_kind("ImageStream", "imagestream", "imagestreams", &["is"]) };
pub static IMAGE_STREAM_TAG: Kind = image_kind("ImageStreamTag", "imagestreamtag", "imagestreamtags", &["istag"]);
pub static IMAGE_TAG: Kind = image_kind("ImageTag", "imagetag", "imagetags", &["itag"]);
pub static IMAGE_STREAM_IMAGE: Kind = Kind {
    list: false,
    delete: false,
    apply: Apply::Never,
    ..image_kind("ImageStreamImage", "imagestreamimage", "imagestreamimages", &["isimage"])
};
pub static IMAGE_STREAM_MAPPING: Kind = Kind {
    list: false,
    get: false,
    delete: false,
    apply: Apply::Action,
    ..image_kind("ImageStreamMapping", "imagestreammapping", "imagestreammappings", &[])
};
/// Not in [`KINDS`]: only `berth import-image` sends one, and reports each image's
/// result, which `apply` ("created") would hide.
pub static IMAGE_STREAM_IMPORT: Kind = Kind {
    list: false,
    get: false,
    delete: false,
    apply: Apply::Action,
    ..image_kind("ImageStreamImport", "imagestreamimport", "imagestreamimports", &[])
};
pub static IMAGE: Kind = Kind { namespaced: false, watch: true, ..image_kind("Image", "image", "images", &[]) };
pub static NAMESPACE: Kind =
    Kind { group: "", namespaced: false, watch: true, ..image_kind("Namespace", "namespace", "namespaces", &["ns"]) };
pub static SECRET: Kind = Kind { group: "", watch: true, all_namespaces: true, ..image_kind("Secret", "secret", "secrets", &[]) };
pub static RESOURCE_QUOTA: Kind =
    Kind { group: "", watch: true, all_namespaces: true, ..image_kind("ResourceQuota", "resourcequota", "resourcequotas", &["quota"]) };
pub static LIMIT_RANGE: Kind =
    Kind { group: "", watch: true, all_namespaces: true, ..image_kind("LimitRange", "limitrange", "limitranges", &["limits"]) };
pub static TOKEN: Kind =
    Kind { group: BERTH_GROUP, namespaced: false, watch: true, apply: Apply::CreateOnly, ..image_kind("Token", "token", "tokens", &[]) };

pub static SUBSCRIPTION: Kind =
    Kind { group: BERTH_GROUP, watch: true, all_namespaces: true, ..image_kind("Subscription", "subscription", "subscriptions", &["sub"]) };
pub static IMAGE_CLASS: Kind =
    Kind { group: BERTH_GROUP, namespaced: false, watch: true, ..image_kind("ImageClass", "imageclass", "imageclasses", &["ic"]) };
pub static IMAGE_CLASS_GROUP: Kind = Kind {
    group: BERTH_GROUP,
    namespaced: false,
    watch: true,
    ..image_kind("ImageClassGroup", "imageclassgroup", "imageclassgroups", &["icg"])
};
pub static IMAGE_POLICY: Kind =
    Kind { group: BERTH_GROUP, namespaced: false, watch: true, ..image_kind("ImagePolicy", "imagepolicy", "imagepolicies", &["ipol"]) };
pub static IMAGE_PRUNER: Kind =
    Kind { group: BERTH_GROUP, namespaced: false, watch: true, ..image_kind("ImagePruner", "imagepruner", "imagepruners", &[]) };
/// The server's schedule of tags with `importPolicy.scheduled`: listed only, never read
/// by name (`get` filters the list), written or deleted.
pub static SCHEDULED_IMPORT: Kind = Kind {
    group: BERTH_GROUP,
    all_namespaces: true,
    get: false,
    delete: false,
    apply: Apply::Never,
    metadata: false,
    ..image_kind("ScheduledImport", "scheduledimport", "scheduledimports", &["si"])
};

pub static KINDS: [&Kind; 17] = [
    &IMAGE_STREAM,
    &IMAGE_STREAM_TAG,
    &IMAGE_TAG,
    &IMAGE_STREAM_IMAGE,
    &IMAGE_STREAM_MAPPING,
    &IMAGE,
    &NAMESPACE,
    &SECRET,
    &RESOURCE_QUOTA,
    &LIMIT_RANGE,
    &TOKEN,
    &SUBSCRIPTION,
    &IMAGE_CLASS,
    &IMAGE_POLICY,
    &IMAGE_PRUNER,
    &IMAGE_CLASS_GROUP,
    &SCHEDULED_IMPORT,
];

impl Kind {
    /// `image.openshift.io/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { "v1".to_string() } else { format!("{}/v1", self.group) }
    }

    /// Whether a document's `apiVersion` names this kind's group. Image kinds also take
    /// OpenShift 3's legacy `v1`, so old manifests apply unchanged.
    pub fn accepts_api_version(&self, api_version: &str) -> bool {
        api_version == self.api_version() || (self.group == IMAGE_GROUP && api_version == "v1")
    }

    fn prefix(&self) -> String {
        if self.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/v1", self.group) }
    }

    /// The collection's path: in `namespace` for a namespaced kind, else across the
    /// cluster (all namespaces, for a namespaced kind given `None`).
    pub fn collection(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/namespaces/{ns}/{}", self.prefix(), self.plural),
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }

    /// One object's path; `namespace` is ignored for cluster-scoped kinds.
    pub fn object(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(Some(namespace)))
    }

    /// `imagestream.image.openshift.io`, or `namespace` for the core group, as kubectl
    /// names kinds in its output.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.singular.to_string() } else { format!("{}.{}", self.singular, self.group) }
    }

    fn names(&self) -> impl Iterator<Item = String> + '_ {
        let plain = [self.singular, self.plural].into_iter().chain(self.short.iter().copied()).map(str::to_string);
        let qualified = [self.singular, self.plural].into_iter().filter(|_| !self.group.is_empty()).map(|n| format!("{n}.{}", self.group));
        plain.chain(qualified).chain(std::iter::once(self.kind.to_ascii_lowercase()))
    }

    /// The names a user may type, for help and error messages: `imagestreams (is)`.
    fn shown(&self) -> String {
        if self.short.is_empty() { self.plural.to_string() } else { format!("{} ({})", self.plural, self.short.join(", ")) }
    }
}

/// Finds the kind a user typed: singular, plural, short or qualified, any case.
pub fn lookup(typed: &str) -> anyhow::Result<&'static Kind> {
    let wanted = typed.to_ascii_lowercase();
    if let Some(kind) = KINDS.iter().find(|k| k.names().any(|n| n == wanted)) {
        return Ok(kind);
    }
    let known: Vec<String> = KINDS.iter().filter(|k| k.get || k.list).map(|k| k.shown()).collect();
    bail!("the server doesn't have a resource type {typed:?}: use one of {}", known.join(", "))
}

/// Finds the kind of a document by its `kind` and `apiVersion`.
pub fn for_document(kind: &str, api_version: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.kind == kind && k.accepts_api_version(api_version))
}

/// The kinds `apply` takes, with their apiVersions, for error messages.
pub fn applicable() -> String {
    let kinds: Vec<String> =
        KINDS.iter().filter(|k| k.apply != Apply::Never).map(|k| format!("{} ({})", k.kind, k.api_version())).collect();
    kinds.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_find_their_kinds() {
        for (typed, kind) in [
            ("is", "ImageStream"),
            ("ImageStreams", "ImageStream"),
            ("istag", "ImageStreamTag"),
            ("ns", "Namespace"),
            ("tokens", "Token"),
            ("sub", "Subscription"),
            ("subscriptions.berth.dev", "Subscription"),
            ("si", "ScheduledImport"),
            ("ic", "ImageClass"),
            ("scheduledimport", "ScheduledImport"),
            ("quota", "ResourceQuota"),
            ("resourcequotas", "ResourceQuota"),
            ("limits", "LimitRange"),
            ("limitrange", "LimitRange"),
        ] {
            assert_eq!(lookup(typed).unwrap().kind, kind, "{typed}");
        }
        assert_eq!(lookup("imagestreams.image.openshift.io").unwrap().kind, "ImageStream");
        let err = lookup("pods").unwrap_err().to_string();
        assert!(err.contains("\"pods\"") && err.contains("imagestreams (is)"), "{err}");
    }

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(IMAGE_STREAM.object("team", "ruby"), "/apis/image.openshift.io/v1/namespaces/team/imagestreams/ruby");
        assert_eq!(IMAGE_STREAM.collection(None), "/apis/image.openshift.io/v1/imagestreams");
        assert_eq!(IMAGE.object("team", "sha256:ab"), "/apis/image.openshift.io/v1/images/sha256:ab");
        assert_eq!(SECRET.collection(Some("team")), "/api/v1/namespaces/team/secrets");
        assert_eq!(NAMESPACE.object("x", "team"), "/api/v1/namespaces/team");
        assert_eq!(TOKEN.collection(Some("team")), "/apis/berth.dev/v1/tokens");
        assert_eq!(SUBSCRIPTION.object("team", "hooks"), "/apis/berth.dev/v1/namespaces/team/subscriptions/hooks");
        assert_eq!(SUBSCRIPTION.collection(None), "/apis/berth.dev/v1/subscriptions");
        assert_eq!(SCHEDULED_IMPORT.collection(Some("team")), "/apis/berth.dev/v1/namespaces/team/scheduledimports");
        assert_eq!(SCHEDULED_IMPORT.collection(None), "/apis/berth.dev/v1/scheduledimports");
        assert_eq!(RESOURCE_QUOTA.object("team", "images"), "/api/v1/namespaces/team/resourcequotas/images");
        assert_eq!(RESOURCE_QUOTA.collection(None), "/api/v1/resourcequotas");
        assert_eq!(LIMIT_RANGE.collection(Some("team")), "/api/v1/namespaces/team/limitranges");
    }

    #[test]
    fn documents_map_to_kinds_by_kind_and_api_version() {
        assert_eq!(for_document("ImageStream", "v1").map(|k| k.plural), Some("imagestreams"));
        assert_eq!(for_document("ImageStream", "image.openshift.io/v1").map(|k| k.plural), Some("imagestreams"));
        assert_eq!(for_document("Namespace", "v1").map(|k| k.plural), Some("namespaces"));
        assert!(for_document("Namespace", "image.openshift.io/v1").is_none());
        assert!(for_document("Token", "v1").is_none());
        assert_eq!(for_document("Subscription", "berth.dev/v1").map(|k| k.apply), Some(Apply::Upsert));
        assert_eq!(for_document("ScheduledImport", "berth.dev/v1").map(|k| k.apply), Some(Apply::Never));
        assert_eq!(SUBSCRIPTION.qualified(), "subscription.berth.dev");
        assert_eq!(IMAGE_STREAM.qualified(), "imagestream.image.openshift.io");
        assert_eq!(SECRET.qualified(), "secret");
    }
}
