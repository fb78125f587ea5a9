// A bitmap load reads K and/or V compressed; KV tiles that are not whole 64-token bitmap tiles
// (here 32) are pruned from the tuning space rather than rejected, as long as one remains.
use tessera::{BitmapLoad, Kernel, Load};

#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, v),
    tile = (q = 64, kv = [64, 32, 128]),
)]
pub struct Compressed;

#[tessera::attention(head_dim = 64, dtype = f16, visit = causal, load = bitmap(v), tile = (q = 64, kv = 64))]
pub struct CompressedV;

fn main() {
    let d = Compressed::DESC;
    assert_eq!(d.load, Load::Bitmap(BitmapLoad { k: true, v: true }));
    assert_eq!(d.load.to_string(), "bitmap(k, v)");
    let block_kv: Vec<u32> = d.configs().iter().map(|c| c.block_kv()).collect();
    assert_eq!(block_kv, [64, 128]);
    assert_eq!(CompressedV::DESC.load, Load::Bitmap(BitmapLoad { k: false, v: true }));
}
