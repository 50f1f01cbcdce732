//! 128-bit sign sketches and the Hamming pre-filter that scans them.
//!
//! A sketch is the sign of each component of the vector after a fixed
//! random rotation (random sign flips, then a Walsh–Hadamard transform: a
//! structured rotation that costs 7·128 additions instead of a 128×128
//! product). For rotated vectors the share of differing bits estimates the
//! angle between them (Charikar's SimHash), so the faces nearest in Hamming
//! distance are a shortlist that holds the nearest faces by cosine; the
//! caller re-ranks that shortlist on int8 codes. The rotation spreads the
//! variance of SFace's unequal components over all bits, so each bit
//! carries about the same information.
//!
//! A sketch is 16 bytes, an eighth of an int8 code, so the pre-filter reads
//! an eighth of the memory the int8 scan does. It is derived from the vector
//! alone, so a partition rebuilt from storage gets identical sketches and
//! nothing needs to be persisted or trained.

use crate::DIM;

/// A vector's 128 sign bits.
pub type Sketch = [u64; 2];

/// The fixed random signs applied before the transform (a xorshift stream
/// with a fixed seed, so every node and every restart agrees).
const SIGNS: [bool; DIM] = signs();

const fn signs() -> [bool; DIM] {
    let mut out = [false; DIM];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < DIM {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = x & 1 == 1;
        i += 1;
    }
    out
}

/// The sketch of `vector` (`DIM` values; missing ones count as 0).
pub fn sketch(vector: &[f32]) -> Sketch {
    let mut x = [0f32; DIM];
    for ((out, v), flip) in x.iter_mut().zip(vector).zip(SIGNS) {
        *out = if flip { -v } else { *v };
    }
    walsh_hadamard(&mut x);
    let mut bits = [0u64; 2];
    for (i, v) in x.iter().enumerate() {
        bits[i / 64] |= u64::from(v.is_sign_positive()) << (i % 64);
    }
    bits
}

/// In-place unnormalised fast Walsh–Hadamard transform; only the signs are
/// used, so the scale does not matter.
fn walsh_hadamard(x: &mut [f32; DIM]) {
    let mut h = 1;
    while h < DIM {
        for block in x.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi) {
                (*a, *b) = (*a + *b, *a - *b);
            }
        }
        h *= 2;
    }
}

/// The Hamming distance between two sketches (0..=128).
#[inline(always)]
pub fn hamming(a: &Sketch, b: &Sketch) -> u32 {
    (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones()
}

/// The indices of at least `want` sketches nearest to `query` (all of
/// them when there are fewer), unordered; ties at the cut-off are kept.
pub fn nearest(query: &Sketch, sketches: &[Sketch], want: usize) -> Vec<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vpopcntdq") && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has both features, checked just above.
            return unsafe { nearest_avx512(query, sketches, want) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT, checked just above.
            return unsafe { nearest_popcnt(query, sketches, want) };
        }
    }
    nearest_generic(query, sketches, want)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn nearest_avx512(query: &Sketch, sketches: &[Sketch], want: usize) -> Vec<u32> {
    nearest_generic(query, sketches, want)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn nearest_popcnt(query: &Sketch, sketches: &[Sketch], want: usize) -> Vec<u32> {
    nearest_generic(query, sketches, want)
}

/// Faces are scored in blocks (a loop the compiler vectorises) and only
/// those within the running cut-off are kept. When the kept ones reach
/// twice `want`, a histogram of their distances lowers the cut-off to the
/// smallest distance that still keeps `want`, and the rest are dropped:
/// linear time, and no heap or sort over the whole partition.
#[inline(always)]
fn nearest_generic(query: &Sketch, sketches: &[Sketch], want: usize) -> Vec<u32> {
    const BLOCK: usize = 64;
    let want = want.max(1);
    let mut kept: Vec<(u32, u32)> = Vec::with_capacity(2 * want + BLOCK);
    let mut cutoff = 128u32;
    let mut distances = [0u32; BLOCK];
    for (b, block) in sketches.chunks(BLOCK).enumerate() {
        for (d, s) in distances.iter_mut().zip(block) {
            *d = hamming(query, s);
        }
        // A bit mask of the block's faces within the cut-off: a compare the
        // compiler vectorises, so the mostly empty blocks cost no branches.
        let mut within = 0u64;
        for (i, &d) in distances.iter().enumerate() {
            within |= u64::from(d <= cutoff) << i;
        }
        within &= u64::MAX >> (BLOCK - block.len());
        let base = (b * BLOCK) as u32;
        while within != 0 {
            let i = within.trailing_zeros();
            kept.push((distances[i as usize], base + i));
            within &= within - 1;
        }
        if kept.len() >= 2 * want {
            cutoff = cutoff_keeping(&kept, want);
            kept.retain(|&(d, _)| d <= cutoff);
        }
    }
    kept.into_iter().map(|(_, i)| i).collect()
}

/// The smallest distance `t` with at least `want` of `kept` at `t` or less.
fn cutoff_keeping(kept: &[(u32, u32)], want: usize) -> u32 {
    let mut histogram = [0usize; 129];
    for &(d, _) in kept {
        histogram[d as usize] += 1;
    }
    let mut total = 0;
    for (d, count) in histogram.iter().enumerate() {
        total += count;
        if total >= want {
            return d as u32;
        }
    }
    128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hamming_plain(a: &Sketch, b: &Sketch) -> u32 {
        (0..128)
            .filter(|&i| (a[i / 64] >> (i % 64)) & 1 != (b[i / 64] >> (i % 64)) & 1)
            .count() as u32
    }

    #[test]
    fn the_transform_is_a_rotation_up_to_scale() {
        let mut x = [0f32; DIM];
        x[3] = 1.0;
        walsh_hadamard(&mut x);
        // One basis vector spreads to ±1 everywhere: norm² × 128.
        assert!(x.iter().all(|v| v.abs() == 1.0));
        let mut y: [f32; DIM] = std::array::from_fn(|i| (i as f32 * 0.37).sin());
        let before: f32 = y.iter().map(|v| v * v).sum();
        walsh_hadamard(&mut y);
        let after: f32 = y.iter().map(|v| v * v).sum();
        assert!((after / before - DIM as f32).abs() < 1e-2, "{}", after / before);
    }

    #[test]
    fn opposite_vectors_differ_in_every_bit_and_equal_ones_in_none() {
        let v: Vec<f32> = (0..DIM).map(|i| (i as f32 * 0.91).cos() + 0.1).collect();
        let minus: Vec<f32> = v.iter().map(|x| -x).collect();
        assert_eq!(hamming(&sketch(&v), &sketch(&v)), 0);
        assert_eq!(hamming(&sketch(&v), &sketch(&minus)), 128);
        let s = sketch(&v);
        assert_eq!(hamming(&s, &[0, 0]), hamming_plain(&s, &[0, 0]));
    }

    #[test]
    fn nearest_keeps_the_closest_and_at_least_the_number_asked() {
        // Distances 0..128 repeating: the 10 nearest of 1000 are the
        // sketches at distance 0 (8 of them) and 1 (8 more).
        let query = [0u64, 0];
        let sketches: Vec<Sketch> = (0..1000u32)
            .map(|i| {
                let d = i % 125;
                let lo = if d >= 64 { u64::MAX } else { (1u64 << d) - 1 };
                let hi = if d > 64 { (1u64 << (d - 64)) - 1 } else { 0 };
                [lo, hi]
            })
            .collect();
        let mut found = nearest(&query, &sketches, 10);
        found.sort_unstable();
        let expected: Vec<u32> = (0..1000).filter(|i| i % 125 <= 1).collect();
        assert_eq!(found, expected);
        assert_eq!(nearest(&query, &sketches[..5], 10).len(), 5);
        assert!(nearest(&query, &[], 10).is_empty());
    }
}
