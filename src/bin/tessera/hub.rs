//! Checkpoints by hub id, in the standard Hugging Face cache (HF_HOME, default
//! ~/.cache/huggingface), downloaded from HF_ENDPOINT (default https://huggingface.co) when not
//! cached. A cached file is used without asking the network; with HF_HUB_OFFLINE=1 (as the
//! Hugging Face tools honour it) the network is never asked and a missing file is an error.

use anyhow::{bail, Context, Result};
use tessera::Checkpoint;

/// Whether HF_HUB_OFFLINE asks for the cache only (`1`, `true`, `yes`, `on`).
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| ["1", "true", "yes", "on"].contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// The innermost cause of an error: the resolver's or the server's own words, once (each layer of
/// the download error repeats the ones below it).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub fn checkpoint(id: &str) -> Result<Checkpoint> {
    let cache = hf_hub::Cache::from_env();
    let cached = cache.model(id.to_string());
    let offline = offline();
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let api = if offline {
        None
    } else {
        Some(
            hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .build()
                .context("cannot set up the Hugging Face hub client")?,
        )
    };
    let fetch = |file: &str| -> Result<Vec<u8>> {
        let path = match (cached.get(file), &api) {
            (Some(p), _) => p,
            (None, None) => bail!(
                "{id}: {file} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set; download it once without HF_HUB_OFFLINE",
                cache.path().display()
            ),
            (None, Some(api)) => match api.model(id.to_string()).get(file) {
                Ok(p) => p,
                Err(e) => bail!("{id}: cannot download {file} from {endpoint}: {}", root_cause(&e)),
            },
        };
        std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let config = fetch("config.json")?;
    let weights = fetch("model.safetensors")?;
    // Optional: checkpoints without it get the family's default preprocessing.
    let pre = fetch("preprocessor_config.json").ok();
    let ck = Checkpoint::from_bytes(id, &config, weights, pre.as_deref())?;
    // Text towers (CLIP, SigLIP) tokenize with the repository's own tokenizer.json, padded on the
    // side its tokenizer_config.json names.
    let text = ck.has_text_tower();
    let tok = if text { fetch("tokenizer.json").ok() } else { None };
    let tok_cfg = if text { fetch("tokenizer_config.json").ok() } else { None };
    // SigLIP's own checkpoints ship a SentencePiece model instead.
    let spm = if text && tok.is_none() { fetch("spiece.model").ok() } else { None };
    Ok(ck.with_tokenizer(tok).with_tokenizer_config(tok_cfg).with_sentencepiece(spm))
}
