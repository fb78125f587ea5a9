//! `tessera list`: the catalog and each kernel's tuning space.

use std::io::Write;

use super::table::Table;
use crate::{Error, catalog};

pub fn run(out: &mut dyn Write) -> Result<(), Error> {
    let mut table = Table::new(vec![
        "kernel", "dtype", "head_dim", "visit", "load", "block_q", "block_kv", "warps", "stages",
        "configs",
    ]);
    for k in catalog::all() {
        let s = &k.schedule;
        table.row(vec![
            k.name.to_string(),
            k.dtype.name().to_string(),
            k.head_dim.to_string(),
            k.visit.name().to_string(),
            k.load.to_string(),
            tessera::tile_space(&s.q_tile),
            tessera::tile_space(&s.kv_tile),
            s.warps.to_string(),
            s.stages.to_string(),
            k.configs().len().to_string(),
        ]);
    }
    table.write(out).map_err(Error::Stdout)
}
