//! Content digests (`sha256:<64 hex>`), the immutable names of images.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A validated content digest. Only the algorithms the OCI image spec registers are
/// accepted, and the encoded part must have the algorithm's length in lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{0:?} is not a digest: expected ALGORITHM:HEX such as sha256:<64 lowercase hex digits>")]
    Malformed(String),
    #[error("{0:?} uses an unsupported digest algorithm: use sha256 or sha512")]
    UnsupportedAlgorithm(String),
    #[error("{0:?} has an encoded part of the wrong length or with characters other than lowercase hex")]
    BadEncoding(String),
}

impl Digest {
    /// The sha256 digest of `bytes`, as a registry computes it over a manifest or blob.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The sha256 digest whose encoded part is `bytes`.
    pub fn from_sha256(bytes: &[u8; 32]) -> Digest {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in bytes {
            text.push(DIGITS[(byte >> 4) as usize] as char);
            text.push(DIGITS[(byte & 0xf) as usize] as char);
        }
        Digest(text)
    }

    /// The digest of `bytes` computed with the same algorithm as `self`.
    pub fn recompute(&self, bytes: &[u8]) -> Digest {
        match self.algorithm() {
            "sha512" => Digest(format!("sha512:{}", hex::encode(Sha512::digest(bytes)))),
            _ => Digest::sha256_of(bytes),
        }
    }

    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(algorithm, _)| algorithm)
    }

    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, encoded)| encoded)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return Err(DigestError::Malformed(text.to_string()));
        };
        let length = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            "" => return Err(DigestError::Malformed(text.to_string())),
            _ => return Err(DigestError::UnsupportedAlgorithm(text.to_string())),
        };
        let lower_hex = encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if encoded.len() != length || !lower_hex {
            return Err(DigestError::BadEncoding(text.to_string()));
        }
        Ok(Digest(text.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn computes_sha256_over_the_bytes() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY_SHA256);
        assert_eq!(Digest::sha256_of(b"").recompute(b"").as_str(), EMPTY_SHA256);
    }

    #[test]
    fn parses_and_exposes_parts() {
        let digest: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(digest.algorithm(), "sha256");
        assert_eq!(digest.encoded().len(), 64);
    }

    #[test]
    fn rejects_each_kind_of_bad_digest() {
        let check = |text: &str, want: fn(String) -> DigestError| {
            assert_eq!(text.parse::<Digest>(), Err(want(text.to_string())), "{text}");
        };
        check("latest", DigestError::Malformed);
        check(":abc", DigestError::Malformed);
        check("md5:d41d8cd98f00b204e9800998ecf8427e", DigestError::UnsupportedAlgorithm);
        check("sha256:abc", DigestError::BadEncoding);
        check(&EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256"), DigestError::BadEncoding);
    }
}
