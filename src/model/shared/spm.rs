//! SigLIP's own tokenizer from its SentencePiece model (`spiece.model`, the only tokenizer file
//! SigLIP checkpoints on the hub ship), rebuilt as a `tokenizers` pipeline that gives the ids of
//! `transformers`' `SiglipTokenizer`: the text lowercased, ASCII punctuation removed, whitespace
//! runs collapsed and the ends stripped (its `canonicalize_text`), then SentencePiece's own
//! normalization (the model's precompiled character map, extra spaces removed, spaces as `▁`),
//! the unigram model's best segmentation, and the end token. `</s>` and `<unk>` written in a text
//! are those tokens, as in `transformers`.
//!
//! The model file is a protocol buffer (`ModelProto` of sentencepiece_model.proto); only the
//! fields used here are read, and every length is checked against the bytes there are.

use crate::error::{Error, Result};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Lowercase, Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer};

/// The most pieces a model may hold (SentencePiece vocabularies are at most a few hundred
/// thousand; Gemma's is 256k).
const MAX_PIECES: usize = 1 << 21;

/// One vocabulary entry.
struct Piece {
    text: String,
    score: f32,
    /// 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
    kind: u64,
}

/// The parts of `ModelProto` the tokenizer needs.
struct SpModel {
    pieces: Vec<Piece>,
    /// `TrainerSpec.model_type`: 1 unigram (the default), 2 BPE, 3 word, 4 char.
    model_type: u64,
    byte_fallback: bool,
    /// `NormalizerSpec.precompiled_charsmap`.
    charsmap: Vec<u8>,
}

/// A protocol-buffer reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A field's value: varint, 64-bit, length-delimited bytes or 32-bit.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("a varint runs past the end")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| format!("a field of {n} bytes runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field (number, value), or None at the end.
    fn field(&mut self) -> std::result::Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(usize::try_from(n).map_err(|_| "a length past the address space")?)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => return Err(format!("wire type {t} (groups or unknown) at byte {}", self.pos)),
        };
        Ok(Some((key >> 3, value)))
    }
}

impl SpModel {
    fn parse(bytes: &[u8]) -> std::result::Result<SpModel, String> {
        let mut m = SpModel { pieces: Vec::new(), model_type: 1, byte_fallback: false, charsmap: Vec::new() };
        let mut top = Reader::new(bytes);
        while let Some((field, value)) = top.field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => {
                    if m.pieces.len() >= MAX_PIECES {
                        return Err(format!("more than {MAX_PIECES} pieces"));
                    }
                    let mut p = Piece { text: String::new(), score: 0.0, kind: 1 };
                    let mut r = Reader::new(b);
                    while let Some((f, v)) = r.field()? {
                        match (f, v) {
                            (1, Value::Bytes(s)) => p.text = String::from_utf8(s.to_vec()).map_err(|_| "a piece that is not UTF-8")?,
                            (2, Value::Fixed32(bits)) => p.score = f32::from_bits(bits),
                            (3, Value::Varint(k)) => p.kind = k,
                            _ => {}
                        }
                    }
                    if !p.score.is_finite() {
                        return Err(format!("piece {} has the score {}", m.pieces.len(), p.score));
                    }
                    m.pieces.push(p);
                }
                (2, Value::Bytes(b)) => {
                    let mut r = Reader::new(b);
                    while let Some((f, v)) = r.field()? {
                        match (f, v) {
                            (3, Value::Varint(t)) => m.model_type = t,
                            (35, Value::Varint(b)) => m.byte_fallback = b != 0,
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(b)) => {
                    let mut r = Reader::new(b);
                    while let Some((f, v)) = r.field()? {
                        if let (2, Value::Bytes(c)) = (f, v) {
                            m.charsmap = c.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err("no pieces: not a SentencePiece model".into());
        }
        Ok(m)
    }
}

/// SigLIP's tokenizer from `spiece.model`'s bytes; `file` names it in errors.
pub fn siglip_tokenizer(bytes: &[u8], file: &str) -> Result<Tokenizer> {
    let bad = |p: String| Error::model(file, p);
    let m = SpModel::parse(bytes).map_err(|e| bad(format!("not a readable SentencePiece model: {e}")))?;
    if m.model_type != 1 {
        return Err(bad(format!("a SentencePiece model of type {} (only unigram models, type 1, are read)", m.model_type)));
    }
    let unk = m.pieces.iter().position(|p| p.kind == 2).ok_or_else(|| bad("no unknown-token piece".into()))?;
    let find = |text: &str| m.pieces.iter().position(|p| p.text == text);
    let eos = find("</s>").ok_or_else(|| bad("no `</s>` piece for the end token".into()))?;
    let vocab: Vec<(String, f64)> = m.pieces.iter().map(|p| (p.text.clone(), p.score as f64)).collect();
    let model = Unigram::from(vocab, Some(unk), m.byte_fallback).map_err(|e| bad(format!("cannot build the unigram model: {e}")))?;
    let replace = |pattern: &str, with: &str| -> Result<NormalizerWrapper> {
        let r = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into()), with).map_err(|e| bad(format!("normalizer: {e}")))?;
        Ok(r.into())
    };
    let mut steps: Vec<NormalizerWrapper> = vec![
        // SiglipTokenizer.canonicalize_text: lowercase (as Python's str.lower, whose capital
        // sigma ending a word becomes the final form), no ASCII punctuation (Python's
        // string.punctuation), whitespace runs as one space (Python's \s also takes \x1c-\x1f),
        // no whitespace at either end.
        replace(r"(?<=\p{Cased})Σ(?!\p{Cased})", "ς")?,
        Lowercase.into(),
        replace(r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"##, "")?,
        replace(r"[\s\x1c-\x1f]+", " ")?,
        Strip::new(true, true).into(),
    ];
    // SentencePiece's normalization: the character map (NFKC and its own rules), then its
    // removal of extra spaces (runs as one; none at the end).
    if !m.charsmap.is_empty() {
        check_charsmap(&m.charsmap).map_err(|e| bad(format!("its character map is not usable: {e}")))?;
        let p = Precompiled::from(&m.charsmap).map_err(|e| bad(format!("its character map is not usable: {e}")))?;
        steps.push(p.into());
    }
    steps.push(replace(" {2,}", " ")?);
    steps.push(Strip::new(false, true).into());
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(Sequence::new(steps))).map_err(|e| bad(format!("normalizer: {e}")))?;
    // Spaces as `▁`, each word starting at one; no space put before the text (SiglipTokenizer
    // puts its own, below).
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Never, true)));
    let end = TemplateProcessing::builder()
        .try_single("$A </s>")
        .map_err(|e| bad(format!("post-processor: {e}")))?
        .special_tokens(vec![("</s>".to_string(), eos as u32)])
        .build()
        .map_err(|e| bad(format!("post-processor: {e}")))?;
    tok.with_post_processor(Some(end));
    let specials: Vec<AddedToken> = [eos, unk].iter().map(|&i| AddedToken::from(m.pieces[i].text.clone(), true)).collect();
    tok.add_special_tokens(specials).map_err(|e| bad(format!("special tokens: {e}")))?;
    // SiglipTokenizer pads with its end token.
    tok.with_padding(Some(tokenizers::PaddingParams { pad_id: eos as u32, pad_token: "</s>".into(), ..Default::default() }));
    Ok(tok)
}

/// Checks that a precompiled character map (a double-array trie of u32 units over the UTF-8 bytes
/// of a text, then the normalized strings it points into) can be walked with any text without an
/// index leaving it: from every node the trie reaches, each of the 255 next bytes lands inside
/// the array, and every normalized string a leaf points to starts at a character inside them.
/// The `tokenizers` normalizer indexes the map unchecked, so a damaged file is refused here.
pub(crate) fn check_charsmap(map: &[u8]) -> std::result::Result<(), String> {
    let word = |i: usize| -> Option<usize> { map.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) };
    let trie_bytes = word(0).ok_or("shorter than its header")?;
    let units = trie_bytes / 4;
    if 4 + units * 4 > map.len() || units == 0 {
        return Err(format!("a trie of {units} units in {} bytes", map.len()));
    }
    let array: Vec<usize> = (0..units).map(|i| word(4 + 4 * i).unwrap_or(0)).collect();
    let normalized = std::str::from_utf8(&map[4 + units * 4..]).map_err(|_| "its normalized strings are not UTF-8")?;
    // The unit's fields, as the normalizer reads them.
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let label = |u: usize| u & ((1 << 31) | 0xff);
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let base_ok = |b: usize| (b | 0xff) < units;
    let root = offset(array[0]);
    if !base_ok(root) {
        return Err("its root points outside the trie".into());
    }
    let mut seen = vec![false; units];
    let mut todo = vec![root];
    while let Some(base) = todo.pop() {
        for c in 1..=255usize {
            let pos = base ^ c;
            let unit = array[pos];
            if label(unit) != c || seen[pos] {
                continue;
            }
            seen[pos] = true;
            let child = pos ^ offset(unit);
            if !base_ok(child) {
                return Err(format!("node {pos} points outside the trie"));
            }
            if has_leaf(unit) {
                let v = value(array[child]);
                if v > normalized.len() || !normalized.is_char_boundary(v) {
                    return Err(format!("node {pos} points outside its normalized strings"));
                }
            }
            todo.push(child);
        }
    }
    Ok(())
}

/// Standard base64 (with or without padding), as tokenizer.json stores a character map.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What SiglipTokenizer does to a text before its pipeline: a `▁` in front (SentencePiece reads
/// it as a space), `▁` in the text as spaces.
pub fn siglip_prefix(text: &str) -> String {
    format!("▁{}", text.replace('▁', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_hostile_protobufs_are_errors() {
        for bytes in [&b""[..], &[0x0a, 0xff][..], &[0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..], &[0x0b][..], &[0x0a, 0x05, 0x0a][..]] {
            assert!(SpModel::parse(bytes).is_err(), "{bytes:?}");
        }
        // A length that claims more than there is allocates nothing.
        let e = SpModel::parse(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).err().expect("accepted");
        assert!(e.contains("past the end"), "{e}");
    }
}
