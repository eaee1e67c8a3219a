//! Compression codecs. Placeholder signatures: the implementation lands with the codec work.
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Lzma,
    Bz2,
    Zlib,
    Zstd,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CompressOptions {
    /// `None` picks the codec's default level.
    pub level: Option<i32>,
    /// Encoder threads (lzma, zstd); 1 means single-threaded, 0 means one per core.
    pub threads: u32,
    /// lzma's "extreme" preset flag.
    pub extreme: bool,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Lzma, Codec::Bz2, Codec::Zlib, Codec::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Codec::Lzma => "lzma",
            Codec::Bz2 => "bz2",
            Codec::Zlib => "zlib",
            Codec::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Result<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown codec {name:?}; choose one of: lzma, bz2, zlib, zstd"
            ))
        })
    }
}

pub fn compress(codec: Codec, _data: &[u8], _options: &CompressOptions) -> Result<Vec<u8>> {
    Err(Error::InvalidArgument(format!("codec {} is not implemented yet", codec.name())))
}

/// `size_hint`, when the caller knows the decompressed length, lets the output be allocated once.
pub fn decompress(codec: Codec, _data: &[u8], _size_hint: Option<usize>) -> Result<Vec<u8>> {
    Err(Error::InvalidArgument(format!("codec {} is not implemented yet", codec.name())))
}
