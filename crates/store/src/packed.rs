//! Object bodies as the SQLite store keeps them: a body of [`PACK_FROM`] bytes or more is
//! kept LZ4-compressed behind a [`MAGIC`] prefix (a stream's JSON, its tags' histories full
//! of repeated names and digests, shrinks several times, and a row that fitted in no page
//! now fits in one). Smaller bodies, and rows written before packing existed, are kept as
//! they are; reading tells them apart by the prefix. A body that happens to begin with the
//! prefix is always packed, so a stored body that begins with it is always a packed one.

use std::borrow::Cow;

/// Begins every packed body; no JSON body begins with a NUL byte.
const MAGIC: &[u8] = b"\0lz4";
/// Bodies smaller than this are kept as they are (packing saves nothing worth a step).
const PACK_FROM: usize = 512;

/// The bytes to store for `body`.
pub(crate) fn pack(body: &[u8]) -> Cow<'_, [u8]> {
    if body.len() < PACK_FROM && !body.starts_with(MAGIC) {
        return Cow::Borrowed(body);
    }
    let mut packed = MAGIC.to_vec();
    packed.extend_from_slice(&lz4_flex::compress_prepend_size(body));
    Cow::Owned(packed)
}

/// The body that `stored` keeps.
pub(crate) fn unpack(stored: Vec<u8>) -> Result<Vec<u8>, lz4_flex::block::DecompressError> {
    match stored.strip_prefix(MAGIC) {
        Some(packed) => lz4_flex::decompress_size_prepended(packed),
        None => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_back_as_they_went_in() {
        let json = serde_json::to_vec(&serde_json::json!({"tags": vec!["sha256:0123456789abcdef"; 200]})).unwrap();
        for body in [b"".to_vec(), b"one".to_vec(), json.clone(), b"\0lz4 but not packed".to_vec(), vec![0u8; 4096]] {
            let stored = pack(&body).into_owned();
            assert_eq!(unpack(stored).unwrap(), body);
        }
        assert!(pack(&json).len() * 4 < json.len(), "a repetitive JSON body shrinks");
        assert!(matches!(pack(b"small"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_damaged_packed_body_is_an_error_not_other_bytes() {
        let mut stored = pack(&vec![7u8; 4096]).into_owned();
        stored.truncate(stored.len() - 3);
        assert!(unpack(stored).is_err());
    }
}
