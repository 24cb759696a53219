//! Debian's kubectl (`kubernetes-client`) as a real Kubernetes client.

use std::path::{Path, PathBuf};

/// kubectl as `scripts/test` unpacks it into `target/tools` (or `$BERTH_KUBECTL`).
pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_KUBECTL") {
        return path.into();
    }
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/kubernetes-client/usr/bin/kubectl");
    assert!(unpacked.exists(), "Debian's kubectl is not at {}: run scripts/test, which unpacks it there", unpacked.display());
    unpacked
}
