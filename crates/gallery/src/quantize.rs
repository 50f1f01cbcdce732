//! int8 codes and their dot product.

/// Embedding dimension (SFace).
pub const DIM: usize = 128;

/// A vector as int8 codes: value ≈ code × scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub values: [i8; DIM],
    pub scale: f32,
}

/// Symmetric per-vector quantisation: the largest magnitude maps to ±127.
pub fn quantize(vector: &[f32]) -> Code {
    let max = vector.iter().take(DIM).fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut values = [0i8; DIM];
    for (out, v) in values.iter_mut().zip(vector) {
        *out = (v / scale).round().clamp(-127.0, 127.0) as i8;
    }
    Code { values, scale }
}

/// Σ a·b over int8 codes, in i32 (|sum| ≤ 128·127² fits easily).
#[inline(always)]
pub fn dot_codes(a: &[i8; DIM], b: &[i8]) -> i32 {
    // Widening to i16 products lets the compiler use multiply-add
    // instructions (pmaddwd / vpmaddwd).
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(i16::from(x) * i16::from(y)))
        .sum()
}

/// Scores every code against `query` (approximate cosine) and hands each
/// (index, score) to `visit`. The whole loop is compiled a second time for
/// AVX2 and chosen once per scan, not once per face.
pub fn scan(query: &Code, codes: &[i8], scales: &[f32], visit: impl FnMut(usize, f32)) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { scan_avx2(query, codes, scales, visit) };
            return;
        }
    }
    scan_generic(query, codes, scales, visit);
}

/// The approximate cosine of `query` and one face's `code` and `scale`.
#[inline(always)]
pub fn score(query: &Code, code: &[i8], scale: f32) -> f32 {
    dot_codes(&query.values, code) as f32 * query.scale * scale
}

#[inline(always)]
fn scan_generic(query: &Code, codes: &[i8], scales: &[f32], mut visit: impl FnMut(usize, f32)) {
    for (i, (code, &scale)) in codes.chunks_exact(DIM).zip(scales).enumerate() {
        visit(i, score(query, code, scale));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(query: &Code, codes: &[i8], scales: &[f32], visit: impl FnMut(usize, f32)) {
    scan_generic(query, codes, scales, visit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_is_close_and_symmetric() {
        let v: Vec<f32> = (0..DIM).map(|i| (i as f32 - 64.0) / 200.0).collect();
        let code = quantize(&v);
        assert_eq!(code.values[0], -127);
        for (c, x) in code.values.iter().zip(&v) {
            assert!((f32::from(*c) * code.scale - x).abs() <= code.scale / 2.0 + 1e-6);
        }
        assert_eq!(quantize(&[0.0; DIM]).values, [0; DIM]);
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: [i8; DIM] = std::array::from_fn(|i| (i as i32 * 7 % 255 - 127) as i8);
        let b: Vec<i8> = (0..DIM).map(|i| (i as i32 * 13 % 255 - 127) as i8).collect();
        let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
        assert_eq!(dot_codes(&a, &b), plain);
    }
}
