//! Signed blobs: a keyed BLAKE3 MAC over the header and the segment checksums, and the checks a
//! reader makes before it returns a byte of a blob (its key, its signature, its decompressed size).
//!
//! The MAC covers the header bytes (prelude and JSON body, with the MAC's own hex digits read as
//! zeros) followed by the trailer. The trailer holds each segment's XXH3-64, which every read
//! checks, so a blob's payload is tied to its signed header without hashing the payload twice.
use super::header::{BlobHeader, Signature, MAC_LEN, PRELUDE_LEN};
use crate::error::{Error, Result};
use crate::hash::to_hex;

/// Shorter key material is refused: it could be guessed.
pub const MIN_KEY_MATERIAL: usize = 16;
/// The MAC's hex digits end this many bytes before the end of the body: `"}}`.
const MAC_DIGITS_END_FROM_BODY_END: usize = 3;

/// A key that signs blobs, or verifies them. Built from any secret of at least
/// [`MIN_KEY_MATERIAL`] bytes; the MAC key and the public key id are both derived from it.
#[derive(Clone)]
pub struct SigningKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for SigningKey {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl SigningKey {
    pub fn from_material(material: &[u8]) -> Result<SigningKey> {
        if material.len() < MIN_KEY_MATERIAL {
            return Err(Error::InvalidArgument(format!(
                "a results signing key must be at least {MIN_KEY_MATERIAL} bytes long (this one has {}); \
                 use a long random secret, e.g. the output of `python -c \"import secrets; print(secrets.token_hex(32))\"`",
                material.len()
            )));
        }
        let key = blake3::derive_key("ferroflow results signing key v1", material);
        let fingerprint = blake3::derive_key("ferroflow results signing key id v1", &key);
        Ok(SigningKey {
            key,
            id: to_hex(&fingerprint[..8]),
        })
    }

    /// 16 hex digits naming the key in a blob's header; reveals nothing of the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC of a header (`covered`: prelude and body, MAC digits zeroed) and its trailer.
    pub(crate) fn mac(&self, covered_with_zeroed_mac: &[u8], trailer: &[u8]) -> [u8; MAC_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(covered_with_zeroed_mac);
        hasher.update(trailer);
        *hasher.finalize().as_bytes()
    }
}

/// Where the MAC's hex digits lie in a header's covered bytes (prelude and body).
pub(crate) fn mac_digits(covered_len: usize) -> Option<std::ops::Range<usize>> {
    let end = covered_len.checked_sub(MAC_DIGITS_END_FROM_BODY_END)?;
    let start = end.checked_sub(2 * MAC_LEN)?;
    (start >= PRELUDE_LEN).then_some(start..end)
}

/// `covered` with the MAC's digits replaced by `0`s: what the MAC covers.
pub(crate) fn zero_mac_digits(covered: &[u8]) -> Option<Vec<u8>> {
    let digits = mac_digits(covered.len())?;
    let mut zeroed = covered.to_vec();
    zeroed[digits].fill(b'0');
    Some(zeroed)
}

/// What a reader checks beyond integrity; the default checks nothing more.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadChecks<'a> {
    /// The storage key the reader asked for: a blob that records another key is refused.
    pub expected_key: Option<&'a str>,
    /// Keys whose signatures are accepted. A blob signed by one of them is verified whether or
    /// not a signature is required.
    pub verification_keys: &'a [SigningKey],
    /// Refuse unsigned blobs and blobs signed by a key not in `verification_keys`.
    pub require_signature: bool,
    /// Refuse compressed blobs that would decompress to more bytes than this.
    pub max_decompressed_length: Option<u64>,
}

impl ReadChecks<'_> {
    /// Whether checking the header needs the trailer (the signature covers it).
    pub(crate) fn needs_trailer(&self, header: &BlobHeader) -> bool {
        self.require_signature
            || header
                .signature
                .as_ref()
                .is_some_and(|signature| self.key_for(signature).is_some())
    }

    fn key_for(&self, signature: &Signature) -> Option<&SigningKey> {
        self.verification_keys
            .iter()
            .find(|key| key.id == signature.key_id)
    }

    /// The checks that need only the header: the key and the decompressed size.
    pub(crate) fn check_header(&self, header: &BlobHeader) -> Result<()> {
        if let (Some(expected), Some(recorded)) = (self.expected_key, header.key.as_deref()) {
            if expected != recorded {
                return Err(Error::Corrupt(format!(
                    "the blob was written under the key {recorded:?}, not {expected:?}: it was copied \
                     or moved here from another result; delete it so the result is computed again"
                )));
            }
        }
        if let (Some(limit), Some(codec)) = (self.max_decompressed_length, header.codec) {
            let raw = header.raw_length();
            if raw > limit {
                return Err(Error::Corrupt(format!(
                    "the blob would decompress ({}) to {raw} bytes, over the limit of {limit} bytes \
                     (FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE); if it is a result you trust, raise \
                     that setting to read it, otherwise delete it so the result is computed again",
                    codec.name()
                )));
            }
        }
        Ok(())
    }

    /// The signature check, given the header's covered bytes and the trailer.
    pub(crate) fn check_signature(
        &self,
        header: &BlobHeader,
        covered: &[u8],
        trailer: &[u8],
    ) -> Result<()> {
        let Some(signature) = &header.signature else {
            if self.require_signature {
                return Err(Error::Untrusted(
                    "the result is not signed, and FERROFLOW_RESULTS_REQUIRE_SIGNATURE is on: it was \
                     written without FERROFLOW_RESULTS_SIGNING_KEY, or by someone else; it was not \
                     loaded. Delete it so the result is computed again and signed"
                        .into(),
                ));
            }
            return Ok(());
        };
        let Some(key) = self.key_for(signature) else {
            if self.require_signature {
                return Err(Error::Untrusted(format!(
                    "the result is signed by key {}, which is not one of the verification keys ({}); \
                     it was not loaded. Add that key to FERROFLOW_RESULTS_VERIFICATION_KEYS if you \
                     trust it, or delete the result so it is computed again",
                    signature.key_id,
                    self.key_ids()
                )));
            }
            return Ok(());
        };
        let zeroed = zero_mac_digits(covered).filter(|zeroed| {
            // The digits found at the fixed place must be the MAC the JSON holds.
            let digits = mac_digits(covered.len()).expect("checked by zero_mac_digits");
            covered[digits] == *to_hex(&signature.mac).as_bytes() && zeroed.len() == covered.len()
        });
        let valid = zeroed.is_some_and(|zeroed| {
            // blake3::Hash compares in constant time.
            blake3::Hash::from(key.mac(&zeroed, trailer)) == blake3::Hash::from(signature.mac)
        });
        if valid {
            Ok(())
        } else {
            Err(Error::Untrusted(format!(
                "the result's signature (key {}) does not match its content: it was modified after \
                 it was signed; it was not loaded. Delete it so the result is computed again",
                signature.key_id
            )))
        }
    }

    fn key_ids(&self) -> String {
        if self.verification_keys.is_empty() {
            return "none is set".into();
        }
        let ids: Vec<&str> = self.verification_keys.iter().map(SigningKey::id).collect();
        ids.join(", ")
    }
}
