// The fused GEMM epilogue, act(acc + bias) + residual, on four consecutive outputs: BIAS adds the
// bias, GELU (exact, erf), TANH, QUICK_GELU (x sigmoid(1.702 x)) or GELU_TANH (the tanh approximation of GELU,
// written as x sigmoid(2u), finite for every finite x) applies the activation, RESIDUAL adds the residual. Used by
// every GEMM store (tiled, scalar edges, split-K reduction).
fn epilogue(acc: vec4<f32>, bias_v: vec4<f32>, residual_v: vec4<f32>) -> vec4<f32> {
    var v = acc;
#ifdef BIAS
    v += bias_v;
#endif
#ifdef GELU
    v = vec4<f32>(gelu_erf(v.x), gelu_erf(v.y), gelu_erf(v.z), gelu_erf(v.w));
#endif
#ifdef TANH
    v = tanh(v);
#endif
#ifdef QUICK_GELU
    v = v / (1.0 + exp(-1.702 * v));
#endif
#ifdef GELU_TANH
    v = v / (1.0 + exp(-1.5957691216057308 * (v + 0.044715 * v * v * v)));
#endif
#ifdef RESIDUAL
    v += residual_v;
#endif
    return v;
}

#ifdef VEC4
// With vec4 storage: the including file declares `bias` (BIAS) and `residual` (RESIDUAL) as arrays
// of S4; the outputs are columns col..col+4 (col a multiple of 4) at vec4 index `o` of the output.
fn epilogue4(acc: vec4<f32>, col: u32, o: u32) -> vec4<f32> {
    var bv = vec4<f32>(0.0);
    var rv = vec4<f32>(0.0);
#ifdef BIAS
    bv = vec4<f32>(bias[col / 4u]);
#endif
#ifdef RESIDUAL
    rv = vec4<f32>(residual[o]);
#endif
    return epilogue(acc, bv, rv);
}
#endif
