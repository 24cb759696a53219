//! berth's own registry (`/v2/`), driven by `skopeo` (a real client) and by raw HTTP
//! where a client would hide what is checked: pushes land as images and tags, pulls by
//! tag and digest, pull-through from the CNCF distribution registry (also while it is
//! down), one upstream fetch for many cold pulls, chunked and resumed uploads, and the
//! errors bad input gets.

mod common;

include!("registry/cases.rs");
