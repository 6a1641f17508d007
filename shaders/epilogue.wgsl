// The fused GEMM epilogue on four consecutive outputs: act(acc + bias) + residual, for output
// column `col` (a multiple of 4) at vec4 index `o` of the output. The including file declares
// `bias` (BIAS) and `residual` (RESIDUAL) as arrays of S4.
fn epilogue4(acc: vec4<f32>, col: u32, o: u32) -> vec4<f32> {
    var v = acc;
#ifdef BIAS
    v += vec4<f32>(bias[col / 4u]);
#endif
#ifdef GELU
    v = vec4<f32>(gelu_erf(v.x), gelu_erf(v.y), gelu_erf(v.z), gelu_erf(v.w));
#endif
#ifdef TANH
    v = tanh(v);
#endif
#ifdef RESIDUAL
    v += vec4<f32>(residual[o]);
#endif
    return v;
}
