// Values forwarded through `macro_rules!` arrive wrapped in invisible groups.
use tessera::Kernel;

macro_rules! kernel {
    ($name:ident, $d:expr, $q:literal) => {
        #[tessera::attention(head_dim = $d, dtype = bf16, visit = dense, tile = (q = $q, kv = 64))]
        pub struct $name;
    };
}

kernel!(Dense64, 64, 128);

fn main() {
    assert_eq!(Dense64::DESC.name, "dense64");
    assert_eq!(Dense64::DESC.head_dim, 64);
}
