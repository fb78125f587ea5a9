//! Helpers for testing your own kernels without a GPU: snapshot their PTX and gate it on ptxas.
//!
//! ```no_run
//! use tessera::testing;
//! use tessera::{Kernel, Target};
//!
//! #[tessera::attention(head_dim = 128, dtype = bf16, visit = causal, tile = (q = 64, kv = 64))]
//! pub struct MyCausal;
//!
//! #[test]
//! fn my_causal_ptx() {
//!     let cfg = testing::default_config::<MyCausal>();
//!     for target in Target::ALL {
//!         let ptx = testing::canonical_ptx::<MyCausal>(&cfg, target).unwrap();
//!         // Assembles with ptxas and has no spills (skipped with a message without ptxas).
//!         testing::check_ptxas(&ptx, target);
//!         insta::assert_snapshot!(format!("my_causal_{target}"), ptx);
//!     }
//! }
//! ```
//!
//! Set `TESSERA_REQUIRE_PTXAS=1` where ptxas must be present (CI, `scripts/test`): a missing
//! ptxas then fails the test instead of quietly switching the check off.

use tessera_codegen::ptxas::{self, PtxasError, Resources};
use tessera_codegen::{CodegenError, Stage, Target, canon};
use tessera_desc::{Config, Kernel};

/// Environment variable that turns a missing ptxas from a skip into a failure.
pub const REQUIRE_PTXAS_ENV: &str = "TESSERA_REQUIRE_PTXAS";

/// The kernel's PTX for `target` at `cfg`, canonicalized for snapshots: comments, the LLVM
/// version banner and column alignment removed (see [`tessera_codegen::canon::canonicalize`]).
pub fn canonical_ptx<K: Kernel>(cfg: &Config, target: Target) -> Result<String, CodegenError> {
    let ptx = tessera_codegen::emit(&K::DESC, cfg, target, Stage::Ptx)?;
    Ok(canon::canonicalize(&ptx))
}

/// The kernel's default config: the first valid one of its tuning space.
///
/// # Panics
///
/// If the space has no valid config, which `#[tessera::attention]` already rejects at compile
/// time; only a hand-written `KernelDesc` can get here.
pub fn default_config<K: Kernel>() -> Config {
    match K::DESC.default_config() {
        Some(cfg) => cfg,
        None => panic!(
            "kernel `{}` has no valid config in its tuning space",
            K::DESC.name
        ),
    }
}

/// Assembles `ptx` with ptxas for `target` and asserts that no kernel in it spills; returns every
/// entry's resources (registers, static shared memory, stack): a decode kernel's module also
/// holds its merge entry.
///
/// Returns `None`, after printing why, when ptxas is not installed, unless
/// `TESSERA_REQUIRE_PTXAS=1`. `scripts/setup` installs ptxas.
///
/// # Panics
///
/// With ptxas's message if it rejects the PTX; if a kernel spills registers; if ptxas is missing
/// while `TESSERA_REQUIRE_PTXAS=1`.
pub fn check_ptxas(ptx: &str, target: Target) -> Option<Resources> {
    let ptxas = match ptxas::find() {
        Ok(path) => path,
        Err(e @ PtxasError::NotFound { .. }) => {
            if std::env::var(REQUIRE_PTXAS_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_PTXAS_ENV}=1 but {e}");
            }
            eprintln!("ptxas not found: skipping the ptxas check");
            return None;
        }
        // A set but broken TESSERA_PTXAS is a mistake to fix, not a reason to skip.
        Err(e) => panic!("{e}"),
    };
    let resources = match ptxas::assemble_with(&ptxas, ptx, target.name()) {
        Ok(resources) => resources,
        Err(e) => panic!("{e}"),
    };
    for k in &resources.kernels {
        assert!(
            k.spill_stores == 0 && k.spill_loads == 0,
            "kernel `{}` spills on {target}: {} bytes stored, {} bytes loaded ({} registers)",
            k.name,
            k.spill_stores,
            k.spill_loads,
            k.registers,
        );
    }
    if resources.kernels.is_empty() {
        panic!("ptxas reported no kernel entry for {target}");
    }
    Some(resources)
}
