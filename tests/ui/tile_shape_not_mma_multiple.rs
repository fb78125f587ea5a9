// Every combination of the choices must give a valid tile: 2 x 4 = 8 query rows is not a multiple
// of 16, though 8 x 4 = 32 would be.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7]),
    tile = (q = ([2, 8], 4), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
