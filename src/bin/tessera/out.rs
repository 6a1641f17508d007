//! Files the commands write: f32 safetensors, written next to the target and renamed, so that an
//! interrupted run never leaves a partial file.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub(crate) fn tensor_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes f32 tensors given as (name, shape, values).
pub(crate) fn write_safetensors(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<()> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, data)| tensor_bytes(data)).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _), b)| Ok((n.to_string(), TensorView::new(safetensors::Dtype::F32, shape.to_vec(), b)?)))
        .collect::<Result<_>>()?;
    // Written next to the target and renamed, so an interrupted run never leaves a partial file.
    let tmp = partial_path(path);
    safetensors::serialize_to_file(views, None, &tmp).with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// Where a file is written before it is renamed to `path`.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}
