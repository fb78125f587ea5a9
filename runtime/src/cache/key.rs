//! The cache key: a SHA-256 of a canonical text of everything the PTX depends on.
//!
//! The text is written field by field rather than taken from `Hash` or `Debug`: derived hashes
//! are not stable across Rust versions (and `RandomState` is seeded per process), and `Debug`
//! output may change when a type gains a field. Entries outlive the process, so the key must be
//! a function of the inputs alone.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};
use tessera_codegen::Target;
use tessera_desc::{Config, KernelDesc, Visit};

/// The LLVM major version codegen links. Nothing in the runtime's dependencies reports it, so it
/// is kept here by hand; it must match the `llvm22-1` feature of inkwell in the workspace
/// manifest (a test checks that), since another LLVM may emit different PTX for the same IR.
pub const LLVM_MAJOR: &str = "22";

/// Version of the canonical text itself: bumped when its format changes, so old entries are
/// simply never looked up again instead of being misread.
const FORMAT: &str = "tessera-ptx-key v1";

/// A hex-encoded SHA-256 of [`key_text`]; also the entry's file stem.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    pub fn of(desc: &KernelDesc, cfg: &Config, target: Target) -> Key {
        Key::from_text(&key_text(desc, cfg, target))
    }

    pub(super) fn from_text(text: &str) -> Key {
        Key(sha256_hex(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical text hashed into a [`Key`], for this build of tessera and LLVM. The version
/// carries codegen's source fingerprint, so a changed lowering never reads older PTX.
pub fn key_text(desc: &KernelDesc, cfg: &Config, target: Target) -> String {
    canonical(desc, cfg, target, &tessera_version(), LLVM_MAJOR)
}

/// tessera's version with codegen's source fingerprint: what every persistent key carries, so
/// that nothing generated or measured by another lowering is ever reused.
pub(crate) fn tessera_version() -> String {
    format!("{}+{}", env!("CARGO_PKG_VERSION"), tessera_codegen::FINGERPRINT)
}

/// One `name=value` line per input.
pub(super) fn canonical(
    desc: &KernelDesc,
    cfg: &Config,
    target: Target,
    tessera_version: &str,
    llvm_major: &str,
) -> String {
    let s = &desc.schedule;
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(t, "{FORMAT}");
    let _ = writeln!(t, "tessera={tessera_version:?}");
    let _ = writeln!(t, "llvm={llvm_major:?}");
    let _ = writeln!(t, "target={}", target.name());
    t.push_str(&kernel_lines(desc));
    // `Param`'s Display keeps `64` (fixed) apart from `[64]` (one choice).
    let _ = writeln!(t, "schedule.q_tile={}", tessera_desc::tile_space(&s.q_tile));
    let _ = writeln!(t, "schedule.kv_tile={}", tessera_desc::tile_space(&s.kv_tile));
    let _ = writeln!(t, "schedule.warps={}", s.warps);
    let _ = writeln!(t, "schedule.stages={}", s.stages);
    let _ = writeln!(t, "config={cfg}");
    t
}

/// The lines naming what a kernel computes, without its tuning space: shared with the tuning
/// key, whose records are per config and so must survive a change of the space. The name is
/// written with `{:?}` so that a name holding a newline or `=` cannot make two different
/// descriptions print the same text.
pub(crate) fn kernel_lines(desc: &KernelDesc) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "kernel.name={:?}", desc.name);
    let _ = writeln!(t, "kernel.head_dim={}", desc.head_dim);
    let _ = writeln!(t, "kernel.dtype={}", desc.dtype.name());
    let _ = writeln!(t, "kernel.layout={}", desc.layout.name());
    let _ = writeln!(t, "kernel.visit={}", desc.visit.name());
    // Only for the visits with parameters, so that the text (and every stored key) of the
    // others is unchanged. A block-sparse kernel's causality changes its code (review find: two
    // kernels differing in it shared PTX).
    match desc.visit {
        Visit::Window(w) => {
            let _ = writeln!(t, "kernel.window={w}");
        }
        Visit::Blocks(b) => {
            let _ = writeln!(t, "kernel.blocks={b}");
        }
        _ => {}
    }
    let _ = writeln!(t, "kernel.load={}", desc.load);
    t
}

/// Hex SHA-256 of a text: how every persistent key in tessera is made.
pub(crate) fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
