//! The blob header: a frozen 16-byte prelude, a JSON body and an XXH3-64 checksum of both.
//!
//! The prelude (magic, major, minor, body length) and the checksum that follows the body keep
//! their place in every format version. That is what lets a reader verify a header before it
//! interprets the version, and so tell a newer blob (UnsupportedFormat) from a damaged one
//! (Corrupt). Everything else may change with the major version.
use super::implied::{self, HeaderCodec};
use super::{
    FrameOptions, ALIGNMENT, CHECKSUM_ALGORITHM, CHECKSUM_LEN, COMPACT_MAJOR, FORMAT_MAJOR,
    FORMAT_MINOR, IMPLIED_MAJOR, MAGIC,
};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::hash::{from_hex, to_hex};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::xxh3_64;

pub(crate) const PRELUDE_LEN: usize = 16;

/// The one algorithm a blob signature names, and the length of its MAC.
pub const MAC_ALGORITHM: &str = "blake3-keyed";
pub const MAC_LEN: usize = 32;
/// Readers honour the header's alignment; anything outside this range is not from a writer.
const ALIGNMENT_RANGE: std::ops::RangeInclusive<u64> = 8..=1 << 20;

/// Lengths of one segment before (`raw`) and after (`stored`) compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLengths {
    pub raw: u64,
    pub stored: u64,
}

/// Everything a blob says about itself; readable without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// (major, minor) of the format the blob was written in.
    pub format_version: (u16, u16),
    /// The serializer's description, JSON text exactly as the writer gave it (from a format 3.0
    /// header, with the members it left out put back: the same JSON value, re-encoded).
    pub serializer: String,
    /// `None` when the segments are stored uncompressed.
    pub codec: Option<Codec>,
    /// The compression level asked for; `None` means the codec's default (or no codec).
    pub level: Option<i32>,
    pub checksum_algorithm: String,
    /// `ferroflow_core::VERSION` of the writer.
    pub ferroflow_version: String,
    /// When the blob was framed, in microseconds since the Unix epoch (UTC).
    pub created_at_us: i64,
    /// Segments start at multiples of this many bytes.
    pub alignment: u64,
    pub segments: Vec<SegmentLengths>,
    /// The storage key the blob was written under (format 1.1); a reader that knows which key it
    /// asked for refuses a blob recorded under another one: a copied or moved file.
    pub key: Option<String>,
    /// The codec that was asked for but not applied, because it would not have made the payload
    /// smaller (format 1.1); `codec` is then `None`.
    pub codec_skipped: Option<Codec>,
    /// The keyed MAC over the header and the segment checksums (format 1.1).
    pub signature: Option<Signature>,
}

/// A blob's signature: which key made it, and the MAC itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub mac: [u8; MAC_LEN],
}

/// The JSON body as stored. Unknown fields are ignored, so a newer minor version can add some.
#[derive(Serialize, Deserialize)]
struct HeaderBody {
    serializer: Box<RawValue>,
    codec: String,
    /// Left out when null (1.0 readers read a missing level as null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<i32>,
    raw_length: u64,
    stored_length: u64,
    checksum_algorithm: String,
    ferroflow_version: String,
    created_at_us: i64,
    alignment: u64,
    /// `[raw, stored]` per segment.
    segments: Vec<(u64, u64)>,
    // Format 1.1 fields, all optional; 1.0 readers ignore them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    codec_skipped: Option<String>,
    /// Always the last field, and `mac` the last of its fields, so a reader finds the MAC's
    /// digits at a fixed distance from the end of the body (see `mac_digits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<SignatureBody>,
}

/// The body of a format 2.0 header: format 1.1's fields under one-letter names, the totals and
/// the checksum algorithm (always XXH3-64) left out, and no signature. Written for small
/// unsigned blobs, whose header would otherwise weigh more than their payload. Format 3.0 has
/// the same body, with `s` the serializer's short description (see `implied`).
#[derive(Serialize, Deserialize)]
struct CompactBody {
    s: Box<RawValue>,
    c: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<i32>,
    t: i64,
    v: String,
    a: u64,
    g: Vec<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

impl From<HeaderBody> for CompactBody {
    fn from(body: HeaderBody) -> Self {
        CompactBody {
            s: body.serializer,
            c: body.codec,
            l: body.level,
            t: body.created_at_us,
            v: body.ferroflow_version,
            a: body.alignment,
            g: body.segments,
            k: body.key,
            x: body.codec_skipped,
        }
    }
}

impl From<CompactBody> for HeaderBody {
    fn from(body: CompactBody) -> Self {
        // Totals that overflow cannot match the sums, so the header is found inconsistent.
        let total = |f: fn(&(u64, u64)) -> u64| {
            body.g
                .iter()
                .try_fold(0u64, |acc, s| acc.checked_add(f(s)))
                .unwrap_or(u64::MAX)
        };
        HeaderBody {
            raw_length: total(|s| s.0),
            stored_length: total(|s| s.1),
            serializer: body.s,
            codec: body.c,
            level: body.l,
            checksum_algorithm: CHECKSUM_ALGORITHM.to_owned(),
            ferroflow_version: body.v,
            created_at_us: body.t,
            alignment: body.a,
            segments: body.g,
            key: body.k,
            codec_skipped: body.x,
            signature: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SignatureBody {
    algorithm: String,
    key_id: String,
    mac: String,
}

pub(crate) const NO_CODEC: &str = "none";

impl BlobHeader {
    /// A header for a blob about to be written, still without its segments.
    pub(crate) fn new(options: &FrameOptions<'_>) -> Result<BlobHeader> {
        Ok(BlobHeader {
            format_version: (FORMAT_MAJOR, FORMAT_MINOR),
            serializer: validated_serializer(options.serializer)?.to_owned(),
            codec: options.codec,
            level: options.compress.level,
            checksum_algorithm: CHECKSUM_ALGORITHM.to_owned(),
            ferroflow_version: crate::VERSION.to_owned(),
            created_at_us: now_us(),
            alignment: ALIGNMENT,
            segments: Vec::new(),
            key: options.key.map(str::to_owned),
            codec_skipped: None,
            signature: options.signing_key.map(|key| Signature {
                key_id: key.id().to_owned(),
                mac: [0; MAC_LEN],
            }),
        })
    }

    /// Sum of the segments' raw lengths.
    pub fn raw_length(&self) -> u64 {
        self.segments.iter().map(|s| s.raw).sum()
    }

    /// Sum of the segments' stored lengths (without padding).
    pub fn stored_length(&self) -> u64 {
        self.segments.iter().map(|s| s.stored).sum()
    }

    /// `"none"` or the codec's name.
    pub fn codec_name(&self) -> &'static str {
        self.codec.map_or(NO_CODEC, Codec::name)
    }

    /// The serializer's description as a format 3.0 header stores it, if that form gives it
    /// back exactly (see `implied`).
    pub(crate) fn short_serializer(&self) -> Option<String> {
        let codec = HeaderCodec {
            name: self.codec.or(self.codec_skipped).map(Codec::name),
            level: self.level,
        };
        implied::shorten(&self.serializer, codec)
    }

    /// `"major.minor"`.
    pub fn format_version_string(&self) -> String {
        format!("{}.{}", self.format_version.0, self.format_version.1)
    }

    /// Prelude, body and checksum, zero-padded to the alignment. A format 3.x header stores
    /// `short_serializer`, the description as `short_serializer()` gives it.
    pub(crate) fn encode(&self, short_serializer: Option<&str>) -> Result<Vec<u8>> {
        let body = HeaderBody {
            serializer: RawValue::from_string(self.serializer.clone())
                .expect("validated when the header was made"),
            codec: self.codec_name().to_owned(),
            level: self.level,
            raw_length: self.raw_length(),
            stored_length: self.stored_length(),
            checksum_algorithm: self.checksum_algorithm.clone(),
            ferroflow_version: self.ferroflow_version.clone(),
            created_at_us: self.created_at_us,
            alignment: self.alignment,
            segments: self.segments.iter().map(|s| (s.raw, s.stored)).collect(),
            key: self.key.clone(),
            codec_skipped: self.codec_skipped.map(|codec| codec.name().to_owned()),
            signature: self.signature.as_ref().map(|signature| SignatureBody {
                algorithm: MAC_ALGORITHM.to_owned(),
                key_id: signature.key_id.clone(),
                mac: to_hex(&signature.mac),
            }),
        };
        let json = if self.format_version.0 == IMPLIED_MAJOR {
            debug_assert!(body.signature.is_none(), "signed blobs keep the 1.x header");
            let short = short_serializer.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "format {IMPLIED_MAJOR}.x needs the short form of the serializer description {:?}; \
                     write it in format {COMPACT_MAJOR}.0 if it has none",
                    self.serializer
                ))
            })?;
            let mut body = CompactBody::from(body);
            body.s = RawValue::from_string(short.to_owned())
                .expect("short_serializer() gives JSON text");
            serde_json::to_vec(&body)
        } else if self.format_version.0 == COMPACT_MAJOR {
            debug_assert!(body.signature.is_none(), "signed blobs keep the 1.x header");
            serde_json::to_vec(&CompactBody::from(body))
        } else {
            serde_json::to_vec(&body)
        }
        .expect("the header body always serializes");
        let body_len = u32::try_from(json.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "the blob header would take {} bytes, over the format's 4 GiB limit; \
                 use a shorter serializer description or fewer segments",
                json.len()
            ))
        })?;
        let mut out =
            Vec::with_capacity(PRELUDE_LEN + json.len() + CHECKSUM_LEN + self.alignment as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.format_version.0.to_le_bytes());
        out.extend_from_slice(&self.format_version.1.to_le_bytes());
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&xxh3_64(&out).to_le_bytes());
        out.resize(
            super::align_up(out.len() as u64, self.alignment) as usize,
            0,
        );
        Ok(out)
    }

    /// Decodes exactly the `header_len(prelude)` bytes of a header (without the padding).
    pub(crate) fn decode(bytes: &[u8]) -> Result<BlobHeader> {
        let (covered, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let expected = u64::from_le_bytes(checksum.try_into().expect("8-byte slice"));
        if xxh3_64(covered) != expected {
            return Err(Error::Corrupt(
                "the blob header failed its checksum: the blob is corrupted; delete it so the result is computed again"
                    .into(),
            ));
        }
        let major = u16::from_le_bytes([bytes[8], bytes[9]]);
        let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
        check_version(major, minor)?;
        let invalid = |e: serde_json::Error| {
            Error::Corrupt(format!(
                "the blob header is not valid: {e}; the blob is corrupted"
            ))
        };
        let json = &covered[PRELUDE_LEN..];
        let body: HeaderBody = if major == COMPACT_MAJOR || major == IMPLIED_MAJOR {
            let mut body = serde_json::from_slice::<CompactBody>(json).map_err(invalid)?;
            if major == IMPLIED_MAJOR {
                // Valid JSON, but serde_json refuses some of it as a value (a number like 1e999).
                let codec = HeaderCodec {
                    name: Some(body.c.as_str())
                        .filter(|name| *name != NO_CODEC)
                        .or(body.x.as_deref()),
                    level: body.l,
                };
                let full = implied::restore(body.s.get(), codec).ok_or_else(|| {
                    Error::Corrupt(
                        "the blob header's serializer description cannot be read; the blob is corrupted"
                            .into(),
                    )
                })?;
                body.s = RawValue::from_string(full).expect("serde_json wrote it");
            }
            body.into()
        } else {
            serde_json::from_slice(json).map_err(invalid)?
        };
        BlobHeader::from_body(body, (major, minor))
    }

    fn from_body(body: HeaderBody, format_version: (u16, u16)) -> Result<BlobHeader> {
        if body.checksum_algorithm != CHECKSUM_ALGORITHM {
            return Err(Error::UnsupportedFormat(format!(
                "the blob is checksummed with {:?}, which ferroflow {} does not know; upgrade ferroflow to read it",
                body.checksum_algorithm,
                crate::VERSION
            )));
        }
        let codec = super::codec_from_name(&body.codec).map_err(|_| {
            Error::UnsupportedFormat(format!(
                "the blob is compressed with {:?}, which ferroflow {} does not know; upgrade ferroflow to read it",
                body.codec,
                crate::VERSION
            ))
        })?;
        let inconsistent = |what: &str| {
            Error::Corrupt(format!(
                "the blob header is inconsistent: {what}; the blob is corrupted"
            ))
        };
        if !ALIGNMENT_RANGE.contains(&body.alignment) || !body.alignment.is_power_of_two() {
            return Err(inconsistent(&format!(
                "alignment {} is not a power of two from 8 to 1 MiB",
                body.alignment
            )));
        }
        let segments: Vec<SegmentLengths> = body
            .segments
            .iter()
            .map(|&(raw, stored)| SegmentLengths { raw, stored })
            .collect();
        if codec.is_none() && segments.iter().any(|s| s.raw != s.stored) {
            return Err(inconsistent(
                "an uncompressed segment's stored length differs from its raw length",
            ));
        }
        let header = BlobHeader {
            format_version,
            serializer: body.serializer.get().to_owned(),
            codec,
            level: body.level,
            checksum_algorithm: body.checksum_algorithm,
            ferroflow_version: body.ferroflow_version,
            created_at_us: body.created_at_us,
            alignment: body.alignment,
            segments,
            key: body.key,
            codec_skipped: match body.codec_skipped {
                // Informational only: an unknown name is not a reason to refuse the blob.
                Some(name) => Codec::from_name(&name).ok(),
                None => None,
            },
            signature: match body.signature {
                Some(signature) => Some(decode_signature(signature)?),
                None => None,
            },
        };
        let sum = |f: fn(&SegmentLengths) -> u64| {
            header
                .segments
                .iter()
                .try_fold(0u64, |acc, s| acc.checked_add(f(s)))
        };
        if sum(|s| s.raw) != Some(body.raw_length) || sum(|s| s.stored) != Some(body.stored_length)
        {
            return Err(inconsistent(
                "the total lengths differ from the sums of the segment lengths",
            ));
        }
        Ok(header)
    }
}

/// A signature the reader can check: a MAC of the algorithm it knows, in hex of the right length.
fn decode_signature(body: SignatureBody) -> Result<Signature> {
    if body.algorithm != MAC_ALGORITHM {
        return Err(Error::UnsupportedFormat(format!(
            "the blob is signed with {:?}, which ferroflow {} does not know; upgrade ferroflow to read it",
            body.algorithm,
            crate::VERSION
        )));
    }
    let mac = from_hex(&body.mac).ok_or_else(|| {
        Error::Corrupt(format!(
            "the blob header's signature is not {MAC_LEN} bytes in hex; the blob is corrupted"
        ))
    })?;
    Ok(Signature {
        key_id: body.key_id,
        mac,
    })
}

/// Length of the header (prelude, body, checksum; not the padding) from its first 16 bytes.
pub(crate) fn header_len(prelude: &[u8]) -> Result<usize> {
    if prelude[..MAGIC.len()] != MAGIC {
        return Err(Error::Corrupt(
            "this is not a ferroflow blob (its first bytes are not the blob signature); \
             it is corrupted or was written by something else"
                .into(),
        ));
    }
    let body_len = u32::from_le_bytes(prelude[12..16].try_into().expect("4-byte slice"));
    Ok(PRELUDE_LEN + body_len as usize + CHECKSUM_LEN)
}

/// Readers accept their major versions at any minor version: minors only add fields.
fn check_version(major: u16, minor: u16) -> Result<()> {
    if major == FORMAT_MAJOR || major == COMPACT_MAJOR || major == IMPLIED_MAJOR {
        return Ok(());
    }
    let advice = if major > IMPLIED_MAJOR {
        "upgrade ferroflow to read it"
    } else {
        "it was written by a pre-release ferroflow; delete it so the result is computed again"
    };
    Err(Error::UnsupportedFormat(format!(
        "the blob is in format version {major}.{minor}, but ferroflow {} reads formats \
         {FORMAT_MAJOR}.x, {COMPACT_MAJOR}.x and {IMPLIED_MAJOR}.x; {advice}",
        crate::VERSION
    )))
}

/// The serializer's JSON text without surrounding whitespace, exactly as the header stores it.
fn validated_serializer(serializer: &str) -> Result<&str> {
    serde_json::from_str::<&RawValue>(serializer).map(RawValue::get).map_err(|e| {
        Error::InvalidArgument(format!(
            "serializer must be the serializer's description as JSON text, e.g. '{{\"type\": \"pickle\"}}'; \
             parsing {serializer:?} failed: {e}"
        ))
    })
}

fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        // A clock set before 1970: record the negative offset rather than fail the write.
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}
