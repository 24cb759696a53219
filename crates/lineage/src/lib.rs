//! The image chain index: which images are built on which, kept in memory and answered
//! in time proportional to the image's depth and the number of answers, never by a scan.
//!
//! An image is its layers, base first. Its chains are the OCI ChainIDs over its layer
//! digests: chain 1 is the first layer's digest, chain *k* is
//! `sha256(chain(k-1) + " " + layer k)`. An image is built on another when its chains
//! include the other's last chain. The index holds every distinct chain once, as a node
//! of a trie of layer sequences (a node's parent is its chain minus the last layer), with
//! the images whose last chain it is; so:
//! - the ancestors of an image are the images on the path from its node to the root
//!   (the seed's `LastChainIndex` looked up for each of its chains),
//! - its descendants are the images in its node's subtree (the seed's `ChainIndex` of its
//!   last chain),
//! - the images holding a layer are the subtrees of the nodes that end in that layer.
//!
//! Two more kinds of evidence join the layers: the OCI annotation
//! `org.opencontainers.image.base.digest` (an image saying what it was built on, which
//! squashed images need), and manifest lists, which relate through their children, per
//! platform. Every answer says which evidence it rests on.
//!
//! The crate is pure: no I/O, no clock; the server feeds it from the store's event log.

mod facts;
mod index;
pub mod scan;

pub use facts::{BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, ImageFacts};
pub use index::{ChainRef, Evidence, Index, Related, chain_ids};
