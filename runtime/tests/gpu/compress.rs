//! Mustafar's GPU pruning + compression against the host format, bit for bit: the bitmaps,
//! offsets, packed values and head bases of `BitmapCache::compress` over `prune_bits` (the
//! authors' rule), for K and V tile orders, bf16 and f16, head_dim 64 and 128, sparsity 0.5 and
//! 0.7, several planes, and token counts of one and many 64-token blocks. Fresh random inputs
//! each run, with ties and exact zeros planted (the rule keeps ties with the threshold; zeros
//! are left out of the bitmap). Without a GPU every test prints why it skipped and passes.

use crate::common::gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::format::cache::prune_bits;
use tessera_codegen::format::{BitmapCache, PruneRule, TileOrder, from_f32};
use tessera_desc::Dtype;
use tessera_runtime::gpu::{Compressor, DeviceTensor};

#[test]
fn gpu_compression_writes_the_host_format_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(crate::run_seed());
    for d in [128, 64] {
        let compressor = Compressor::load(&gpu, d).unwrap();
        // The last two: most elements NaN, so that a token's k-th smallest magnitude is a NaN
        // and only the rule's "NaN is kept" keeps the other NaNs (of smaller payloads).
        let cases = [(Dtype::Bf16, 1, 3, 64, 0.0), (Dtype::F16, 2, 2, 320, 0.02), (Dtype::Bf16, 1, 1, 1024, 0.02), (Dtype::F16, 1, 1, 64, 0.8), (Dtype::Bf16, 1, 2, 64, 0.8)];
        for (dtype, batch, kv_heads, tokens, nan) in cases {
            let n = batch * kv_heads * tokens * d;
            let infinity = from_f32(dtype, f32::INFINITY);
            // A quarter of the values from a set: ties with the threshold, zeros, infinities;
            // then NaNs of any payload and sign, a `nan` share of them.
            let bits: Vec<u16> = (0..n)
                .map(|_| {
                    if rng.random_bool(nan) {
                        return (infinity + rng.random_range(1..=0x7fff - infinity)) | if rng.random_bool(0.5) { 0x8000 } else { 0 };
                    }
                    let x = if rng.random_bool(0.25) { [0.0, 0.5, -0.5, 1.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][rng.random_range(0..7)] } else { rng.random_range(-2.0f32..2.0) };
                    from_f32(dtype, x)
                })
                .collect();
            let x = DeviceTensor { data: gpu.stream.clone_htod(&bits).unwrap(), dtype, shape: [batch, kv_heads, tokens, d] };
            for sparsity in [0.7, 0.5] {
                let pruned = prune_bits(&bits, dtype, d, sparsity, PruneRule::KthSmallest);
                for order in [TileOrder::Keys, TileOrder::Values] {
                    let want = BitmapCache::compress(&pruned, dtype, batch * kv_heads, tokens, d, order).unwrap();
                    let got = compressor.compress(&gpu, &x, order, sparsity, PruneRule::KthSmallest).unwrap().download(&gpu).unwrap();
                    let at = format!("d{d} {dtype} {batch}x{kv_heads}x{tokens} NaN share {nan} s{sparsity} {order:?}");
                    assert_eq!(got.bitmaps, want.bitmaps, "{at}: bitmaps");
                    assert_eq!(got.offsets, want.offsets, "{at}: offsets");
                    assert_eq!(got.head_base, want.head_base, "{at}: head bases");
                    assert_eq!(got.values, want.values, "{at}: values");
                }
            }
        }
        // Bad input is an error before any launch.
        let x = DeviceTensor { data: gpu.stream.clone_htod(&vec![0u16; 100 * d]).unwrap(), dtype: Dtype::Bf16, shape: [1, 1, 100, d] };
        assert!(compressor.compress(&gpu, &x, TileOrder::Keys, 0.7, PruneRule::KthSmallest).is_err());
        let x = DeviceTensor { data: gpu.stream.clone_htod(&vec![0u16; 64 * d]).unwrap(), dtype: Dtype::Bf16, shape: [1, 1, 64, d] };
        assert!(compressor.compress(&gpu, &x, TileOrder::Keys, 0.7, PruneRule::TopK).is_err());
        assert!(compressor.compress(&gpu, &x, TileOrder::Keys, 1.0, PruneRule::KthSmallest).is_err());
    }
}

/// Appending on the device (`DeviceBitmapCache::append`) equals the host's append of the same
/// chunks (`BitmapCache::append`), bit for bit: GPU-compressed chunks onto a GPU-compressed
/// cache and onto an uploaded one, K and V orders, several planes, chunks of one and several
/// 64-token blocks, and an empty start.
#[test]
fn appending_chunks_on_the_device_matches_the_host() {
    use tessera_runtime::gpu::DeviceBitmapCache;
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(crate::run_seed());
    let d = 128;
    let compressor = Compressor::load(&gpu, d).unwrap();
    let (dtype, planes, sparsity) = (Dtype::Bf16, 3, 0.7);
    let mut chunk = |tokens: usize| {
        let bits: Vec<u16> = (0..planes * tokens * d).map(|_| from_f32(dtype, rng.random_range(-2.0f32..2.0))).collect();
        let x = DeviceTensor { data: gpu.stream.clone_htod(&bits).unwrap(), dtype, shape: [1, planes, tokens, d] };
        (x, prune_bits(&bits, dtype, d, sparsity, PruneRule::KthSmallest))
    };
    let chunks = [chunk(128), chunk(64), chunk(192)];
    for order in [TileOrder::Keys, TileOrder::Values] {
        let host = |pruned: &[u16], tokens| BitmapCache::compress(pruned, dtype, planes, tokens, d, order).unwrap();
        // On the device from the first chunk, and uploaded from an empty cache.
        let mut want = host(&chunks[0].1, 128);
        let mut on_device = compressor.compress(&gpu, &chunks[0].0, order, sparsity, PruneRule::KthSmallest).unwrap();
        let mut uploaded = DeviceBitmapCache::upload(&gpu, &host(&[], 0)).unwrap();
        uploaded.append(&gpu, &on_device).unwrap();
        for (x, pruned) in &chunks[1..] {
            let tokens = x.shape[2];
            want.append(&host(pruned, tokens)).unwrap();
            let next = compressor.compress(&gpu, x, order, sparsity, PruneRule::KthSmallest).unwrap();
            on_device.append(&gpu, &next).unwrap();
            uploaded.append(&gpu, &next).unwrap();
        }
        for (what, cache) in [("compressed", &on_device), ("uploaded", &uploaded)] {
            let got = cache.download(&gpu).unwrap();
            assert_eq!(got, want, "{order:?} {what}: the appended cache");
        }
    }
}

/// One workspace reused over inputs that grow and shrink, K and V orders, both dtypes: each
/// result is the host's compression of that input, bit for bit. Among them, tokens whose values
/// all tie (the rule keeps all of them: the values buffer's bound is reached) and an empty
/// input. A refused input changes nothing; nothing compressed yet is an error.
#[test]
fn a_reused_workspace_compresses_each_input_as_the_host() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(crate::run_seed());
    let d = 128;
    let compressor = Compressor::load(&gpu, d).unwrap();
    let mut ws = compressor.workspace();
    assert!(ws.cache(&gpu).is_err());
    // A tied input first: every value kept fills the fresh workspace's values buffer to its bound.
    let cases = [
        (Dtype::Bf16, 1, 64, TileOrder::Values, true),
        (Dtype::Bf16, 2, 256, TileOrder::Keys, false),
        (Dtype::F16, 3, 1024, TileOrder::Values, false),
        (Dtype::Bf16, 2, 0, TileOrder::Keys, false),
        (Dtype::F16, 2, 192, TileOrder::Keys, true),
        (Dtype::Bf16, 4, 512, TileOrder::Values, false),
    ];
    for (dtype, planes, tokens, order, tied) in cases {
        let bits: Vec<u16> = (0..planes * tokens * d)
            .map(|i| match tied {
                // Every value of a token ties, but for a zero now and then.
                true => from_f32(dtype, if i % 61 == 0 { 0.0 } else if i % 2 == 0 { 1.5 } else { -1.5 }),
                false => from_f32(dtype, rng.random_range(-2.0f32..2.0)),
            })
            .collect();
        let data = gpu.stream.clone_htod(&if bits.is_empty() { vec![0] } else { bits.clone() }).unwrap();
        let x = DeviceTensor { data, dtype, shape: [1, planes, tokens, d] };
        let pruned = prune_bits(&bits, dtype, d, 0.7, PruneRule::KthSmallest);
        let want = BitmapCache::compress(&pruned, dtype, planes, tokens, d, order).unwrap();
        compressor.compress_into(&gpu, &mut ws, &x, order, 0.7, PruneRule::KthSmallest).unwrap();
        let got = ws.cache(&gpu).unwrap().download(&gpu).unwrap();
        assert_eq!(got, want, "{dtype} {planes}x{tokens} {order:?} tied {tied}");
        assert!(compressor.compress_into(&gpu, &mut ws, &x, order, 0.7, PruneRule::TopK).is_err());
        assert_eq!(ws.cache(&gpu).unwrap().download(&gpu).unwrap(), want, "{dtype} {planes}x{tokens} {order:?}: after a refused input");
    }
}

/// Many more 64-token blocks (70 planes × 64 = 4480) than the GPU holds CTAs at once, twice on
/// one workspace: the look-back across planes and over blocks that finished long before, CTAs
/// started in any order (blocks are taken by ticket), and the second launch's epoch reading the
/// first one's words as unpublished.
#[test]
fn many_blocks_place_their_values_across_planes() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(crate::run_seed());
    let (d, planes, tokens, dtype) = (64, 70, 4096, Dtype::Bf16);
    let compressor = Compressor::load(&gpu, d).unwrap();
    let bits: Vec<u16> = (0..planes * tokens * d).map(|_| from_f32(dtype, rng.random_range(-2.0f32..2.0))).collect();
    let x = DeviceTensor { data: gpu.stream.clone_htod(&bits).unwrap(), dtype, shape: [1, planes, tokens, d] };
    let pruned = prune_bits(&bits, dtype, d, 0.7, PruneRule::KthSmallest);
    let mut ws = compressor.workspace();
    for order in [TileOrder::Keys, TileOrder::Values] {
        let want = BitmapCache::compress(&pruned, dtype, planes, tokens, d, order).unwrap();
        compressor.compress_into(&gpu, &mut ws, &x, order, 0.7, PruneRule::KthSmallest).unwrap();
        let got = ws.cache(&gpu).unwrap().download(&gpu).unwrap();
        assert_eq!(got, want, "{order:?}");
    }
}

/// One workspace compressing the same input again and again, K and V in turn: every result is
/// the host's. A look-back that read a word before it was whole, or a word of an earlier launch
/// as this one's, would place some block's values wrongly now and then, not every time.
#[test]
fn repeated_compressions_place_every_block_the_same() {
    let Some(gpu) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(crate::run_seed());
    let (d, planes, tokens, dtype) = (128, 8, 4096, Dtype::Bf16);
    let compressor = Compressor::load(&gpu, d).unwrap();
    let bits: Vec<u16> = (0..planes * tokens * d).map(|_| from_f32(dtype, rng.random_range(-2.0f32..2.0))).collect();
    let x = DeviceTensor { data: gpu.stream.clone_htod(&bits).unwrap(), dtype, shape: [1, planes, tokens, d] };
    let pruned = prune_bits(&bits, dtype, d, 0.7, PruneRule::KthSmallest);
    let want = [TileOrder::Keys, TileOrder::Values].map(|order| BitmapCache::compress(&pruned, dtype, planes, tokens, d, order).unwrap());
    let mut ws = compressor.workspace();
    for round in 0..64 {
        let (order, want) = if round % 2 == 0 { (TileOrder::Keys, &want[0]) } else { (TileOrder::Values, &want[1]) };
        compressor.compress_into(&gpu, &mut ws, &x, order, 0.7, PruneRule::KthSmallest).unwrap();
        let got = ws.cache(&gpu).unwrap().download(&gpu).unwrap();
        assert_eq!(&got, want, "round {round}, {order:?}");
    }
}
