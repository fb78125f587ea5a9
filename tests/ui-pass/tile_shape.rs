// Windows over 2 or 3 axes take a tile shape per axis, each extent fixed or a list of choices;
// the tile's rows (keys) are the product, and the axes past the window's are `Fixed(1)`.
use tessera::{Kernel, Param};

#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7]),
    tile = (q = (8, 16), kv = (8, [8, 16])),
)]
pub struct Na2d;

macro_rules! na3d {
    ($name:ident, $q:expr) => {
        #[tessera::attention(
            head_dim = 64,
            dtype = f16,
            visit = window(size = [3, 5, 5]),
            tile = (q = $q, kv = (2, 4, [2, 4])),
            tune = (warps = [4, 8]),
        )]
        pub struct $name;
    };
}

na3d!(Na3d, ([2, 4], 4, 8));

fn main() {
    let s = Na2d::DESC.schedule;
    assert_eq!(s.q_tile, [Param::Fixed(8), Param::Fixed(16), Param::Fixed(1)]);
    assert_eq!(s.kv_tile, [Param::Fixed(8), Param::Choices(&[8, 16]), Param::Fixed(1)]);
    let configs = Na2d::DESC.configs();
    assert!(!configs.is_empty());
    assert!(configs.iter().all(|c| c.q_tile == [8, 16, 1] && c.block_q() == 128));
    assert_eq!(configs.iter().map(|c| c.block_kv()).collect::<Vec<_>>(), [64, 128]);

    let s = Na3d::DESC.schedule;
    assert_eq!(s.q_tile, [Param::Choices(&[2, 4]), Param::Fixed(4), Param::Fixed(8)]);
    assert_eq!(s.kv_tile, [Param::Fixed(2), Param::Fixed(4), Param::Choices(&[2, 4])]);
    // 64 query rows over 8 warps is pruned: (64, 4), (128, 4) and (128, 8) warps, times two KV tiles.
    assert_eq!(Na3d::DESC.configs().len(), 6);
}
