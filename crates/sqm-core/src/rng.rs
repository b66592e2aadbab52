//! SplitMix64: the one small, fully specified generator sqm uses wherever
//! output must be reproducible from a seed (sketch art, Flux initial noise,
//! the music rotator). Its streams are part of sqm's output format; tests
//! pin them. Seeds derived from text come from [`text_seed`], the one
//! hash every composer and the ZeroMQ worker share.

use sha2::{Digest, Sha256};

/// The seed of a text key: the first four bytes of its SHA-256, read
/// big-endian (the reference's `int(sha256(key).hexdigest()[:8], 16)`).
pub fn text_seed(key: &str) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// SplitMix64 (Steele, Lea and Flood's finaliser over a Weyl sequence).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Seeded from the clock and the process id, for unrepeatable choices.
    pub fn from_time() -> SplitMix64 {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        SplitMix64(t as u64 ^ ((std::process::id() as u64) << 32))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1], 53 bits: never zero, so `ln` is finite.
    pub fn unit_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, 1), 24 bits.
    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_seed_is_the_leading_32_bits_of_sha256() {
        // sha256("") = e3b0c442…, sha256("abc") = ba7816bf…
        assert_eq!(super::text_seed(""), 0xe3b0_c442);
        assert_eq!(super::text_seed("abc"), 0xba78_16bf);
    }

    #[test]
    fn pinned_stream() {
        let mut r = super::SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
