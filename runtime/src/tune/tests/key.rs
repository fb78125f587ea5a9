use tessera_desc::{KernelDesc, Param};

use super::super::{Bucket, KeyInfo, Problem, bucket_len};
use super::{dense, device, key, problem};
use crate::cache::sha256_hex;

#[test]
fn sequence_lengths_round_up_to_powers_of_two() {
    let cases = [
        (1, 1),
        (2, 2),
        (3, 4),
        (131, 256),
        (16384, 16384),
        (16385, 32768),
    ];
    for (n, bucket) in cases {
        assert_eq!(bucket_len(n), bucket, "{n}");
    }
    assert_eq!(bucket_len(usize::MAX), usize::MAX);
}

#[test]
fn the_bucket_keeps_head_dim_dtype_and_group_exact() {
    let p = "2,32,8,1000,3000".parse().unwrap();
    assert_eq!(
        Bucket::of(dense(), &p),
        Bucket {
            seq_q: 1024,
            seq_kv: 4096,
            head_dim: 128,
            dtype: "bf16".to_string(),
            group: 4,
            grid: None,
            planes: None,
        }
    );
}

#[test]
fn key_text_is_canonical_and_stable() {
    let info = KeyInfo {
        kernel: "k".to_string(),
        kernel_hash: "ab12".to_string(),
        bucket: Bucket {
            seq_q: 16384,
            seq_kv: 8192,
            head_dim: 128,
            dtype: "bf16".to_string(),
            group: 4,
            grid: None,
            planes: None,
        },
        device: device(13000),
        tessera: "1.2.3+f00".to_string(),
    };
    assert_eq!(
        info.canonical(),
        "tessera-tune-key v1\n\
         tessera=\"1.2.3+f00\"\n\
         kernel=\"k\"\n\
         kernel.hash=ab12\n\
         problem.seq_q=16384\n\
         problem.seq_kv=8192\n\
         problem.head_dim=128\n\
         problem.dtype=\"bf16\"\n\
         problem.group=4\n\
         device.name=\"Test GPU 80GB\"\n\
         device.cc=9.0\n\
         device.driver=13000\n"
    );
    // Pinned (checked with `sha256sum`): an id that changed between builds or runs would make
    // every stored winner unreachable.
    assert_eq!(
        info.id(),
        "fb848ed963d17633e1a38d6f0e7dc6061035ce737a1e5d6a1acc550bbcd47255"
    );
    assert_eq!(info.id(), sha256_hex(&info.canonical()));
}

#[test]
fn the_kernel_part_is_the_ptx_cache_s_description_hash() {
    let k = key("dense_bf16_d128", 4096);
    assert_eq!(k.kernel, "dense_bf16_d128");
    assert_eq!(
        k.kernel_hash,
        sha256_hex(&crate::cache::kernel_lines(dense()))
    );
    assert_eq!(
        k.tessera,
        format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            tessera_codegen::FINGERPRINT
        )
    );
    // Computed twice, the same: nothing per-process (hash seeds, addresses) leaks in.
    assert_eq!(k.id(), key("dense_bf16_d128", 4096).id());
}

#[test]
fn what_the_winner_depends_on_changes_the_key_and_nothing_else_does() {
    let base = KeyInfo::new(dense(), &problem(16384), &device(13000));
    let same_bucket = KeyInfo::new(dense(), &problem(9000), &device(13000));
    assert_eq!(base.id(), same_bucket.id());
    // Batch and heads are not part of the key (only the GQA group is).
    let more_rows = "8,64,64,16384,16384".parse().unwrap();
    assert_eq!(
        base.id(),
        KeyInfo::new(dense(), &more_rows, &device(13000)).id()
    );

    // A space that gains configs keeps its key: records are per config.
    static WIDER: KernelDesc = {
        let mut d = <crate::catalog::DenseBf16D128 as tessera_desc::Kernel>::DESC;
        d.schedule.warps = Param::Choices(&[8, 4, 2]);
        d
    };
    assert_eq!(WIDER.name, "dense_bf16_d128");
    assert_eq!(
        base.id(),
        KeyInfo::new(&WIDER, &problem(16384), &device(13000)).id()
    );

    let mut differ = vec![
        KeyInfo::new(dense(), &problem(16385), &device(13000)),
        KeyInfo::new(
            dense(),
            &"1,32,8,16384,16384".parse().unwrap(),
            &device(13000),
        ),
        KeyInfo::new(dense(), &problem(16384), &device(12080)),
        KeyInfo::new(
            crate::catalog::find("dense_f16_d128").unwrap(),
            &problem(16384),
            &device(13000),
        ),
        KeyInfo::new(
            crate::catalog::find("causal_bf16_d128").unwrap(),
            &problem(16384),
            &device(13000),
        ),
    ];
    let mut other_card = device(13000);
    other_card.name = "Other GPU".to_string();
    differ.push(KeyInfo::new(dense(), &problem(16384), &other_card));
    let mut other_cc = device(13000);
    other_cc.compute_capability = (8, 0);
    differ.push(KeyInfo::new(dense(), &problem(16384), &other_cc));
    let mut ids: Vec<String> = differ.iter().map(KeyInfo::id).collect();
    ids.push(base.id());
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn window_parameters_are_part_of_the_kernel() {
    use tessera_desc::{Visit, Window, WindowAxis};
    let with = |size| {
        let axis = WindowAxis {
            size,
            dilation: 1,
            stride: 1,
            causal: false,
        };
        let mut desc = *dense();
        desc.visit = Visit::Window(Window {
            dims: 1,
            axes: [axis; 3],
        });
        desc
    };
    let lines = crate::cache::kernel_lines(&with(7));
    assert!(
        lines.contains(
            "kernel.window=window(size = [7], dilation = [1], stride = [1], causal = [false])\n"
        ),
        "{lines}"
    );
    assert_ne!(lines, crate::cache::kernel_lines(&with(9)));
    let p = problem(4096);
    assert_ne!(
        KeyInfo::new(&with(7), &p, &device(13000)).id(),
        KeyInfo::new(&with(9), &p, &device(13000)).id()
    );
    // Other visits have no window line: their keys did not change when windows came.
    assert!(!crate::cache::kernel_lines(dense()).contains("window"));
}

#[test]
fn a_block_sparse_kernels_causality_and_estimate_are_part_of_the_kernel() {
    let sale = *crate::catalog::find("sale_causal_bf16_d128").unwrap();
    let tessera_desc::Visit::Blocks(b) = sale.visit else { panic!("not block-sparse") };
    let flipped = KernelDesc { visit: tessera_desc::Visit::Blocks(tessera_desc::Blocks { causal: !b.causal, ..b }), ..sale };
    let lines = crate::cache::kernel_lines(&sale);
    assert!(lines.contains("kernel.blocks="), "{lines}");
    assert_ne!(lines, crate::cache::kernel_lines(&flipped));
    let p = problem(4096);
    assert_ne!(KeyInfo::new(&sale, &p, &device(13000)).id(), KeyInfo::new(&flipped, &p, &device(13000)).id());
    let cfg = sale.default_config().unwrap();
    assert_ne!(crate::cache::Key::of(&sale, &cfg, tessera_codegen::Target::Sm90a), crate::cache::Key::of(&flipped, &cfg, tessera_codegen::Target::Sm90a));
    assert!(!crate::cache::kernel_lines(dense()).contains("blocks"));
}

fn na2d() -> &'static KernelDesc {
    crate::catalog::find("na2d_w13x13_d2x2_bf16_d128").expect("a catalog kernel")
}

#[test]
fn a_grid_is_exact_in_the_key_and_its_lengths_are_bucketed() {
    let p = "2,16,4,56x56".parse().unwrap();
    let b = Bucket::of(na2d(), &p);
    assert_eq!((b.seq_q, b.seq_kv, b.group), (4096, 4096, 4));
    assert_eq!(b.grid, p.grid);
    assert_eq!(
        b.to_string(),
        "seq_q <= 4096, seq_kv <= 4096, grid 56x56, head_dim 128, bf16, GQA group 4"
    );
    let id = |shape: &str| KeyInfo::new(na2d(), &shape.parse().unwrap(), &device(13000)).id();
    // Batch and heads stay out of the key, as for sequences.
    assert_eq!(id("2,16,4,56x56"), id("1,8,2,56x56"));
    // Grids of one token bucket, even of the same tokens, are keys of their own.
    let grids = ["1,8,2,56x56", "1,8,2,28x112", "1,8,2,57x57", "1,8,2,56x55"];
    let mut ids: Vec<String> = grids.iter().map(|g| id(g)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), grids.len());
}

#[test]
fn a_grid_adds_one_line_to_the_key_text_and_nothing_else_changes() {
    let mut info = KeyInfo::new(na2d(), &"1,8,2,56x56".parse().unwrap(), &device(13000));
    (info.kernel_hash, info.tessera) = ("ab12".to_string(), "1.2.3+f00".to_string());
    let text = info.canonical();
    assert_eq!(
        text,
        "tessera-tune-key v1\n\
         tessera=\"1.2.3+f00\"\n\
         kernel=\"na2d_w13x13_d2x2_bf16_d128\"\n\
         kernel.hash=ab12\n\
         problem.seq_q=4096\n\
         problem.seq_kv=4096\n\
         problem.grid=56x56\n\
         problem.head_dim=128\n\
         problem.dtype=\"bf16\"\n\
         problem.group=4\n\
         device.name=\"Test GPU 80GB\"\n\
         device.cc=9.0\n\
         device.driver=13000\n"
    );
    // Pinned (checked with `sha256sum`), like the key without a grid.
    assert_eq!(
        info.id(),
        "5db8e4a3a4753cbe6ba4727d6f0398ebd43e21b1bde372d26235dd0625df5e75"
    );
    let without = KeyInfo {
        bucket: Bucket {
            grid: None,
            ..info.bucket.clone()
        },
        ..info.clone()
    };
    assert_eq!(
        without.canonical(),
        text.replace("problem.grid=56x56\n", "")
    );
}

fn mustafar() -> &'static KernelDesc {
    crate::catalog::find("mustafar_bf16_d128").expect("a catalog kernel")
}

/// A decode key buckets the context and batch × kv_heads; batch and kv_heads count only
/// through their product, and the GQA group stays exact.
#[test]
fn a_decode_key_buckets_the_context_and_the_planes() {
    let p = Problem::decode(3, 32, 8, 5000);
    let b = Bucket::of(mustafar(), &p);
    assert_eq!((b.seq_q, b.seq_kv, b.group, b.planes, b.grid), (1, 8192, 4, Some(32), None));
    assert_eq!(
        b.to_string(),
        "context <= 8192, batch x kv_heads <= 32, head_dim 128, bf16, GQA group 4"
    );
    let id = |p: Problem| KeyInfo::new(mustafar(), &p, &device(13000)).id();
    assert_eq!(id(p), id(Problem::decode(4, 32, 8, 8192)));
    assert_eq!(id(p), id(Problem::decode(1, 128, 32, 4097)));
    for other in [
        Problem::decode(3, 32, 8, 8193),
        Problem::decode(8, 32, 8, 5000),
        Problem::decode(3, 64, 8, 5000),
    ] {
        assert_ne!(id(p), id(other), "{other}");
    }
    // The f16 kernel is another key.
    let f16 = crate::catalog::find("mustafar_f16_d128").unwrap();
    assert_ne!(id(p), KeyInfo::new(f16, &p, &device(13000)).id());
    // Attention kernels have no planes in their bucket.
    assert_eq!(Bucket::of(dense(), &p).planes, None);
}

#[test]
fn planes_add_one_line_to_a_decode_key_text() {
    let mut info = KeyInfo::new(mustafar(), &Problem::decode(1, 32, 8, 32768), &device(13000));
    (info.kernel_hash, info.tessera) = ("ab12".to_string(), "1.2.3+f00".to_string());
    assert_eq!(
        info.canonical(),
        "tessera-tune-key v1\n\
         tessera=\"1.2.3+f00\"\n\
         kernel=\"mustafar_bf16_d128\"\n\
         kernel.hash=ab12\n\
         problem.seq_q=1\n\
         problem.seq_kv=32768\n\
         problem.planes=8\n\
         problem.head_dim=128\n\
         problem.dtype=\"bf16\"\n\
         problem.group=4\n\
         device.name=\"Test GPU 80GB\"\n\
         device.cc=9.0\n\
         device.driver=13000\n"
    );
    let json = serde_json::to_string(&info.bucket).unwrap();
    assert!(json.contains("\"planes\":8"), "{json}");
    assert_eq!(serde_json::from_str::<Bucket>(&json).unwrap(), info.bucket);
}
