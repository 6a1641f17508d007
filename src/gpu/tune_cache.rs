//! The autotuner's memory: the kernel chosen per adapter, driver and shape key, in memory and
//! natively in a JSON file, so later compiles (and later processes) reuse a choice without timing
//! again. Each entry records a checksum of the candidate set it was chosen from; a different set
//! (a new kernel, a changed shader) is timed again, never hidden behind an old choice. The keys
//! and candidates mean nothing here: the graph layer's kernel selection gives them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// File format tag; files with another tag are ignored (and replaced on the next save).
const FORMAT: &str = "tessera-tuning-2";

/// One remembered choice.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TuneEntry {
    /// The kernel chosen (e.g. a tile name).
    pub choice: String,
    /// Checksum of the candidate set the choice was made from (names and shader sources).
    #[serde(default)]
    pub candidates: String,
    /// What each candidate took, ms per dispatch.
    pub ms: BTreeMap<String, f64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TuneFile {
    format: String,
    entries: BTreeMap<String, TuneEntry>,
}

/// What the tuner did on this device.
#[derive(Clone, Debug, Default)]
pub struct TuneStats {
    /// Shapes timed on this device.
    pub measured: usize,
    /// Choices taken from the cache (memory or file).
    pub reused: usize,
    /// The cache file, when there is one.
    pub path: Option<PathBuf>,
    /// Why the cache file could not be read or written, if it could not.
    pub cache_error: Option<String>,
    /// How candidates were timed where not with GPU timestamps (wall clock natively; not at all
    /// in a browser without timestamp queries, where the heuristic kernel is kept), if so.
    pub timing_note: Option<String>,
}

pub(crate) struct TuneCache {
    prefix: String,
    loaded: bool,
    entries: BTreeMap<String, TuneEntry>,
    dirty: bool,
    pub(crate) stats: TuneStats,
}

impl TuneCache {
    pub(crate) fn new(adapter: &str, path: Option<PathBuf>) -> Self {
        TuneCache {
            prefix: format!("{adapter} | "),
            loaded: false,
            entries: BTreeMap::new(),
            dirty: false,
            stats: TuneStats { path, ..Default::default() },
        }
    }

    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let Some(path) = &self.stats.path else { return };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.stats.cache_error = Some(format!("{}: cannot read: {e}", path.display()));
                return;
            }
        };
        match serde_json::from_slice::<TuneFile>(&bytes) {
            Ok(f) if f.format == FORMAT => self.entries = f.entries,
            Ok(f) => self.stats.cache_error = Some(format!("{}: format `{}`, expected `{FORMAT}`; it will be replaced", path.display(), f.format)),
            Err(e) => self.stats.cache_error = Some(format!("{}: not a tuning cache ({e}); it will be replaced", path.display())),
        }
    }

    /// The choice for `key`, if one was made from the same candidate set (`checksum`).
    pub(crate) fn get(&mut self, key: &str, checksum: &str) -> Option<String> {
        self.load();
        let hit = self.entries.get(&format!("{}{key}", self.prefix)).filter(|e| e.candidates == checksum).map(|e| e.choice.clone());
        if hit.is_some() {
            self.stats.reused += 1;
        }
        hit
    }

    /// This adapter's choices known so far (read from the file or measured), by shape key.
    pub(crate) fn choices(&mut self) -> BTreeMap<String, TuneEntry> {
        self.load();
        self.entries.iter().filter_map(|(k, e)| k.strip_prefix(&self.prefix).map(|k| (k.to_string(), e.clone()))).collect()
    }

    pub(crate) fn insert(&mut self, key: &str, entry: TuneEntry) {
        self.load();
        self.entries.insert(format!("{}{key}", self.prefix), entry);
        self.stats.measured += 1;
        self.dirty = true;
    }

    /// Writes the file (whole, atomically) when something new was measured. Entries of other
    /// adapters in the file are kept.
    pub(crate) fn save(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let Some(path) = self.stats.path.clone() else { return };
        let doc = TuneFile { format: FORMAT.into(), entries: self.entries.clone() };
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("json.{}.partial", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            self.stats.cache_error = Some(format!("{}: cannot write: {e}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_keeps_other_adapters() {
        let dir = std::env::temp_dir().join(format!("tessera-tune-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("tuning.json");
        let entry = |c: &str| TuneEntry { choice: c.into(), candidates: "set1".into(), ms: BTreeMap::from([(c.to_string(), 1.0)]) };
        let mut a = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(a.get("matmul 1x2x3", "set1"), None);
        a.insert("matmul 1x2x3", entry("32x64"));
        a.save();
        let mut b = TuneCache::new("gpu B | Vulkan | 2.0", Some(path.clone()));
        assert_eq!(b.get("matmul 1x2x3", "set1"), None, "another adapter's choice is not reused");
        b.insert("matmul 1x2x3", entry("64x64"));
        b.save();
        let mut a2 = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(a2.get("matmul 1x2x3", "set1").as_deref(), Some("32x64"));
        assert_eq!(a2.stats.reused, 1);
        // Another candidate set (a new kernel) does not reuse the old choice.
        assert_eq!(a2.get("matmul 1x2x3", "set2"), None);
        // A corrupt file is reported and replaced, never fatal.
        std::fs::write(&path, b"{ not json").unwrap();
        let mut c = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(c.get("matmul 1x2x3", "set1"), None);
        assert!(c.stats.cache_error.as_deref().unwrap_or("").contains("not a tuning cache"));
        c.insert("matmul 1x2x3", entry("128x128"));
        c.save();
        assert_eq!(TuneCache::new("gpu A | Vulkan | 1.0", Some(path)).get("matmul 1x2x3", "set1").as_deref(), Some("128x128"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
