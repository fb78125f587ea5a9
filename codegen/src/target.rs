//! GPU targets and the PTX ISA version pinned for each.

use std::fmt;

use tessera_desc::Mma;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Ampere and later through the driver's JIT.
    Sm80,
    /// Hopper only: the architecture-specific features (wgmma, setmaxnreg) are allowed.
    Sm90a,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Sm80, Target::Sm90a];

    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm90a => "sm_90a",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The tensor-core instruction families the target has, the portable one first.
    pub fn mma_families(self) -> &'static [Mma] {
        match self {
            Target::Sm80 => &[Mma::Sync],
            Target::Sm90a => &[Mma::Sync, Mma::Wgmma],
        }
    }

    /// PTX ISA 8.0 for both: the minimum for sm_90a, and accepted by every driver since
    /// CUDA 12.0 (the CUDA 13.0 driver takes up to 9.0). Inline PTX must stay within it.
    pub fn ptx_feature(self) -> &'static str {
        "+ptx80"
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
