//! Streaming hashes over many buffers: BLAKE3 (256-bit, for cache keys) and XXH3 (64/128-bit,
//! fast integrity checks). Digests are bytes in the canonical order of each algorithm's reference
//! tools (`b3sum`, `xxhsum -H3`), so hex digests compare with theirs.

use xxhash_rust::xxh3::Xxh3Default;

use crate::error::{Error, Result};

/// From this size on, BLAKE3 hashes a buffer on every core: below it, handing work to the
/// thread pool costs more than it saves.
pub const PARALLEL_THRESHOLD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Blake3,
    Xxh3_64,
    Xxh3_128,
}

impl HashAlgorithm {
    pub const ALL: [HashAlgorithm; 3] = [
        HashAlgorithm::Blake3,
        HashAlgorithm::Xxh3_64,
        HashAlgorithm::Xxh3_128,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Blake3 => "blake3",
            HashAlgorithm::Xxh3_64 => "xxh3-64",
            HashAlgorithm::Xxh3_128 => "xxh3-128",
        }
    }

    pub fn from_name(name: &str) -> Result<HashAlgorithm> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown hash algorithm {name:?}; choose one of: blake3, xxh3-64, xxh3-128"
                ))
            })
    }

    /// Length of the digest in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            HashAlgorithm::Blake3 => blake3::OUT_LEN,
            HashAlgorithm::Xxh3_64 => 8,
            HashAlgorithm::Xxh3_128 => 16,
        }
    }
}

#[derive(Clone)]
enum State {
    Blake3(Box<blake3::Hasher>),
    // XXH3's 64- and 128-bit digests come from the same running state.
    Xxh3(Box<Xxh3Default>),
}

/// An incremental hasher: `update` any number of buffers, then read the digest (as often as wanted).
#[derive(Clone)]
pub struct Hasher {
    algorithm: HashAlgorithm,
    state: State,
}

impl Hasher {
    pub fn new(algorithm: HashAlgorithm) -> Hasher {
        let state = match algorithm {
            HashAlgorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
            HashAlgorithm::Xxh3_64 | HashAlgorithm::Xxh3_128 => {
                State::Xxh3(Box::new(Xxh3Default::new()))
            }
        };
        Hasher { algorithm, state }
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Blake3(hasher) if data.len() >= PARALLEL_THRESHOLD => {
                hasher.update_rayon(data);
            }
            State::Blake3(hasher) => {
                hasher.update(data);
            }
            State::Xxh3(hasher) => hasher.update(data),
        }
    }

    /// The digest of everything hashed so far; the hasher can keep going afterwards.
    pub fn digest(&self) -> Vec<u8> {
        match (&self.state, self.algorithm) {
            (State::Blake3(hasher), _) => hasher.finalize().as_bytes().to_vec(),
            (State::Xxh3(hasher), HashAlgorithm::Xxh3_128) => {
                hasher.digest128().to_be_bytes().to_vec()
            }
            (State::Xxh3(hasher), _) => hasher.digest().to_be_bytes().to_vec(),
        }
    }

    pub fn hexdigest(&self) -> String {
        to_hex(&self.digest())
    }
}

/// The hex digest of the concatenation of `buffers`, without joining them.
pub fn hash_buffers<'a>(
    algorithm: HashAlgorithm,
    buffers: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    let mut hasher = Hasher::new(algorithm);
    for buffer in buffers {
        hasher.update(buffer);
    }
    hasher.hexdigest()
}

/// `bytes` as lowercase hex digits.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// The `N` bytes that `text` spells in lowercase hex digits; `None` for any other text.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4) | value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLAKE3_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn blake3_of_nothing_matches_the_reference_vector() {
        assert_eq!(hash_buffers(HashAlgorithm::Blake3, []), BLAKE3_EMPTY);
    }

    #[test]
    fn xxh3_of_nothing_matches_the_reference_vectors() {
        // From the xxHash reference implementation (XXH3_64bits / XXH3_128bits of an empty input).
        assert_eq!(hash_buffers(HashAlgorithm::Xxh3_64, []), "2d06800538d394c2");
        assert_eq!(
            hash_buffers(HashAlgorithm::Xxh3_128, []),
            "99aa06d3014798d86001c324468d497f"
        );
    }

    #[test]
    fn update_in_pieces_equals_one_update_for_every_algorithm() {
        let data: Vec<u8> = (0..3 * PARALLEL_THRESHOLD)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for algorithm in HashAlgorithm::ALL {
            let whole = hash_buffers(algorithm, [data.as_slice()]);
            let (a, rest) = data.split_at(7);
            let (b, c) = rest.split_at(PARALLEL_THRESHOLD + 5);
            assert_eq!(
                hash_buffers(algorithm, [a, b, c]),
                whole,
                "{}",
                algorithm.name()
            );
        }
    }

    #[test]
    fn digest_does_not_end_the_hasher_and_clone_forks_it() {
        let mut hasher = Hasher::new(HashAlgorithm::Blake3);
        hasher.update(b"ab");
        let fork = hasher.clone();
        let _ = hasher.digest();
        hasher.update(b"c");
        assert_eq!(
            hasher.hexdigest(),
            hash_buffers(HashAlgorithm::Blake3, [b"abc".as_slice()])
        );
        assert_eq!(
            fork.hexdigest(),
            hash_buffers(HashAlgorithm::Blake3, [b"ab".as_slice()])
        );
    }

    #[test]
    fn digest_sizes_match_the_digests() {
        for algorithm in HashAlgorithm::ALL {
            assert_eq!(
                Hasher::new(algorithm).digest().len(),
                algorithm.digest_size()
            );
        }
    }

    #[test]
    fn unknown_algorithm_names_the_valid_ones() {
        let message = HashAlgorithm::from_name("md5").unwrap_err().to_string();
        assert!(message.contains("\"md5\"") && message.contains("blake3, xxh3-64, xxh3-128"));
    }
}
