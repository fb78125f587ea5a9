// Only the required keys: layout, load, warps, stages and name take their defaults.
use tessera::{Dtype, Kernel, Layout, Load, Param, Visit};

#[tessera::attention(head_dim = 64, dtype = bf16, visit = dense, tile = (q = 64, kv = 64))]
pub struct DenseBf16;

fn main() {
    let d = DenseBf16::DESC;
    assert_eq!(d.name, "dense_bf16");
    assert_eq!(d.head_dim, 64);
    assert_eq!(
        (d.dtype, d.layout, d.visit, d.load),
        (Dtype::Bf16, Layout::Bhsd, Visit::Dense, Load::Dense)
    );
    assert_eq!(d.schedule.q_tile, [Param::Fixed(64), Param::Fixed(1), Param::Fixed(1)]);
    assert_eq!(d.schedule.kv_tile, [Param::Fixed(64), Param::Fixed(1), Param::Fixed(1)]);
    assert_eq!(d.schedule.warps, Param::Fixed(4));
    assert_eq!(d.schedule.stages, Param::Fixed(2));
    assert_eq!(d.configs().len(), 1);
}
