//! Dense layers of the CPU embedding engine.
//!
//! A layer's weights are rounded once, at load, to bf16 and stored in
//! blocks of 64 output columns: for each pair of input positions `(2p,
//! 2p+1)` a block holds 64 lanes of two bf16 values, which is the operand
//! layout of AVX-512 BF16's pair dot product. Activations are rounded to
//! bf16 per call ([`pack_rows`]) and every product is summed in f32. Where
//! the instruction is missing a portable loop computes the same rounded
//! products. Rounding weights and activations to bf16 keeps the sentence
//! vectors within cosine 0.99995 of the f32 reference (embeddings
//! test `matches_the_reference_implementation`); it halves the bytes each
//! product streams and doubles the products per instruction.

use rayon::prelude::*;

use super::simd::{self, Isa};

/// Output columns per stored block (four 16-lane vectors).
pub(crate) const BLOCK: usize = 64;
/// Rows per register tile of the vector kernel.
const TILE_ROWS: usize = 6;
/// Rows per parallel task.
const TASK_ROWS: usize = 8 * TILE_ROWS;

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits.
pub(crate) fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

fn widen(h: u32) -> f32 {
    f32::from_bits(h << 16)
}

/// `y = x Wᵀ + b` for a weight stored as PyTorch's `Linear` stores it.
pub(crate) struct Linear {
    /// Input width (even).
    k: usize,
    /// Output width (a multiple of [`BLOCK`]).
    n: usize,
    /// Block `b`, pair `p`, lane `l` at `(b * k/2 + p) * BLOCK + l`: the
    /// bf16 weights `(W[64b+l][2p], W[64b+l][2p+1])`, the first in the low
    /// half.
    packed: Vec<u32>,
    bias: Vec<f32>,
}

/// Why a weight cannot be stored in the blocked layout.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShapeError {
    #[error("input width {0} is odd")]
    OddInput(usize),
    #[error("output width {0} is not a multiple of {BLOCK}")]
    Output(usize),
    #[error("weight holds {got} values, [{n}, {k}] needs {want}")]
    Weight { got: usize, n: usize, k: usize, want: usize },
    #[error("bias holds {got} values, the layer has {n} outputs")]
    Bias { got: usize, n: usize },
}

impl Linear {
    /// `weight`: row-major `[n, k]`; `bias`: `[n]`.
    pub(crate) fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Result<Linear, ShapeError> {
        if !k.is_multiple_of(2) {
            return Err(ShapeError::OddInput(k));
        }
        if !n.is_multiple_of(BLOCK) || n == 0 {
            return Err(ShapeError::Output(n));
        }
        if weight.len() != n * k {
            return Err(ShapeError::Weight { got: weight.len(), n, k, want: n * k });
        }
        if bias.len() != n {
            return Err(ShapeError::Bias { got: bias.len(), n });
        }
        let pairs = k / 2;
        let mut packed = vec![0u32; n * pairs];
        for (b, block) in packed.chunks_exact_mut(pairs * BLOCK).enumerate() {
            for (p, lanes) in block.chunks_exact_mut(BLOCK).enumerate() {
                for (l, slot) in lanes.iter_mut().enumerate() {
                    let row = &weight[(b * BLOCK + l) * k..][..k];
                    *slot = u32::from(bf16(row[2 * p])) | (u32::from(bf16(row[2 * p + 1])) << 16);
                }
            }
        }
        Ok(Linear { k, n, packed, bias: bias.to_vec() })
    }

    /// `out[m, n] = x[m, k] Wᵀ + b`, where `x` was packed by [`pack_rows`].
    /// Runs on the current rayon pool, split by row bands and column blocks.
    pub(crate) fn forward(&self, isa: Isa, x: &[u32], m: usize, out: &mut [f32]) {
        let pairs = self.k / 2;
        assert_eq!(x.len(), m * pairs, "packed input is not [{m}, {}]", self.k);
        assert_eq!(out.len(), m * self.n, "output is not [{m}, {}]", self.n);
        let blocks = self.n / BLOCK;
        let bands = m.div_ceil(TASK_ROWS);
        let dst = SendPtr(out.as_mut_ptr());
        (0..bands * blocks).into_par_iter().for_each(|task| {
            let (band, block) = (task / blocks, task % blocks);
            let rows = band * TASK_ROWS..((band + 1) * TASK_ROWS).min(m);
            let weights = &self.packed[block * pairs * BLOCK..][..pairs * BLOCK];
            let bias = &self.bias[block * BLOCK..][..BLOCK];
            let mut r = rows.start;
            while r < rows.end {
                let take = (rows.end - r).min(TILE_ROWS);
                let a = &x[r * pairs..(r + take) * pairs];
                // SAFETY: tasks write disjoint (row band, column block)
                // rectangles of `out`, which outlives the parallel loop; the
                // tile's rows `r..r+take` and columns `64*block..+64` lie
                // inside `out` (checked above).
                unsafe {
                    let c = dst.get().add(r * self.n + block * BLOCK);
                    tile(isa, take, a, pairs, weights, bias, c, self.n);
                }
                r += take;
            }
        });
    }
}

/// Rounds `x[m, k]` (row-major f32) to bf16 pairs, the left operand of
/// [`Linear::forward`]. `out` is resized to `m * k/2`.
pub(crate) fn pack_rows(isa: Isa, x: &[f32], out: &mut Vec<u32>) {
    debug_assert!(x.len().is_multiple_of(2));
    out.clear();
    out.resize(x.len() / 2, 0);
    out.par_chunks_mut(4096).zip(x.par_chunks(8192)).for_each(|(o, i)| simd::to_bf16_pairs(isa, i, o));
}

/// An output buffer's address, handed to rayon tasks that each write a
/// part of it no other task writes (output rectangles here, head columns
/// in the encoder's attention).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used for writes to disjoint parts of a buffer that outlives
// the parallel loop (each use says which parts).
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// One tile: `rows` (≤ 6) rows of `a` times one 64-column block.
///
/// # Safety
/// `c` must be valid for writes of `rows` rows of 64 values at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(isa: Isa, rows: usize, a: &[u32], pairs: usize, weights: &[u32], bias: &[f32], c: *mut f32, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Bf16 {
        // SAFETY: the CPU has AVX-512F and AVX-512 BF16 (detected at run
        // time); slices are as long as the kernel reads (asserted by callers).
        unsafe {
            match rows {
                6 => x86::tile::<6>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
                5 => x86::tile::<5>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
                4 => x86::tile::<4>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
                3 => x86::tile::<3>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
                2 => x86::tile::<2>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
                _ => x86::tile::<1>(a.as_ptr(), pairs, weights.as_ptr(), bias.as_ptr(), c, ldc),
            }
        }
        return;
    }
    let _ = isa;
    for r in 0..rows {
        let mut acc = [0f32; BLOCK];
        let row = &a[r * pairs..][..pairs];
        for (p, &pair) in row.iter().enumerate() {
            let (lo, hi) = (widen(pair & 0xFFFF), widen(pair >> 16));
            let lanes = &weights[p * BLOCK..][..BLOCK];
            for (acc, &w) in acc.iter_mut().zip(lanes) {
                *acc += lo * widen(w & 0xFFFF) + hi * widen(w >> 16);
            }
        }
        // SAFETY: row `r` of the tile, 64 values, inside `out` (caller).
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), BLOCK) };
        for ((o, a), b) in out.iter_mut().zip(acc).zip(bias) {
            *o = a + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::transmute;

    /// `R` rows × 64 columns with 4·R accumulators in registers.
    ///
    /// # Safety
    /// AVX-512F and AVX-512 BF16 present; `a` readable for `R * pairs`
    /// values, `b` for `pairs * 64`, `bias` for 64; `c` writable for `R`
    /// rows of 64 at stride `ldc`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const R: usize>(
        a: *const u32,
        pairs: usize,
        b: *const u32,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for p in 0..pairs {
            // SAFETY: in bounds per the function's contract.
            unsafe {
                let bp = b.add(p * 64) as *const f32;
                let w: [__m512bh; 4] = [
                    transmute::<__m512, __m512bh>(_mm512_loadu_ps(bp)),
                    transmute::<__m512, __m512bh>(_mm512_loadu_ps(bp.add(16))),
                    transmute::<__m512, __m512bh>(_mm512_loadu_ps(bp.add(32))),
                    transmute::<__m512, __m512bh>(_mm512_loadu_ps(bp.add(48))),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*a.add(r * pairs + p) as i32));
                    for (acc, w) in acc.iter_mut().zip(w) {
                        *acc = _mm512_dpbf16_ps(*acc, x, w);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                // SAFETY: in bounds per the function's contract.
                unsafe {
                    let sum = _mm512_add_ps(*acc, _mm512_loadu_ps(bias.add(16 * v)));
                    _mm512_storeu_ps(c.add(r * ldc + 16 * v), sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, non-degenerate test matrix.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1.
        assert_eq!(bf16(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16(-2.5), 0xC020);
        assert!(widen(u32::from(bf16(f32::NAN))).is_nan());
        assert_eq!(widen(u32::from(bf16(f32::INFINITY))), f32::INFINITY);
    }

    /// The blocked product equals an f64 sum of the bf16-rounded operands
    /// (so only the f32 summation order differs), for every tile height
    /// and a row count that leaves a ragged last band.
    #[test]
    fn product_matches_rounded_reference() {
        let (m, k, n) = (53, 96, 128);
        let w = values(n * k, 1);
        let b = values(n, 2);
        let x = values(m * k, 3);
        let layer = Linear::new(&w, &b, n, k).unwrap();
        let r = |v: f32| f64::from(widen(u32::from(bf16(v))));
        for isa in [Isa::Portable, simd::isa()] {
            let mut packed = Vec::new();
            pack_rows(isa, &x, &mut packed);
            let mut out = vec![0f32; m * n];
            layer.forward(isa, &packed, m, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|t| r(x[i * k + t]) * r(w[j * k + t])).sum::<f64>() + f64::from(b[j]);
                    let got = f64::from(out[i * n + j]);
                    assert!((got - want).abs() < 1e-4, "{isa:?} [{i},{j}] {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(matches!(Linear::new(&[0.0; 3 * 64], &[0.0; 64], 64, 3), Err(ShapeError::OddInput(3))));
        assert!(matches!(Linear::new(&[0.0; 2 * 60], &[0.0; 60], 60, 2), Err(ShapeError::Output(60))));
        assert!(matches!(Linear::new(&[0.0; 10], &[0.0; 64], 64, 2), Err(ShapeError::Weight { .. })));
        assert!(matches!(Linear::new(&[0.0; 128], &[0.0; 63], 64, 2), Err(ShapeError::Bias { .. })));
    }
}
