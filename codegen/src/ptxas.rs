//! Runs NVIDIA's `ptxas` on PTX text, so that emitted kernels are checked (and their register,
//! shared-memory and spill budgets read) on machines without a GPU.
//!
//! LLVM's NVPTX backend accepts things the driver rejects (unknown `llvm.*` intrinsics become
//! `.extern .func` calls, inline PTX is not checked at all), so ptxas is the real gate. The
//! pinned wheel (CUDA 13.0.88) matches the GPU machine's driver: it rejects exactly what the
//! driver's JIT would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming the ptxas binary; wins over every other location.
pub const PTXAS_ENV: &str = "TESSERA_PTXAS";

/// Where `scripts/setup` puts its ptxas venv, relative to the workspace root.
const TOOLS_VENV: &str = ".tools/ptxas";

#[derive(Debug, thiserror::Error)]
pub enum PtxasError {
    #[error(
        "ptxas not found (looked in: {searched}); run scripts/setup (it installs ptxas into \
         .tools/ptxas) or set {PTXAS_ENV} to the ptxas binary"
    )]
    NotFound { searched: String },
    #[error(
        "{PTXAS_ENV}={0} is not an executable file; fix it or unset it to search .tools/ptxas and PATH"
    )]
    BadEnv(PathBuf),
    #[error("invalid ptxas arch {0:?}: expected something like sm_80 or sm_90a")]
    BadArch(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ptxas -arch={arch} failed ({status}):\n{stderr}")]
    Failed {
        arch: String,
        status: String,
        stderr: String,
    },
    #[error("unexpected ptxas -v output ({reason}):\n{output}")]
    Parse { reason: String, output: String },
}

/// Resources ptxas reported for one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Entry functions in the order ptxas reported them.
    pub kernels: Vec<KernelResources>,
    /// `ptxas warning` lines (e.g. "Registers are spilled to local memory"): a kernel that
    /// assembles can still be one we do not want.
    pub warnings: Vec<String>,
    /// Numbered `ptxas info` notes about the code, such as (C7519) "warpgroup.arrive is
    /// injected": ptxas repaired a wgmma register hazard by serializing the wgmmas.
    pub notes: Vec<String>,
}

impl Resources {
    pub fn kernel(&self, name: &str) -> Option<&KernelResources> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

/// Per-entry figures from `ptxas -v`. Fields ptxas did not print are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub barriers: u32,
    /// Static shared memory (`.shared` declarations); dynamic shared memory is a launch
    /// parameter and never appears here.
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    /// Stack including callees that were not inlined (`bytes cumulative stack size`).
    pub cumulative_stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    /// Constant bank 0 (`cmem[0]`, kernel parameters and driver constants). sm_90 and later
    /// often omit the line, which then reads 0.
    pub const_bytes: u32,
}

/// Locates ptxas: `$TESSERA_PTXAS`, then the `.tools/ptxas` venv made by `scripts/setup` (next to
/// this crate's workspace, or in the current directory or one of its ancestors), then `PATH`.
pub fn find() -> Result<PathBuf, PtxasError> {
    if let Some(value) = std::env::var_os(PTXAS_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        // A set but wrong variable is an error rather than a fallback: silently using another
        // ptxas would check against a different CUDA version than the one asked for.
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(PtxasError::BadEnv(path))
        };
    }

    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(ws) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        roots.push(ws.to_path_buf());
    }
    // The compile-time path is wrong once a binary is carried to another machine or the tree is
    // moved, so also look where the user runs from.
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    let mut searched = Vec::new();
    for root in &roots {
        let venv = root.join(TOOLS_VENV);
        if let Some(p) = venv_ptxas(&venv) {
            return Ok(p);
        }
        if !searched.contains(&venv) {
            searched.push(venv);
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("ptxas");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }

    let mut searched: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    searched.insert(0, format!("${PTXAS_ENV} (unset)"));
    searched.push("PATH".to_string());
    Err(PtxasError::NotFound {
        searched: searched.join(", "),
    })
}

/// `<venv>/lib/python3*/site-packages/nvidia/cu13/bin/ptxas`; the python minor version depends
/// on the machine that made the venv, hence the scan.
fn venv_ptxas(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut candidates: Vec<PathBuf> = lib
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/nvidia/cu13/bin/ptxas"))
        .filter(|p| is_executable(p))
        .collect();
    // Deterministic choice if a venv was ever rebuilt with another python.
    candidates.sort();
    candidates.pop()
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Assembles `ptx` for `arch` (e.g. "sm_80", "sm_90a") with the ptxas that [`find`] locates.
pub fn assemble(ptx: &str, arch: &str) -> Result<Resources, PtxasError> {
    assemble_with(&find()?, ptx, arch)
}

/// As [`assemble`], with an explicit ptxas binary.
pub fn assemble_with(ptxas: &Path, ptx: &str, arch: &str) -> Result<Resources, PtxasError> {
    check_arch(arch)?;
    let dir = TempDir::new()?;
    let ptx_path = dir.path.join("kernel.ptx");
    let cubin_path = dir.path.join("kernel.cubin");
    std::fs::write(&ptx_path, ptx).map_err(|source| PtxasError::Io {
        context: format!("writing {}", ptx_path.display()),
        source,
    })?;

    let output = Command::new(ptxas)
        .arg("-v")
        .arg(format!("-arch={arch}"))
        .arg(&ptx_path)
        .arg("-o")
        .arg(&cubin_path)
        .output()
        .map_err(|source| PtxasError::Io {
            context: format!("running {}", ptxas.display()),
            source,
        })?;

    // ptxas writes -v output and diagnostics to stderr; stdout is normally empty, but keep both so
    // nothing it says is lost.
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text.push_str(&stdout);
    }
    if !output.status.success() {
        return Err(PtxasError::Failed {
            arch: arch.to_string(),
            status: output.status.to_string(),
            stderr: text,
        });
    }
    parse_verbose(&text)
}

fn check_arch(arch: &str) -> Result<(), PtxasError> {
    let ok = arch.strip_prefix("sm_").is_some_and(|rest| {
        let digits = rest.trim_end_matches(|c: char| c.is_ascii_lowercase());
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(PtxasError::BadArch(arch.to_string()))
    }
}

/// Parses the stderr of `ptxas -v`.
///
/// Properties are keyed by function name because ptxas also prints `Function properties for`
/// blocks for device functions (even inlined ones), interleaved with the entries' blocks; only
/// names introduced by `Compiling entry function` become kernels.
pub fn parse_verbose(text: &str) -> Result<Resources, PtxasError> {
    let parse_err = |reason: String| PtxasError::Parse {
        reason,
        output: text.to_string(),
    };
    let mut resources = Resources::default();
    // The function the following indented/`Used` lines describe.
    let mut current: Option<String> = None;
    let mut frames: Vec<(String, [u32; 3])> = Vec::new();

    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("ptxas warning") {
            resources
                .warnings
                .push(rest.trim_start_matches([' ', ':']).trim().to_string());
            continue;
        }
        let Some(info) = trimmed.strip_prefix("ptxas info") else {
            if trimmed.contains("bytes stack frame") {
                let name = current
                    .clone()
                    .ok_or_else(|| parse_err("stack frame line before any function".into()))?;
                frames.push((name, parse_frame(trimmed).map_err(parse_err)?));
            }
            continue;
        };
        let info = info.trim_start_matches([' ', ':']).trim();

        if info.starts_with("(C") {
            resources.notes.push(info.to_string());
        } else if let Some(rest) = info.strip_prefix("Compiling entry function") {
            let name =
                quoted(rest).ok_or_else(|| parse_err(format!("no quoted name in {info:?}")))?;
            resources.kernels.push(KernelResources {
                name: name.clone(),
                ..Default::default()
            });
            current = Some(name);
        } else if let Some(rest) = info.strip_prefix("Function properties for") {
            current = Some(rest.trim().to_string());
        } else if info.starts_with("Used ") {
            let Some(name) = &current else {
                return Err(parse_err("`Used` line before any function".into()));
            };
            // Device functions compiled separately get `Used` lines too; they are not kernels.
            if let Some(k) = resources.kernels.iter_mut().rev().find(|k| &k.name == name) {
                parse_used(info, k).map_err(parse_err)?;
            }
        }
    }

    for (name, [stack, stores, loads]) in frames {
        if let Some(k) = resources.kernels.iter_mut().find(|k| k.name == name) {
            k.stack_bytes = stack;
            k.spill_stores = stores;
            k.spill_loads = loads;
        }
    }
    Ok(resources)
}

fn quoted(s: &str) -> Option<String> {
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(s[start..start + len].to_string())
}

/// `0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads`
fn parse_frame(line: &str) -> Result<[u32; 3], String> {
    let mut out = [0u32; 3];
    for item in line.split(',') {
        let (n, what) = leading_number(item)?;
        match what {
            "bytes stack frame" => out[0] = n,
            "bytes spill stores" => out[1] = n,
            "bytes spill loads" => out[2] = n,
            _ => {}
        }
    }
    Ok(out)
}

/// `Used 168 registers, used 1 barriers, 128 bytes smem, 400 bytes cmem[0]`; unknown items (new
/// ptxas versions add some) are ignored.
fn parse_used(line: &str, k: &mut KernelResources) -> Result<(), String> {
    for item in line.split(',') {
        let item = item.trim();
        let lower = item.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("used ") {
            let (n, what) = leading_number(rest)?;
            match what {
                "registers" | "register" => k.registers = n,
                "barriers" | "barrier" => k.barriers = n,
                _ => {}
            }
        } else if lower.starts_with(|c: char| c.is_ascii_digit()) {
            let (n, what) = leading_number(item)?;
            match what {
                "bytes smem" => k.shared_bytes = n,
                "bytes cmem[0]" => k.const_bytes = n,
                "bytes cumulative stack size" => k.cumulative_stack_bytes = n,
                _ => {}
            }
        }
    }
    Ok(())
}

fn leading_number(item: &str) -> Result<(u32, &str), String> {
    let item = item.trim();
    let end = item
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(item.len());
    let n = item[..end]
        .parse::<u32>()
        .map_err(|e| format!("bad number in {item:?}: {e}"))?;
    Ok((n, item[end..].trim()))
}

/// A private directory per call, so parallel tests and processes never share file names.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<Self, PtxasError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last_err = None;
        for _ in 0..16 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("tessera-ptxas-{}-{n}-{nanos}", std::process::id()));
            // create_dir (not create_dir_all) fails on an existing name, so a collision is
            // detected instead of two callers sharing a directory.
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(source) => {
                    return Err(PtxasError::Io {
                        context: format!("creating {}", path.display()),
                        source,
                    });
                }
            }
        }
        Err(PtxasError::Io {
            context: format!("creating a temporary directory in {}", base.display()),
            source: last_err.unwrap_or_else(|| std::io::Error::other("name collisions")),
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from ptxas 13.0.88 (-v, sm_80) on a module with two entries and a device function,
    // plus a spilling kernel and a warning to cover the other fields.
    const SAMPLE: &str = "\
ptxas warning : Registers are spilled to local memory in function 'spilly', 8 bytes spill stores, 8 bytes spill loads
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'empty' for 'sm_80'
ptxas info    : Function properties for empty
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 4 registers, used 0 barriers, 352 bytes cmem[0]
ptxas info    : Compile time = 7.588 ms
ptxas info    : Compiling entry function 'attn_fwd' for 'sm_80'
ptxas info    : Function properties for attn_fwd
    64 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 128 bytes smem, 64 bytes cumulative stack size, 400 bytes cmem[0]
ptxas info    : Compile time = 1.093 ms
ptxas info    : Function properties for helper
    16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'spilly' for 'sm_80'
ptxas info    : Function properties for spilly
    8 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers, 49152 bytes smem, 360 bytes cmem[0]
ptxas info    : Compile time = 3.000 ms
";

    #[test]
    fn ptxas_parses_verbose_output() {
        let r = parse_verbose(SAMPLE).expect("parse");
        let names: Vec<&str> = r.kernels.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            ["empty", "attn_fwd", "spilly"],
            "device function `helper` is no kernel"
        );
        assert_eq!(
            r.kernel("empty").unwrap(),
            &KernelResources {
                name: "empty".into(),
                registers: 4,
                const_bytes: 352,
                ..Default::default()
            }
        );
        assert_eq!(
            r.kernel("attn_fwd").unwrap(),
            &KernelResources {
                name: "attn_fwd".into(),
                registers: 168,
                barriers: 1,
                shared_bytes: 128,
                stack_bytes: 64,
                cumulative_stack_bytes: 64,
                spill_stores: 0,
                spill_loads: 0,
                const_bytes: 400,
            }
        );
        let s = r.kernel("spilly").unwrap();
        assert_eq!(
            (s.registers, s.shared_bytes, s.stack_bytes),
            (255, 49152, 8)
        );
        assert_eq!((s.spill_stores, s.spill_loads), (8, 8));
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].starts_with("Registers are spilled"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn ptxas_parses_sm90_output_without_cmem_or_smem() {
        let text = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k' for 'sm_90a'
ptxas info    : Function properties for k
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 1 barriers
ptxas info    : Compile time = 1.123 ms
";
        let r = parse_verbose(text).expect("parse");
        assert_eq!(r.kernels.len(), 1);
        let k = &r.kernels[0];
        assert_eq!(
            (k.registers, k.barriers, k.shared_bytes, k.const_bytes),
            (8, 1, 0, 0)
        );
    }

    #[test]
    fn ptxas_rejects_garbage_numbers() {
        let text = "ptxas info    : Compiling entry function 'k' for 'sm_80'\n\
                    ptxas info    : Used 99999999999 registers\n";
        assert!(matches!(parse_verbose(text), Err(PtxasError::Parse { .. })));
    }

    #[test]
    fn ptxas_arch_is_validated() {
        for ok in ["sm_80", "sm_90a", "sm_100a", "sm_89"] {
            assert!(check_arch(ok).is_ok(), "{ok}");
        }
        for bad in ["", "sm_", "80", "compute_80", "sm_80 -O0", "sm_a"] {
            assert!(
                matches!(check_arch(bad), Err(PtxasError::BadArch(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ptxas_temp_dirs_are_unique_and_removed() {
        let a = TempDir::new().expect("temp dir");
        let b = TempDir::new().expect("temp dir");
        assert_ne!(a.path, b.path);
        std::fs::write(a.path.join("x.ptx"), "x").expect("write");
        let path = a.path.clone();
        drop(a);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    /// Returns ptxas, or None when the test should skip. With TESSERA_REQUIRE_PTXAS=1 (CI) a
    /// missing ptxas is a failure: a silently skipped gate is no gate.
    fn ptxas_or_skip() -> Option<PathBuf> {
        match find() {
            Ok(p) => Some(p),
            Err(e) => {
                if std::env::var("TESSERA_REQUIRE_PTXAS").is_ok_and(|v| v == "1") {
                    panic!("TESSERA_REQUIRE_PTXAS=1 but {e}");
                }
                eprintln!("ptxas not found: skipping ({e})");
                None
            }
        }
    }

    const TINY: &str = "\
.version 8.0
.target sm_80
.address_size 64

.visible .entry tiny()
{
    ret;
}

.visible .entry with_smem(
    .param .u64 out
)
{
    .reg .b32 %r<3>;
    .reg .b64 %rd<3>;
    .shared .align 4 .b8 buf[128];
    ld.param.u64 %rd1, [out];
    cvta.to.global.u64 %rd2, %rd1;
    mov.u32 %r1, %tid.x;
    st.shared.u32 [buf], %r1;
    bar.sync 0;
    ld.shared.u32 %r2, [buf+4];
    st.global.u32 [%rd2], %r2;
    ret;
}
";

    #[test]
    fn ptxas_assembles_tiny_kernel() {
        let Some(ptxas) = ptxas_or_skip() else { return };
        for arch in ["sm_80", "sm_90a"] {
            let r = assemble_with(&ptxas, TINY, arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            let names: Vec<&str> = r.kernels.iter().map(|k| k.name.as_str()).collect();
            assert_eq!(names.len(), 2, "{arch}: {r:?}");
            assert!(
                names.contains(&"tiny") && names.contains(&"with_smem"),
                "{arch}: {r:?}"
            );
            let k = r.kernel("with_smem").unwrap();
            assert_eq!(k.shared_bytes, 128, "{arch}: {k:?}");
            assert_eq!(k.barriers, 1, "{arch}: {k:?}");
            assert!(k.registers > 0, "{arch}: {k:?}");
            assert_eq!((k.spill_stores, k.spill_loads), (0, 0));
        }
    }

    #[test]
    fn ptxas_error_carries_stderr() {
        let Some(ptxas) = ptxas_or_skip() else { return };
        let bad = TINY.replace(
            "ret;\n}\n\n.visible",
            "frobnicate.u32 %r9;\n    ret;\n}\n\n.visible",
        );
        match assemble_with(&ptxas, &bad, "sm_80") {
            Err(PtxasError::Failed { stderr, .. }) => {
                assert!(
                    stderr.contains("frobnicate") || stderr.contains("error"),
                    "{stderr}"
                );
            }
            other => panic!("expected a ptxas failure, got {other:?}"),
        }
    }

    #[test]
    fn ptxas_concurrent_calls_do_not_collide() {
        let Some(ptxas) = ptxas_or_skip() else { return };
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ptxas = ptxas.clone();
                std::thread::spawn(move || {
                    assemble_with(&ptxas, TINY, "sm_80").map(|r| r.kernels.len())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("thread").expect("assemble"), 2);
        }
    }
}
