//! Checkpoints by hub id, downloaded into the standard Hugging Face cache (HF_HOME, default
//! ~/.cache/huggingface) from HF_ENDPOINT (default https://huggingface.co); a cached copy is used
//! without asking the network.

use anyhow::{Context, Result};
use tessera::Checkpoint;

pub fn checkpoint(id: &str) -> Result<Checkpoint> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .build()
        .context("cannot set up the Hugging Face hub client")?;
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let repo = api.model(id.to_string());
    let fetch = |file: &str| -> Result<Vec<u8>> {
        let path = repo.get(file).with_context(|| format!("{id}: cannot get {file} from {endpoint}"))?;
        std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let config = fetch("config.json")?;
    let weights = fetch("model.safetensors")?;
    // Optional: checkpoints without it get the family's default preprocessing.
    let pre = fetch("preprocessor_config.json").ok();
    Ok(Checkpoint::from_bytes(id, &config, weights, pre.as_deref())?)
}
