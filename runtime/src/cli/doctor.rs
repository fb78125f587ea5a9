//! `tessera doctor`: what this machine has of what tessera uses (the CUDA driver and GPUs,
//! LLVM's NVPTX backend, ptxas, the PTX cache and the tuning store), each with how to fix what
//! is missing. Exits non-zero when anything is not ok, so scripts can gate on it; everything
//! that works without the missing part is named (`emit` and `check` need no GPU).

use std::io::Write;
use std::path::Path;

use tessera_codegen::ptxas::{self, PTXAS_ENV};
use tessera_codegen::{Stage, Target, emit};

use super::table::Table;
use crate::cache::LLVM_MAJOR;
use crate::gpu::{Gpu, GpuError};
use crate::tune::{STORE_ENV, Store};
use crate::{Error, catalog};

/// The driver that first takes PTX ISA 8.0, which tessera emits (`Target::ptx_feature`).
const MIN_DRIVER: i32 = 12000;
/// The ptxas the project pins: the GPU machines' driver is CUDA 13.0, and a newer ptxas accepts
/// PTX that driver rejects.
const PINNED_PTXAS: &str = "13.0.88";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    Missing,
    Broken,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Broken => "broken",
        }
    }
}

struct Finding {
    check: &'static str,
    status: Status,
    detail: String,
    fix: String,
}

fn finding(check: &'static str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, status, detail: detail.into(), fix: fix.into() }
}

pub fn run(out: &mut dyn Write) -> Result<(), Error> {
    let mut findings = gpu();
    findings.extend([llvm(), ptxas_check(), ptx_cache(crate::cache::global()), tuning_store(&Store::from_env())]);
    let mut table = Table::new(vec!["check", "status", "detail", "fix"]);
    for f in &findings {
        table.row(vec![f.check.to_string(), f.status.name().to_string(), f.detail.clone(), f.fix.clone()]);
    }
    table.write(out).map_err(Error::Stdout)?;
    match findings.iter().filter(|f| f.status != Status::Ok).count() {
        0 => Ok(()),
        failed => Err(Error::CheckFailed { failed, total: findings.len() }),
    }
}

/// The driver, its version, and every GPU it shows.
fn gpu() -> Vec<Finding> {
    const NO_GPU: &str = "`emit` and `check` work without one; `run`, `bench` and `autotune` need it";
    // SAFETY: loading the driver library runs its initialisers, as cudarc's own load would.
    if unsafe { libloading::Library::new("libcuda.so.1") }.is_err() {
        let fix = format!("install the NVIDIA driver (CUDA 12.0 or newer); {NO_GPU}");
        return vec![finding("driver", Status::Missing, "libcuda.so.1 not found", fix)];
    }
    let mut version = 0;
    // SAFETY: the library is present (above); the call writes one int.
    let got = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) };
    let driver = match got {
        cudarc::driver::sys::CUresult::CUDA_SUCCESS if version >= MIN_DRIVER => {
            finding("driver", Status::Ok, format!("CUDA {}.{}", version / 1000, version % 1000 / 10), "")
        }
        cudarc::driver::sys::CUresult::CUDA_SUCCESS => finding(
            "driver",
            Status::Broken,
            format!("CUDA {}.{}: too old for PTX ISA 8.0", version / 1000, version % 1000 / 10),
            "update the NVIDIA driver to CUDA 12.0 or newer",
        ),
        e => finding("driver", Status::Broken, format!("cuDriverGetVersion: {e:?}"), "reinstall the NVIDIA driver"),
    };
    let mut out = vec![driver];
    let count = match cudarc::driver::CudaContext::device_count() {
        Ok(n) => n.max(0) as usize,
        // cuInit itself fails this way when no device is visible.
        Err(cudarc::driver::DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE)) => 0,
        Err(e) => {
            out.push(finding("gpu", Status::Broken, format!("cuInit: {e}"), "check `nvidia-smi`"));
            return out;
        }
    };
    if count == 0 {
        let fix = format!("check `nvidia-smi` and CUDA_VISIBLE_DEVICES; {NO_GPU}");
        out.push(finding("gpu", Status::Missing, "the driver shows no GPU", fix));
    }
    for ordinal in 0..count {
        out.push(match Gpu::open(ordinal).and_then(|g| g.target().map(|t| (g, t))) {
            Ok((g, target)) => {
                let (major, minor) = g.compute_capability;
                let detail = format!("{ordinal}: {}, sm_{major}{minor}, kernels for {target}", g.name);
                finding("gpu", Status::Ok, detail, "")
            }
            Err(GpuError::Unsupported(why)) => finding("gpu", Status::Broken, why, "tessera needs Ampere (sm_80) or newer"),
            Err(e) => finding("gpu", Status::Broken, format!("{ordinal}: {e}"), "check `nvidia-smi`"),
        });
    }
    out
}

/// LLVM's NVPTX backend, by generating one kernel's PTX.
fn llvm() -> Finding {
    let Some(desc) = catalog::all().first() else {
        return finding("llvm", Status::Broken, "the catalog is empty", "report this as a bug");
    };
    let generated = desc.default_config().ok_or_else(|| "no default config".to_string()).and_then(|cfg| {
        emit(desc, &cfg, Target::Sm80, Stage::Ptx).map_err(|e| e.to_string())
    });
    match generated {
        Ok(_) => finding("llvm", Status::Ok, format!("LLVM {LLVM_MAJOR} NVPTX: generated {}", desc.name), ""),
        Err(e) => finding(
            "llvm",
            Status::Broken,
            format!("codegen of {} failed: {e}", desc.name),
            format!("rebuild tessera against LLVM {LLVM_MAJOR} (scripts/setup installs llvm-{LLVM_MAJOR}-dev)"),
        ),
    }
}

fn ptxas_check() -> Finding {
    let fix = format!(
        "scripts/setup installs nvidia-cuda-nvcc=={PINNED_PTXAS} into .tools/ptxas, or set {PTXAS_ENV}; \
         `check` and spill pruning in `autotune` need it"
    );
    let path = match ptxas::find() {
        Ok(p) => p,
        Err(e) => return finding("ptxas", Status::Missing, e.to_string(), fix),
    };
    let version = std::process::Command::new(&path).arg("--version").output();
    let text = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return finding("ptxas", Status::Broken, format!("{} --version exited with {}", path.display(), o.status), fix),
        Err(e) => return finding("ptxas", Status::Broken, format!("{}: {e}", path.display()), fix),
    };
    let release = text.lines().find_map(|l| l.rsplit_once(", V").map(|(_, v)| v.trim().to_string()));
    match release {
        Some(v) if v == PINNED_PTXAS => finding("ptxas", Status::Ok, format!("{} ({v})", path.display()), ""),
        Some(v) => finding(
            "ptxas",
            Status::Broken,
            format!("{} is {v}, not the pinned {PINNED_PTXAS}: it may accept PTX the CUDA 13.0 driver rejects", path.display()),
            fix,
        ),
        None => finding("ptxas", Status::Broken, format!("{}: no version in `--version`", path.display()), fix),
    }
}

/// Whether tessera can create, write and remove a file in `dir` (created if missing).
fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::remove_file(&probe).map_err(|e| format!("{}: {e}", probe.display()))
}

fn ptx_cache(cache: &crate::cache::Cache) -> Finding {
    match cache.dir() {
        None => finding("ptx cache", Status::Ok, "memory only (TESSERA_CACHE_DIR is empty, or no cache directory)", ""),
        Some(dir) => match writable(dir) {
            Ok(()) => finding("ptx cache", Status::Ok, dir.display().to_string(), ""),
            Err(e) => finding(
                "ptx cache",
                Status::Broken,
                format!("not writable: {e}"),
                "fix the directory's permissions or point TESSERA_CACHE_DIR elsewhere (codegen then repeats in every process)",
            ),
        },
    }
}

fn tuning_store(store: &Store) -> Finding {
    let Some(path) = store.path() else {
        return finding("tuning store", Status::Ok, format!("disabled (${STORE_ENV} is empty)"), "");
    };
    let fix = format!("fix the permissions or point ${STORE_ENV} elsewhere (tuned configs are otherwise not remembered)");
    if let Some(dir) = path.parent()
        && let Err(e) = writable(dir)
    {
        return finding("tuning store", Status::Broken, format!("not writable: {e}"), fix);
    }
    match store.damage().and_then(|damage| Ok((damage, store.load()?))) {
        Ok((None, entries)) => finding("tuning store", Status::Ok, format!("{} ({} entries)", path.display(), entries.0.len()), ""),
        // Not fatal: the next write rebuilds the file from what could be read.
        Ok((Some(damage), entries)) => finding(
            "tuning store",
            Status::Broken,
            format!("{}: {damage}; {} entries readable", path.display(), entries.0.len()),
            "nothing: the next `tessera autotune` rewrites it (or `tessera cache clear`)",
        ),
        Err(e) => finding("tuning store", Status::Broken, e.to_string(), fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_unwritable_store_or_cache_is_reported_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tune.json");
        let fresh = tuning_store(&Store::at(&path));
        assert_eq!(fresh.status, Status::Ok, "{}", fresh.detail);
        std::fs::write(&path, b"{not json").unwrap();
        let corrupt = tuning_store(&Store::at(&path));
        assert_eq!(corrupt.status, Status::Broken);
        assert!(corrupt.detail.contains("corrupt") && !corrupt.fix.is_empty(), "{}", corrupt.detail);
        std::fs::write(&path, br#"{"format": "tessera-tune v0", "entries": {}}"#).unwrap();
        assert!(tuning_store(&Store::at(&path)).detail.contains("has format"));
        // A path under a file cannot be a directory.
        let blocked = path.join("cache");
        assert_eq!(ptx_cache(&crate::cache::Cache::at(&blocked)).status, Status::Broken);
        assert_eq!(tuning_store(&Store::at(blocked.join("tune.json"))).status, Status::Broken);
        assert_eq!(ptx_cache(&crate::cache::Cache::at(dir.path().join("ptx"))).status, Status::Ok);
    }

    #[test]
    fn codegen_is_checked_by_generating_a_kernel() {
        assert_eq!(llvm().status, Status::Ok);
    }
}
