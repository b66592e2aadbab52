//! Vector arithmetic for the CPU embedding engine: which instruction set
//! the CPU offers, and the element-wise kernels (bf16 rounding, GELU,
//! layer norm, softmax, the attention dot products) written once as plain
//! loops and compiled twice: for the portable baseline and, selected at
//! run time, with AVX-512 enabled so the compiler vectorises them 16 wide.
//!
//! `exp` and `erf` are branch-free approximations (so the loops vectorise);
//! both are within 5e-7 of the exact functions over the ranges used
//! (tests below compare them with `libm`).

use std::sync::OnceLock;

/// The instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Whatever the build's target offers.
    Portable,
    /// AVX-512F with the BF16 pair dot product.
    Avx512Bf16,
}

/// The best this CPU offers, detected once.
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16") {
        return Isa::Avx512Bf16;
    }
    Isa::Portable
}

/// Defines `pub(crate) fn $name(isa, args…)` that runs `$body` compiled
/// for AVX-512 when `isa` says so, else for the baseline target.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name(isa: Isa, $($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn wide($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512Bf16 {
                // SAFETY: `Isa::Avx512Bf16` is only chosen when the CPU has
                // AVX-512F (and BF16), which implies the rest.
                unsafe { wide($($arg),*) };
                return;
            }
            let _ = isa;
            body($($arg),*)
        }
    };
}

/// `exp(x)` for `x` ≤ 88, branch-free: `2^n · e^f` with `n` the nearest
/// integer to `x / ln 2`, `f = x − n ln 2` (ln 2 split in two parts, so `f`
/// keeps its precision) and a degree-7 series for `e^f`, |f| ≤ ln 2 / 2.
/// Below −87 it returns about 1e-38 instead of 0.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4; // exact in 9 bits, so n · LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)`, branch-free: an odd rational approximation on [−4, 4], ±1
/// outside (the coefficients are a published minimax fit for f32).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let s = x * x;
    let num = x
        * (-1.609_603_3e-2
            + s * (-2.954_6e-3
                + s * (-7.349_906_3e-4
                    + s * (-5.692_506_4e-5 + s * (-2.101_024e-6 + s * (2.770_681_4e-8 + s * -2.726_142_3e-10))))));
    let den =
        -1.426_473_9e-2 + s * (-7.373_329_3e-3 + s * (-1.682_827e-3 + s * (-2.133_740_6e-4 + s * -1.456_607_2e-5)));
    num / den
}

multiversion! {
    /// Rounds 2·len(out) values to bf16 pairs (even index in the low half).
    fn to_bf16_pairs(x: &[f32], out: &mut [u32]) {
        for (o, p) in out.iter_mut().zip(x.chunks_exact(2)) {
            *o = u32::from(super::linear::bf16(p[0])) | (u32::from(super::linear::bf16(p[1])) << 16);
        }
    }
}

multiversion! {
    /// GELU (the exact, erf form BERT uses), in place.
    fn gelu(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// `row = LayerNorm(row + residual) · gamma + beta` over rows of
    /// `gamma.len()` values; `residual` is overwritten with the result too.
    fn add_norm(rows: &mut [f32], residual: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = gamma.len();
        for (row, res) in rows.chunks_exact_mut(h).zip(residual.chunks_exact_mut(h)) {
            for (v, r) in row.iter_mut().zip(res.iter()) {
                *v += *r;
            }
            norm_row(row, gamma, beta, eps);
            res.copy_from_slice(row);
        }
    }
}

multiversion! {
    /// LayerNorm in place over rows of `gamma.len()` values.
    fn norm(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        for row in rows.chunks_exact_mut(gamma.len()) {
            norm_row(row, gamma, beta, eps);
        }
    }
}

#[inline(always)]
fn norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = row.len() as f32;
    let mean = lanes_sum(row) / h;
    let mut var = [0f32; 16];
    for chunk in row.chunks_exact(16) {
        for (acc, v) in var.iter_mut().zip(chunk) {
            *acc += (v - mean) * (v - mean);
        }
    }
    let tail: f32 = row.chunks_exact(16).remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    let inv = 1.0 / ((var.iter().sum::<f32>() + tail) / h + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// A sum in 16 interleaved partial sums (so it vectorises).
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for chunk in x.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + x.chunks_exact(16).remainder().iter().sum::<f32>()
}

/// Scratch lengths [`attend`] needs for `n` tokens of a `d`-wide head:
/// `(kt, scores)`.
pub(crate) fn attend_scratch(n: usize, d: usize) -> (usize, usize) {
    let padded = n.next_multiple_of(16);
    (d * padded, padded)
}

multiversion! {
    /// One head of scaled dot-product attention over one sequence, no mask.
    /// `qkv` rows are `stride` values; the head's query, key and value
    /// start at `offsets` and are `d` wide. `out` rows (`out_stride` apart,
    /// from `out_offset`) receive `softmax(q kᵀ · scale) v`. `kt` and
    /// `scores` are scratch of the lengths [`attend_scratch`] gives.
    ///
    /// Scores are computed 16 keys at a time and the weighted values 16
    /// dimensions at a time, each in a register-sized accumulator.
    fn attend(
        qkv: &[f32], stride: usize, n: usize, d: usize, offsets: [usize; 3], scale: f32,
        out: &mut [f32], out_stride: usize, out_offset: usize, kt: &mut [f32], scores: &mut [f32]
    ) {
        let [qo, ko, vo] = offsets;
        let padded = n.next_multiple_of(16);
        // Keys transposed: row t holds dimension t of every key, zero padded.
        let kt = &mut kt[..d * padded];
        for (t, row) in kt.chunks_exact_mut(padded).enumerate() {
            for (j, slot) in row[..n].iter_mut().enumerate() {
                *slot = qkv[j * stride + ko + t];
            }
            row[n..].fill(0.0);
        }
        let scores = &mut scores[..padded];
        for i in 0..n {
            let q = &qkv[i * stride + qo..][..d];
            for (jb, chunk) in scores.chunks_exact_mut(16).enumerate() {
                let mut acc = [0f32; 16];
                for (t, &qv) in q.iter().enumerate() {
                    let keys: &[f32; 16] = kt[t * padded + 16 * jb..][..16].try_into().expect("16 keys");
                    for (a, k) in acc.iter_mut().zip(keys) {
                        *a += qv * k;
                    }
                }
                for (c, a) in chunk.iter_mut().zip(acc) {
                    *c = a * scale;
                }
            }
            let live = &mut scores[..n];
            let max = lanes_max(live);
            for s in live.iter_mut() {
                *s = exp(*s - max);
            }
            let inv = 1.0 / lanes_sum(live);
            let row = &mut out[i * out_stride + out_offset..][..d];
            let wide = d - d % 16;
            for db in (0..wide).step_by(16) {
                let mut acc = [0f32; 16];
                for (j, &p) in live.iter().enumerate() {
                    let value: &[f32; 16] = qkv[j * stride + vo + db..][..16].try_into().expect("16 values");
                    for (a, v) in acc.iter_mut().zip(value) {
                        *a += p * v;
                    }
                }
                for (o, a) in row[db..db + 16].iter_mut().zip(acc) {
                    *o = a * inv;
                }
            }
            for (t, o) in row.iter_mut().enumerate().skip(wide) {
                *o = live.iter().enumerate().map(|(j, &p)| p * qkv[j * stride + vo + t]).sum::<f32>() * inv;
            }
        }
    }
}

/// The largest value, in 16 interleaved partial maxima (so it vectorises).
#[inline(always)]
fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    for chunk in x.chunks_exact(16) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = x.chunks_exact(16).remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = libm::exp(f64::from(x));
            let rel = ((f64::from(exp(x)) - want) / want).abs();
            worst = worst.max(rel);
            x += 0.013;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn erf_is_close_to_libm() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x <= 6.0 {
            worst = worst.max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
            x += 0.001;
        }
        assert!(worst < 5e-7, "absolute error {worst}");
    }

    /// Both compilations of every kernel agree (when this CPU has the wide one).
    #[test]
    fn wide_and_portable_kernels_agree() {
        let wide = detect();
        let data: Vec<f32> = (0..384 * 7).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
        let gamma: Vec<f32> = (0..384).map(|i| 1.0 + i as f32 / 384.0).collect();
        let beta: Vec<f32> = (0..384).map(|i| i as f32 / 1000.0).collect();
        let run = |isa: Isa| {
            let mut g = data.clone();
            gelu(isa, &mut g);
            let mut n = data.clone();
            norm(isa, &mut n, &gamma, &beta, 1e-12);
            let mut out = vec![0f32; 7 * 384];
            let (k, sc) = attend_scratch(7, 32);
            let (mut kt, mut sc) = (vec![0f32; k], vec![0f32; sc]);
            attend(isa, &data, 384, 7, 32, [0, 32, 64], 0.17, &mut out, 384, 96, &mut kt, &mut sc);
            (g, n, out)
        };
        let (a, b) = (run(Isa::Portable), run(wide));
        for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2)] {
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn attention_matches_a_direct_softmax() {
        // Head widths below, at and past 16 (the vector part and the tail),
        // token counts below and past 16.
        for (n, d) in [(5, 4), (19, 16), (33, 20)] {
            let stride = 3 * d;
            let qkv: Vec<f32> = (0..n * stride).map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0).collect();
            let mut out = vec![0f32; n * d];
            let (k, sc) = attend_scratch(n, d);
            let (mut kt, mut sc) = (vec![0f32; k], vec![0f32; sc]);
            for isa in [Isa::Portable, detect()] {
                attend(isa, &qkv, stride, n, d, [0, d, 2 * d], 0.5, &mut out, d, 0, &mut kt, &mut sc);
                for i in 0..n {
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..d).map(|t| f64::from(qkv[i * stride + t] * qkv[j * stride + d + t])).sum::<f64>() * 0.5
                        })
                        .collect();
                    let z: f64 = s.iter().map(|v| v.exp()).sum();
                    for t in 0..d {
                        let want: f64 = (0..n).map(|j| s[j].exp() / z * f64::from(qkv[j * stride + 2 * d + t])).sum();
                        assert!((f64::from(out[i * d + t]) - want).abs() < 1e-5, "{isa:?} n {n} d {d}");
                    }
                }
            }
        }
    }
}
