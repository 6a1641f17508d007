//! PI-resize (FlexiViT) against the reference written from the paper's definition in
//! scripts/flexi.py (the full p² x q² pseudo-inverse in NumPy; fixtures by
//! scripts/make_flexi_fixtures.py): the 1-D factors' Kronecker product is that matrix, and
//! resized kernels match, for up- and downsizing.

use safetensors::SafeTensors;
use std::path::Path;
use tessera::model::flexi::{pi_resize, pi_resize_matrix};

fn fixtures() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flexi/kernels.safetensors");
    let bytes = std::fs::read(&path).expect("kernels.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("valid file");
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        .collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn resized_kernels_match_the_reference() {
    let all = fixtures();
    let get = |n: &str| all.iter().find(|(k, _, _)| k == n).unwrap_or_else(|| panic!("{n} missing"));
    let mut pairs = 0;
    for (name, shape, want) in all.iter().filter(|(n, _, _)| n.starts_with("resized.")) {
        let mut it = name.split('.').skip(1).map(|v| v.parse::<usize>().unwrap());
        let (p, q) = (it.next().unwrap(), it.next().unwrap());
        let (_, kshape, kernel) = get(&format!("kernel.{p}"));
        assert_eq!(shape, &[kshape[0], kshape[1], q, q]);
        let got = pi_resize(kernel, kshape[0] * kshape[1], p, q);
        close(name, &got, want);
        pairs += 1;
    }
    assert!(pairs >= 10, "only {pairs} pairs");
    // Up- and downsizing both covered.
    assert!(all.iter().any(|(n, _, _)| n == "resized.8.16") && all.iter().any(|(n, _, _)| n == "resized.8.4"));
}

#[test]
fn kronecker_of_the_factors_is_the_reference_matrix() {
    let all = fixtures();
    let mut n = 0;
    for (name, shape, want) in all.iter().filter(|(n, _, _)| n.starts_with("matrix.")) {
        let mut it = name.split('.').skip(1).map(|v| v.parse::<usize>().unwrap());
        let (p, q) = (it.next().unwrap(), it.next().unwrap());
        assert_eq!(shape, &[q * q, p * p]);
        let f = pi_resize_matrix(p, q); // q x p
        let mut got = Vec::with_capacity(q * q * p * p);
        for i in 0..q {
            for j in 0..q {
                for k in 0..p {
                    for l in 0..p {
                        got.push((f[i * p + k] * f[j * p + l]) as f32);
                    }
                }
            }
        }
        close(name, &got, want);
        n += 1;
    }
    assert!(n >= 6, "only {n} matrices");
}
