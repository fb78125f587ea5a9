use std::path::Path;

use super::*;
use tessera_codegen::reference::Shape;
use crate::{Error, catalog};

fn kernel(name: &str) -> &'static tessera_desc::KernelDesc {
    match catalog::find(name) {
        Some(k) => k,
        None => panic!("no catalog kernel {name}"),
    }
}

fn bf16(shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    let bits: Vec<u16> = (0..n)
        .map(|i| half::bf16::from_f32(i as f32 * 0.25 - 3.0).to_bits())
        .collect();
    HostTensor::from_bits(FileDtype::BF16, shape.to_vec(), &bits)
}

fn write(path: &Path, tensors: &[(&str, &HostTensor)]) {
    if let Err(e) = write_tensors(path, tensors, &[]) {
        panic!("{e}");
    }
}

fn message<T>(result: Result<T, Error>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn write_then_read_gives_the_same_tensors_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let o = bf16(&[1, 2, 3, 64]);
    let lse = HostTensor::from_f32(vec![1, 2, 3], &[0.5, -1.0, 2.0, f32::INFINITY, 0.0, 7.25]);
    write_tensors(
        &path,
        &[("o", &o), ("lse", &lse)],
        &[("kernel", "x".into())],
    )
    .unwrap();

    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.tensor("o").unwrap(), o);
    assert_eq!(file.tensor("lse").unwrap(), lse);
    assert_eq!(
        file.tensor("lse").unwrap().to_f32().unwrap(),
        [0.5, -1.0, 2.0, f32::INFINITY, 0.0, 7.25]
    );
    assert_eq!(o.to_f32().unwrap()[..3], [-3.0, -2.75, -2.5]);
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["kernel"], "x");
}

#[test]
fn reads_valid_inputs_including_gqa() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.safetensors");
    let (q, kv) = (bf16(&[2, 8, 5, 128]), bf16(&[2, 2, 7, 128]));
    write(
        &path,
        &[("q", &q), ("k", &kv), ("v", &kv), ("extra", &bf16(&[3]))],
    );
    let inputs = read_inputs(&path, kernel("dense_bf16_d128")).unwrap();
    assert_eq!(
        inputs.dims,
        Shape {
            batch: 2,
            heads: 8,
            kv_heads: 2,
            seq_q: 5,
            seq_kv: 7,
            head_dim: 128
        }
    );
    assert_eq!((inputs.q, inputs.k), (q, kv));
    assert_eq!(inputs.dims.lse_shape(), [2, 8, 5]);
}

#[test]
fn missing_tensor_names_the_file_and_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.safetensors");
    let t = bf16(&[1, 1, 4, 64]);
    write(&path, &[("q", &t), ("k", &t)]);
    let m = message(read_inputs(&path, kernel("dense_bf16_d64")));
    assert!(
        m.ends_with("in.safetensors has no tensor `v` (it has: k, q)"),
        "{m}"
    );
}

#[test]
fn unreadable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let m = message(TensorFile::open(&missing));
    assert!(
        m.starts_with("reading ") && m.contains("nope.safetensors"),
        "{m}"
    );

    let nowhere = dir.path().join("no-such-dir").join("out.safetensors");
    let m = message(write_tensors(&nowhere, &[("o", &bf16(&[2]))], &[]));
    assert!(
        m.starts_with("writing ") && m.contains("no-such-dir"),
        "{m}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\0\0\0\0\0\0\0not json at all!").unwrap();
    let m = message(TensorFile::open(&garbage));
    assert!(
        m.contains("garbage.safetensors is not a valid safetensors file: "),
        "{m}"
    );
}

/// `check_inputs` on dense_bf16_d128 with q, k, v of these shapes (bf16 unless given).
fn check(q: HostTensor, k: HostTensor, v: HostTensor) -> String {
    message(check_inputs(kernel("dense_bf16_d128"), &q, &k, &v))
}

#[test]
fn each_input_problem_names_the_tensor_and_both_values() {
    let t = |s: &[usize]| bf16(s);
    let good = [1, 4, 16, 128];
    let f32_q = HostTensor::from_f32(good.to_vec(), &vec![0.0; good.iter().product()]);
    let f16_v = HostTensor {
        dtype: FileDtype::F16,
        ..t(&good)
    };
    let cases = [
        (
            check(f32_q, t(&good), t(&good)),
            "tensor `q`: dtype: expected BF16 (kernel `dense_bf16_d128`), got F32",
        ),
        (
            check(t(&good), t(&good), f16_v),
            "tensor `v`: dtype: expected BF16 (kernel `dense_bf16_d128`), got F16",
        ),
        (
            check(t(&good), t(&[4, 16, 128]), t(&good)),
            "tensor `k`: rank: expected 4 ([batch, heads, tokens, head_dim]), got 3 (shape [4, 16, 128])",
        ),
        (
            check(t(&[1, 4, 16, 64]), t(&good), t(&good)),
            "tensor `q`: head_dim (last dimension): expected 128 (kernel `dense_bf16_d128`), got 64 (shape [1, 4, 16, 64])",
        ),
        (
            check(t(&good), t(&good), t(&[1, 4, 15, 128])),
            "tensor `v`: shape: expected [1, 4, 16, 128] (as `k`), got [1, 4, 15, 128]",
        ),
        (
            check(t(&good), t(&[2, 4, 16, 128]), t(&[2, 4, 16, 128])),
            "tensor `k`: batch: expected 1 (as `q`), got 2",
        ),
        (
            check(t(&[1, 6, 16, 128]), t(&good), t(&good)),
            "tensor `q`: heads: expected a multiple of 4 (`k`'s heads), got 6",
        ),
        (
            check(t(&[1, 4, 0, 128]), t(&good), t(&good)),
            "tensor `q`: shape: expected no zero dimension, got [1, 4, 0, 128]",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}
