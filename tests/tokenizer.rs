//! Tokenization with CLIP's real vocabulary (49408 tokens; tests/fixtures/clip/openai-tokenizer,
//! scripts/make_clip_tokenizer_fixture.py): the ids `transformers`' CLIPTokenizer gives a committed
//! list of strings, hostile ones included (empty, whitespace runs, control characters, emoji,
//! mixed scripts, decomposed accents, special-token text, texts past 77 tokens).

use std::io::Read;
use std::path::Path;
use tessera::model::tokenize::TextTokenizer;

#[test]
fn clip_tokenizer_gives_the_python_tokenizers_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/openai-tokenizer");
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("tokenizer.json.gz")).unwrap()).read_to_end(&mut json).unwrap();
    let tok = TextTokenizer::from_bytes(&json, "tokenizer.json", 77).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let strings = want["strings"].as_array().unwrap();
    assert!(strings.len() >= 19);
    let cut = want["truncated"].as_array().unwrap();
    for ((s, ids), cut) in strings.iter().zip(want["ids"].as_array().unwrap()).zip(cut) {
        let s = s.as_str().unwrap();
        let ids: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(s).unwrap();
        assert_eq!(got.ids, ids, "{s:?}");
        assert_eq!(got.truncated, cut.as_bool().unwrap(), "{s:?}: truncation flag");
    }
    // The well-known ids of a plain prompt.
    assert_eq!(tok.encode("a photo of a cat").unwrap().ids, vec![49406, 320, 1125, 539, 320, 2368, 49407]);
}

/// SigLIP's SentencePiece tokenizer (tests/fixtures/siglip-spm-zero-shot/spiece.model, a unigram
/// model with nmt_nfkc normalization trained by scripts/make_siglip_zero_shot_fixture.py): the ids
/// `transformers`' SiglipTokenizer gives the committed strings (punctuation, case, whitespace of
/// every kind, full-width forms, `</s>` written in a text, emoji, texts past the 16 positions).
#[test]
fn siglip_sentencepiece_tokenizer_gives_the_python_tokenizers_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip-spm-zero-shot");
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let max = want["max_length"].as_u64().unwrap() as usize;
    let tok = TextTokenizer::from_sentencepiece(&std::fs::read(dir.join("spiece.model")).unwrap(), "spiece.model", max).unwrap();
    let strings = want["strings"].as_array().unwrap();
    assert!(strings.len() >= 20);
    let mut wrong = Vec::new();
    for ((s, ids), cut) in strings.iter().zip(want["ids"].as_array().unwrap()).zip(want["truncated"].as_array().unwrap()) {
        let s = s.as_str().unwrap();
        let ids: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(s).unwrap();
        if got.ids != ids || got.truncated != cut.as_bool().unwrap() {
            wrong.push(format!("{s:?}: got {:?} ({}), want {ids:?} ({cut})", got.ids, got.truncated));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Not a SentencePiece model: an error naming the file.
    for bad in [&b"{\"model\": 1}"[..], &[0x0a, 0xff, 0xff, 0xff, 0x0f][..], &[][..]] {
        let e = TextTokenizer::from_sentencepiece(bad, "spiece.model", max).err().expect("accepted");
        assert!(e.to_string().contains("spiece.model"), "{e}");
    }
}

/// Seeded picks in `0..n` for the damage tests.
fn picker(seed: u64) -> impl FnMut(usize) -> usize {
    let mut rng = tessera::reference::Rng::new(seed);
    move |n| ((rng.vec(1, 1.0)[0].abs() * 1e6) as usize) % n.max(1)
}

/// Texts a damaged tokenizer must encode (or refuse) without panicking.
const PROBES: [&str; 6] = ["a photo of a cat", "", "ΟΔΟΣ</s> x", "🐱 東京", "ｆｕｌｌ", "<|endoftext|> <bos> <pad>"];

/// Loads a damaged tokenizer and encodes the probes with it: true where it was refused, with an
/// error naming `file`; a panic anywhere fails the test, naming `case`.
fn refused_without_panic(load: impl FnOnce() -> tessera::Result<TextTokenizer> + std::panic::UnwindSafe, file: &str, case: &str) -> bool {
    let result = std::panic::catch_unwind(|| match load() {
        Ok(tok) => {
            for s in PROBES {
                let _ = tok.encode(s);
            }
            Ok(false)
        }
        Err(e) => Err(e.to_string()),
    });
    match result {
        Ok(Ok(refused)) => refused,
        Ok(Err(e)) => {
            assert!(e.contains(file), "{case}: {e}");
            true
        }
        Err(_) => panic!("{case} panicked"),
    }
}

/// Damaged SentencePiece models (bytes flipped, cut short, pieces emptied or duplicated) load as
/// an error or as some tokenizer, and encoding with one never panics.
#[test]
fn damaged_sentencepiece_models_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip-spm-zero-shot");
    let good = std::fs::read(dir.join("spiece.model")).unwrap();
    let mut next = picker(77);
    let mut refused = 0;
    for i in 0..400 {
        let mut bytes = good.clone();
        match i % 4 {
            // Flip a few bytes anywhere (the pieces come first; the character map is the bulk).
            0 => (0..4).for_each(|_| {
                let at = next(bytes.len());
                bytes[at] ^= 1 << next(8);
            }),
            // Flip bytes among the pieces.
            1 => (0..4).for_each(|_| {
                let at = next(4000.min(bytes.len()));
                bytes[at] = next(256) as u8;
            }),
            // Cut short.
            2 => bytes.truncate(next(bytes.len())),
            // Append a copy of the first field (a duplicated piece).
            _ => {
                let head: Vec<u8> = good[..next(64) + 2].to_vec();
                bytes.extend(head);
            }
        }
        refused += refused_without_panic(|| TextTokenizer::from_sentencepiece(&bytes, "spiece.model", 16), "spiece.model", &format!("case {i}")) as usize;
    }
    eprintln!("damaged models: {} loaded, {refused} refused", 400 - refused);
    assert!(refused > 0);
}

/// A tokenizer.json whose normalizer is SentencePiece's character map (`Precompiled`, the form of
/// files converted from SentencePiece; tests/fixtures/siglip-spm-zero-shot/precompiled): the ids
/// the `tokenizers` library gives in Python; with the map damaged (base64 characters changed),
/// an error naming the file or some tokenizer, never a panic.
#[test]
fn damaged_character_maps_in_tokenizer_json_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip-spm-zero-shot/precompiled");
    let json = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let tok = TextTokenizer::from_bytes(json.as_bytes(), "tokenizer.json", 1000).unwrap();
    for (s, ids) in want["strings"].as_array().unwrap().iter().zip(want["ids"].as_array().unwrap()) {
        let ids: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(s.as_str().unwrap()).unwrap().ids, ids, "{s}");
    }
    let key = "\"precompiled_charsmap\": \"";
    let start = json.find(key).expect("a Precompiled normalizer") + key.len();
    let len = json[start..].find('"').unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut next = picker(91);
    let mut refused = 0;
    for i in 0..200 {
        let mut bytes = json.clone().into_bytes();
        // Mostly in the trie (the first tenth of the map), some in the strings.
        let span = if i % 2 == 0 { len / 10 } else { len - 4 };
        for _ in 0..3 {
            let at = start + next(span);
            bytes[at] = alphabet[next(64)];
        }
        refused += refused_without_panic(|| TextTokenizer::from_bytes(&bytes, "tokenizer.json", 1000), "tokenizer.json", &format!("case {i}")) as usize;
    }
    assert!(refused > 0);
}

/// tokenizer.json files with changed numbers (ids, scores, lengths: the JSON stays valid) and
/// changed letters (tokens, merges, types): an error naming the file or some tokenizer, and
/// encoding with one never panics. CLIP's byte-level BPE and a SigLIP 2 style byte-fallback BPE.
#[test]
fn damaged_tokenizer_json_never_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut next = picker(93);
    let mut refused = 0;
    for fixture in ["clip/clip-zero-shot", "siglip-zero-shot"] {
        let good = std::fs::read(root.join(fixture).join("tokenizer.json")).unwrap();
        let digits: Vec<usize> = good.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(i, _)| i).collect();
        let letters: Vec<usize> = good.iter().enumerate().filter(|(_, b)| b.is_ascii_lowercase()).map(|(i, _)| i).collect();
        for i in 0..150 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                if i % 2 == 0 {
                    bytes[digits[next(digits.len())]] = b'0' + next(10) as u8;
                } else {
                    bytes[letters[next(letters.len())]] = b'a' + next(26) as u8;
                }
            }
            refused += refused_without_panic(|| TextTokenizer::from_bytes(&bytes, "tokenizer.json", 16), "tokenizer.json", &format!("{fixture} case {i}")) as usize;
        }
    }
    assert!(refused > 0);
}
