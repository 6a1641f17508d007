// Helpers prepended to every kernel: the storage type, exact GELU and flattened 2D workgroup grids.

// Tensors are stored as S (f32, or f16 with F16: `enable f16;` then precedes this file) and read
// into f32 for all arithmetic; S4 is the vec4 form.
#ifdef F16
alias S = f16;
alias S4 = vec4<f16>;
#else
alias S = f32;
alias S4 = vec4<f32>;
#endif

// GELU with the exact erf form used by PyTorch's nn.GELU(): 0.5 * x * erfc(-x / sqrt(2)).
// erfc uses the Chebyshev fit of Numerical Recipes (erfcc), whose fractional error is below
// 1.2e-7 everywhere; being relative to erfc, it stays accurate in the negative tail too.
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

fn gelu_erf(x: f32) -> f32 {
    let r = erfc_nonneg(abs(x) * 0.70710678118654752);
    return 0.5 * x * select(r, 2.0 - r, x >= 0.0);
}

// Dispatches larger than 65535 workgroups in x are split over y; this recovers the linear index.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
