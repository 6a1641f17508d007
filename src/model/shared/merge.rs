//! Token merging's dial (ToMe, Bolya et al. 2023): how many tokens each encoder layer merges
//! away, as ToMe's `r` (constant) or its decreasing schedule, and what that leaves per layer.
//! The graph ops are `ops::merge`; the encoder places them (`tower::encode`).

use crate::error::{Error, Result};

/// How `r` spreads over the layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeSchedule {
    /// `r` tokens in every layer (ToMe's `model.r = r`).
    #[default]
    Constant,
    /// From `2r` in the first layer down to 0 in the last (ToMe's `(r, -1.0)`, the paper's
    /// "decreasing schedule"): the same tokens merged in all, earlier.
    Decreasing,
}

impl std::str::FromStr for MergeSchedule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "constant" => Ok(MergeSchedule::Constant),
            "decreasing" => Ok(MergeSchedule::Decreasing),
            _ => Err(format!("merge schedule `{s}`: expected constant or decreasing")),
        }
    }
}

/// Token merging asked of a run: `r` tokens per layer on `schedule`; `r = 0` merges nothing.
/// Each layer merges at most half its unprotected tokens (ToMe's cap); class, distillation and
/// register tokens are never merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Merge {
    /// Tokens merged away per layer (before the cap).
    pub r: usize,
    /// How `r` spreads over the layers.
    pub schedule: MergeSchedule,
}

/// The largest `r` accepted (far beyond any cap: a layer merges at most half its tokens).
pub const MAX_R: usize = 1 << 20;

/// One layer's share of a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerMerge {
    /// Tokens entering the layer.
    pub tokens: usize,
    /// Tokens the schedule asks it to merge.
    pub asked: usize,
    /// Tokens it merges (`asked`, capped at half its unprotected tokens).
    pub r: usize,
}

impl Merge {
    /// No merging.
    pub const NONE: Merge = Merge { r: 0, schedule: MergeSchedule::Constant };

    /// `r` per layer on `schedule`, or an input error for an `r` past [`MAX_R`].
    pub fn new(r: usize, schedule: MergeSchedule) -> Result<Merge> {
        if r > MAX_R {
            return Err(Error::Input { name: "merge".into(), problem: format!("r = {r} is over {MAX_R}; a layer merges at most half its tokens") });
        }
        Ok(Merge { r, schedule })
    }

    /// Whether this merges anything.
    pub fn is_on(&self) -> bool {
        self.r > 0
    }

    /// Tokens asked of each of `layers` layers: ToMe's `parse_r` (its float arithmetic, in f64).
    pub fn per_layer(&self, layers: usize) -> Vec<usize> {
        let inflect: f64 = match self.schedule {
            MergeSchedule::Constant => 0.0,
            MergeSchedule::Decreasing => -1.0,
        };
        if layers <= 1 || inflect == 0.0 {
            return vec![self.r; layers];
        }
        let r = self.r as f64;
        let min = (r * (1.0 - inflect)).trunc();
        let max = 2.0 * r - min;
        let step = (max - min) / (layers - 1) as f64;
        (0..layers).map(|i| (min + step * i as f64).trunc().max(0.0) as usize).collect()
    }

    /// Each of `layers` layers' tokens and merge for an input of `tokens` tokens whose first
    /// `protected` are never merged.
    pub fn plan(&self, layers: usize, tokens: usize, protected: usize) -> Vec<LayerMerge> {
        let mut t = tokens;
        self.per_layer(layers)
            .into_iter()
            .map(|asked| {
                let r = asked.min(t.saturating_sub(protected) / 2);
                let l = LayerMerge { tokens: t, asked, r };
                t -= r;
                l
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_tomes_parse_r() {
        // parse_r(12, 8) and parse_r(12, (8, -1.0)) as ToMe computes them.
        assert_eq!(Merge { r: 8, schedule: MergeSchedule::Constant }.per_layer(12), vec![8; 12]);
        assert_eq!(Merge { r: 8, schedule: MergeSchedule::Decreasing }.per_layer(12), vec![16, 14, 13, 11, 10, 8, 7, 5, 4, 2, 1, 0]);
        assert_eq!(Merge { r: 13, schedule: MergeSchedule::Decreasing }.per_layer(12), vec![26, 23, 21, 18, 16, 14, 11, 9, 7, 4, 2, 0]);
    }

    #[test]
    fn plans_cap_at_half_the_unprotected_tokens() {
        let p = Merge { r: 60, schedule: MergeSchedule::Constant }.plan(3, 197, 1);
        assert_eq!(p.iter().map(|l| (l.tokens, l.r)).collect::<Vec<_>>(), vec![(197, 60), (137, 60), (77, 38)]);
        assert!(Merge::new(MAX_R + 1, MergeSchedule::Constant).is_err());
    }
}
