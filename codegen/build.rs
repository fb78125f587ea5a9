//! Fingerprints codegen's own source, so that caches of generated PTX (keyed by it) never serve
//! code from an older lowering with the same crate version.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut paths = Vec::new();
    files(Path::new("src"), &mut paths);
    paths.sort();
    // FNV-1a over (path, contents) pairs: stable across platforms and Rust versions.
    let mut h: u64 = 0xcbf29ce484222325;
    for p in &paths {
        let bytes = std::fs::read(p).unwrap_or_default();
        for b in p.to_string_lossy().bytes().chain(bytes) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    println!("cargo:rustc-env=TESSERA_CODEGEN_FINGERPRINT={h:016x}");
}
