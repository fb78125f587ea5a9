//! One point of a schedule's space, and the checks that tie it to its description.

use std::fmt;

use crate::schedule::shape_text;
use crate::{KernelDesc, Param, rules};

/// A concrete schedule: what codegen needs besides the description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Query tile extent per grid axis (a box of the grid; `[rows, 1, 1]` for token runs).
    pub q_tile: [u32; 3],
    /// KV tile extent per grid axis.
    pub kv_tile: [u32; 3],
    pub warps: u32,
    pub stages: u32,
    /// The tensor-core instruction. Not part of a kernel's declared schedule: which ones exist
    /// depends on the GPU, so the runtime adds the device's choices to the tuning space.
    pub mma: Mma,
}

/// Tensor-core instruction families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mma {
    /// `mma.sync` per warp: every GPU from sm_80 on.
    #[default]
    Sync,
    /// `wgmma.mma_async` per warpgroup of 4 warps, operands from shared memory: sm_90a only.
    Wgmma,
}

impl Mma {
    pub const ALL: [Mma; 2] = [Mma::Sync, Mma::Wgmma];

    pub fn name(self) -> &'static str {
        match self {
            Mma::Sync => "sync",
            Mma::Wgmma => "wgmma",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("kernel `{kernel}` has no valid config in its tuning space")]
    EmptySpace { kernel: &'static str },
    #[error("`{0}` is not `key=value`")]
    Syntax(String),
    #[error("unknown config key `{0}` (known: block_q, block_kv, q_tile, kv_tile, warps, stages, mma)")]
    UnknownKey(String),
    #[error("config key `{key}` has value `{value}`, which is not a number{shape}")]
    NotANumber { key: String, value: String, shape: &'static str },
    #[error("mma = `{0}` is not an instruction family (known: sync, wgmma)")]
    UnknownMma(String),
    #[error("{key} = {value} is outside kernel `{kernel}`'s tuning space {space}")]
    OutsideSpace { kernel: &'static str, key: String, value: u32, space: String },
    #[error("{0}")]
    Rule(String),
}

impl Config {
    /// A config whose tiles are runs of consecutive tokens.
    pub const fn line(block_q: u32, block_kv: u32, warps: u32, stages: u32) -> Config {
        Config { q_tile: [block_q, 1, 1], kv_tile: [block_kv, 1, 1], warps, stages, mma: Mma::Sync }
    }

    /// The same config with another instruction family.
    pub const fn with_mma(self, mma: Mma) -> Config {
        Config { mma, ..self }
    }

    /// Query rows per CTA (saturating: a huge shape from the command line fails the block
    /// rules instead of overflowing).
    pub fn block_q(&self) -> u32 {
        self.q_tile.iter().fold(1, |n, &e| n.saturating_mul(e))
    }

    /// Keys per KV tile (saturating, as `block_q`).
    pub fn block_kv(&self) -> u32 {
        self.kv_tile.iter().fold(1, |n, &e| n.saturating_mul(e))
    }

    pub fn threads(&self) -> u32 {
        self.warps * 32
    }

    /// Grid axes the tiles span: 1 for token runs.
    pub fn tile_axes(&self) -> usize {
        (1..3).rev().find(|&a| self.q_tile[a] > 1 || self.kv_tile[a] > 1).map_or(1, |a| a + 1)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tile_axes() {
            1 => write!(f, "block_q={},block_kv={}", self.block_q(), self.block_kv())?,
            n => write!(f, "q_tile={},kv_tile={}", shape_text(&self.q_tile, n), shape_text(&self.kv_tile, n))?,
        }
        write!(f, ",warps={},stages={}", self.warps, self.stages)?;
        // Left out for the default so that configs (and tuning records keyed by them) written
        // before the field existed read the same.
        match self.mma {
            Mma::Sync => Ok(()),
            other => write!(f, ",mma={}", other.name()),
        }
    }
}

fn number(key: &str, value: &str) -> Result<u32, ConfigError> {
    value.parse().map_err(|_| ConfigError::NotANumber { key: key.to_string(), value: value.to_string(), shape: "" })
}

/// `8x16` → `[8, 16, 1]`.
fn shape(key: &str, value: &str) -> Result<[u32; 3], ConfigError> {
    let bad = || ConfigError::NotANumber {
        key: key.to_string(),
        value: value.to_string(),
        shape: " or a shape such as `8x16`",
    };
    let parts: Vec<&str> = value.split('x').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let mut out = [1; 3];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = part.trim().parse().map_err(|_| bad())?;
    }
    Ok(out)
}

impl KernelDesc {
    /// Checks a config against the rules and against this kernel's declared space.
    pub fn check_config(&self, cfg: &Config) -> Result<(), ConfigError> {
        rules::check_block_q(cfg.block_q()).map_err(ConfigError::Rule)?;
        rules::check_block_kv(cfg.block_kv()).map_err(ConfigError::Rule)?;
        rules::check_warps(cfg.warps).map_err(ConfigError::Rule)?;
        rules::check_stages(cfg.stages).map_err(ConfigError::Rule)?;
        rules::check_combination(cfg.block_q(), cfg.warps).map_err(ConfigError::Rule)?;
        rules::check_mma(cfg.mma, cfg.warps, &self.load).map_err(ConfigError::Rule)?;
        rules::check_tile_axes(&self.visit, &cfg.q_tile, &cfg.kv_tile).map_err(ConfigError::Rule)?;
        rules::check_load(&self.load, &self.visit, &cfg.kv_tile).map_err(ConfigError::Rule)?;
        rules::check_blocks(&self.visit, &cfg.kv_tile).map_err(ConfigError::Rule)?;
        let s = &self.schedule;
        let mut spaces: Vec<(String, u32, &Param)> = Vec::new();
        for (name, tile, space) in [("q_tile", &cfg.q_tile, &s.q_tile), ("kv_tile", &cfg.kv_tile, &s.kv_tile)] {
            for a in 0..3 {
                spaces.push((format!("{name}[{a}]"), tile[a], &space[a]));
            }
        }
        spaces.push(("warps".into(), cfg.warps, &s.warps));
        spaces.push(("stages".into(), cfg.stages, &s.stages));
        for (key, value, space) in spaces {
            if !space.contains(value) {
                return Err(ConfigError::OutsideSpace { kernel: self.name, key, value, space: space.to_string() });
            }
        }
        Ok(())
    }

    /// Parses `key=value,...` over the default config, then checks the result. `block_q=N`
    /// means a run of N tokens; `q_tile=8x16` a box of the grid (likewise for KV).
    pub fn parse_config(&self, text: &str) -> Result<Config, ConfigError> {
        let mut cfg = self.default_config().ok_or(ConfigError::EmptySpace { kernel: self.name })?;
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| ConfigError::Syntax(item.to_string()))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "block_q" => cfg.q_tile = [number(key, value)?, 1, 1],
                "block_kv" => cfg.kv_tile = [number(key, value)?, 1, 1],
                "q_tile" => cfg.q_tile = shape(key, value)?,
                "kv_tile" => cfg.kv_tile = shape(key, value)?,
                "warps" => cfg.warps = number(key, value)?,
                "stages" => cfg.stages = number(key, value)?,
                "mma" => {
                    cfg.mma = Mma::ALL.into_iter().find(|m| m.name() == value).ok_or_else(|| ConfigError::UnknownMma(value.to_string()))?
                }
                _ => return Err(ConfigError::UnknownKey(key.to_string())),
            }
        }
        self.check_config(&cfg)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dtype, Layout, Load, Schedule, Visit, Window, WindowAxis};

    const DESC: KernelDesc = KernelDesc {
        name: "t",
        head_dim: 128,
        dtype: Dtype::Bf16,
        layout: Layout::Bhsd,
        visit: Visit::Dense,
        load: Load::Dense,
        schedule: Schedule::line(Param::Choices(&[64, 128]), Param::Fixed(64), Param::Choices(&[4, 8]), Param::Choices(&[1, 2])),
    };

    const AXIS: WindowAxis = WindowAxis { size: 7, dilation: 1, stride: 1, causal: false };
    const GRID: KernelDesc = KernelDesc {
        name: "g",
        visit: Visit::Window(Window { dims: 2, axes: [AXIS, AXIS, AXIS] }),
        schedule: Schedule {
            q_tile: [Param::Choices(&[8, 4]), Param::Fixed(16), Param::Fixed(1)],
            kv_tile: [Param::Fixed(8), Param::Choices(&[8, 16]), Param::Fixed(1)],
            warps: Param::Fixed(4),
            stages: Param::Fixed(2),
        },
        ..DESC
    };

    #[test]
    fn space_prunes_invalid_combinations() {
        // block_q=64 with 8 warps leaves a warp without a 16-row slab.
        assert_eq!(DESC.configs().len(), 6);
        assert!(DESC.configs().iter().all(|c| DESC.check_config(c).is_ok()));
    }

    #[test]
    fn parse_overrides_defaults_and_checks() {
        let cfg = DESC.parse_config("block_q=128, warps=8").unwrap();
        assert_eq!((cfg.block_q(), cfg.warps, cfg.stages), (128, 8, 1));
        assert!(matches!(DESC.parse_config("warps=2"), Err(ConfigError::OutsideSpace { .. })));
        assert!(matches!(DESC.parse_config("tile=2"), Err(ConfigError::UnknownKey(_))));
        assert!(matches!(DESC.parse_config("warps"), Err(ConfigError::Syntax(_))));
        assert!(matches!(DESC.parse_config("warps=x"), Err(ConfigError::NotANumber { .. })));
        assert_eq!(DESC.parse_config(&cfg.to_string()).unwrap(), cfg);
    }

    #[test]
    fn the_instruction_family_prints_only_when_not_the_default() {
        let cfg = DESC.parse_config("block_q=128,warps=4").unwrap();
        assert_eq!(cfg.to_string(), "block_q=128,block_kv=64,warps=4,stages=1");
        let wg = DESC.parse_config("block_q=128,warps=4,mma=wgmma").unwrap();
        assert_eq!((wg.mma, wg.to_string()), (Mma::Wgmma, "block_q=128,block_kv=64,warps=4,stages=1,mma=wgmma".to_string()));
        assert_eq!(DESC.parse_config(&wg.to_string()).unwrap(), wg);
        assert!(matches!(DESC.parse_config("mma=hmma"), Err(ConfigError::UnknownMma(_))));
        // A warpgroup is 4 warps.
        let two = KernelDesc { schedule: Schedule { warps: Param::Fixed(2), ..DESC.schedule }, ..DESC };
        assert!(matches!(two.parse_config("block_q=64,mma=wgmma"), Err(ConfigError::Rule(_))));
    }

    #[test]
    fn grid_tiles_print_and_parse_as_shapes() {
        let all = GRID.configs();
        // 4x16 = 64 query rows with 4 warps is valid, as is 8x16 = 128.
        assert_eq!(all.len(), 4);
        let cfg = all[0];
        assert_eq!((cfg.block_q(), cfg.block_kv()), (128, 64));
        assert_eq!(cfg.to_string(), "q_tile=8x16,kv_tile=8x8,warps=4,stages=2");
        for c in &all {
            assert_eq!(GRID.parse_config(&c.to_string()).unwrap(), *c);
        }
        assert_eq!(GRID.parse_config("kv_tile=8x16").unwrap().block_kv(), 128);
        assert!(matches!(GRID.parse_config("q_tile=8x8"), Err(ConfigError::OutsideSpace { .. })));
        assert!(matches!(GRID.parse_config("q_tile=8y16"), Err(ConfigError::NotANumber { .. })));
        assert!(matches!(GRID.parse_config("q_tile=1x1x1x1"), Err(ConfigError::NotANumber { .. })));
        assert!(matches!(GRID.parse_config("q_tile=65536x65536"), Err(ConfigError::Rule(_))));
    }
}
