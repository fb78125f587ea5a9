// Every key written out: f16, causal, explicit layout and load, tuning lists, a name override.
use tessera::{Dtype, Kernel, Param, Visit};

#[tessera::attention(
    head_dim = 128u32,
    dtype = f16,
    layout = bhsd,
    visit = causal,
    load = dense,
    tile = (q = [64, 128], kv = [64]),
    tune = (warps = [4, 8], stages = [1, 2, 3]),
    name = "flash_causal",
)]
pub struct CausalF16;

fn main() {
    let d = CausalF16::DESC;
    assert_eq!(d.name, "flash_causal");
    assert_eq!((d.head_dim, d.dtype, d.visit), (128, Dtype::F16, Visit::Causal));
    assert_eq!(d.schedule.q_tile, [Param::Choices(&[64, 128]), Param::Fixed(1), Param::Fixed(1)]);
    assert_eq!(d.schedule.kv_tile, [Param::Choices(&[64]), Param::Fixed(1), Param::Fixed(1)]);
    assert_eq!(d.schedule.warps, Param::Choices(&[4, 8]));
    assert_eq!(d.schedule.stages, Param::Choices(&[1, 2, 3]));
    // (64, 8 warps) is pruned; the rest of the 2 x 2 x 3 space remains.
    assert_eq!(d.configs().len(), 9);
}
