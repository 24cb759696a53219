//! Talking to other registries over the OCI / Docker v2 API: manifests (by tag or digest,
//! checked against their digests), config blobs, and tag lists, with pull credentials from
//! `dockerconfigjson` secrets, Basic and Bearer-token authentication, a per-registry
//! concurrency cap and rate limit, and retries that honour `Retry-After`.
//!
//! API boundary: this crate knows registries and HTTP, not image streams. It returns
//! bytes and digests; the server turns them into Images and tags.
//!
//! Written on reqwest rather than oci-client: berth needs the registry's status and error
//! body for every failure (to give a reason a user can act on), retries with
//! `Retry-After`, per-registry gates, anonymous fallback after rejected credentials, and a
//! count of requests sent; oci-client hides the first and has none of the rest.

pub mod client;
pub mod credentials;
pub mod delivery;
pub mod error;
pub mod hosts;
pub mod settings;

pub use client::{BlobBody, FetchedManifest, Repository, Session, Upstream, error_chain};
pub use credentials::{Credential, Keyring};
pub use delivery::{DeliveryClient, DeliveryError, Target};
pub use error::{ErrorKind, UpstreamError};
pub use hosts::HostPolicy;
pub use settings::{ImportSettings, RegistryLimits};
