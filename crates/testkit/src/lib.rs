//! Test support: the real CNCF distribution registry (`docker-registry`) started on an
//! ephemeral loopback port, deterministic test images and indexes pushed into it (or into
//! any plain-HTTP registry, with [`RegistryClient`]) over the registry HTTP API, and
//! `skopeo` as an independent client; PostgreSQL from Debian on loopback ([`postgres`]); S3-compatible storage on loopback ([`s3`]).
//!
//! Everything here is blocking. Call it from synchronous tests, or from
//! `tokio::task::spawn_blocking` in async ones: the HTTP client blocks its thread.

mod client;
mod image;
mod kubectl;
pub mod postgres;
mod process;
mod registry;
pub mod s3;
mod skopeo;

pub use client::{Pushed, RegistryClient};
pub use image::{Format, TestImage, TestIndex, digest_of};
pub use kubectl::kubectl;
pub use registry::{Auth, DistributionRegistry, Notifications};
pub use skopeo::{skopeo, skopeo_copy, skopeo_inspect};
