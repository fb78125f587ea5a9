// A misspelled key inside `window(...)` gets a suggestion.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7], dilaton = 2),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
