//! One point of a schedule's space, and the checks that tie it to its description.

use std::fmt;

use crate::{KernelDesc, Param, rules};

/// A concrete schedule: what codegen needs besides the description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub block_q: u32,
    pub block_kv: u32,
    pub warps: u32,
    pub stages: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("kernel `{kernel}` has no valid config in its tuning space")]
    EmptySpace { kernel: &'static str },
    #[error("`{0}` is not `key=value`")]
    Syntax(String),
    #[error("unknown config key `{0}` (known: block_q, block_kv, warps, stages)")]
    UnknownKey(String),
    #[error("config key `{key}` has value `{value}`, which is not a number")]
    NotANumber { key: String, value: String },
    #[error("{key} = {value} is outside kernel `{kernel}`'s tuning space {space}")]
    OutsideSpace { kernel: &'static str, key: &'static str, value: u32, space: String },
    #[error("{0}")]
    Rule(String),
}

impl Config {
    pub fn threads(&self) -> u32 {
        self.warps * 32
    }

    /// Fields by name, in a fixed order (for printing, parsing and cache keys).
    pub fn fields(&self) -> [(&'static str, u32); 4] {
        [
            ("block_q", self.block_q),
            ("block_kv", self.block_kv),
            ("warps", self.warps),
            ("stages", self.stages),
        ]
    }

    fn field_mut(&mut self, key: &str) -> Option<(&'static str, &mut u32)> {
        Some(match key {
            "block_q" => ("block_q", &mut self.block_q),
            "block_kv" => ("block_kv", &mut self.block_kv),
            "warps" => ("warps", &mut self.warps),
            "stages" => ("stages", &mut self.stages),
            _ => return None,
        })
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl KernelDesc {
    /// Checks a config against the rules and against this kernel's declared space.
    pub fn check_config(&self, cfg: &Config) -> Result<(), ConfigError> {
        rules::check_block_q(cfg.block_q).map_err(ConfigError::Rule)?;
        rules::check_block_kv(cfg.block_kv).map_err(ConfigError::Rule)?;
        rules::check_warps(cfg.warps).map_err(ConfigError::Rule)?;
        rules::check_stages(cfg.stages).map_err(ConfigError::Rule)?;
        rules::check_combination(cfg.block_q, cfg.warps).map_err(ConfigError::Rule)?;
        let s = &self.schedule;
        let spaces: [(&'static str, u32, &Param); 4] = [
            ("block_q", cfg.block_q, &s.block_q),
            ("block_kv", cfg.block_kv, &s.block_kv),
            ("warps", cfg.warps, &s.warps),
            ("stages", cfg.stages, &s.stages),
        ];
        for (key, value, space) in spaces {
            if !space.contains(value) {
                return Err(ConfigError::OutsideSpace {
                    kernel: self.name,
                    key,
                    value,
                    space: space.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Parses `key=value,...` over the default config, then checks the result.
    pub fn parse_config(&self, text: &str) -> Result<Config, ConfigError> {
        let mut cfg = self.default_config().ok_or(ConfigError::EmptySpace { kernel: self.name })?;
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) =
                item.split_once('=').ok_or_else(|| ConfigError::Syntax(item.to_string()))?;
            let (key, value) = (key.trim(), value.trim());
            let (_, slot) =
                cfg.field_mut(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
            *slot = value.parse().map_err(|_| ConfigError::NotANumber {
                key: key.to_string(),
                value: value.to_string(),
            })?;
        }
        self.check_config(&cfg)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dtype, Layout, Load, Schedule, Visit};

    const DESC: KernelDesc = KernelDesc {
        name: "t",
        head_dim: 128,
        dtype: Dtype::Bf16,
        layout: Layout::Bhsd,
        visit: Visit::Dense,
        load: Load::Dense,
        schedule: Schedule {
            block_q: Param::Choices(&[64, 128]),
            block_kv: Param::Fixed(64),
            warps: Param::Choices(&[4, 8]),
            stages: Param::Choices(&[1, 2]),
        },
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
        assert_eq!((cfg.block_q, cfg.warps, cfg.stages), (128, 8, 1));
        assert!(matches!(DESC.parse_config("warps=2"), Err(ConfigError::OutsideSpace { .. })));
        assert!(matches!(DESC.parse_config("tile=2"), Err(ConfigError::UnknownKey(_))));
        assert!(matches!(DESC.parse_config("warps"), Err(ConfigError::Syntax(_))));
        assert!(matches!(DESC.parse_config("warps=x"), Err(ConfigError::NotANumber { .. })));
        assert_eq!(DESC.parse_config(&cfg.to_string()).unwrap(), cfg);
    }
}
