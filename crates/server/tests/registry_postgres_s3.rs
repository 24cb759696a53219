//! The registry's tests (`registry/cases.rs`) once more, on the scale-out backends:
//! every server these tests start keeps its catalog in PostgreSQL (Debian's, on loopback)
//! and its blobs in S3-compatible storage (s3s-fs, on loopback), as `berth serve
//! --database postgres://… --blob-store s3://…` does.

mod common;

include!("registry/cases.rs");
