use tessera_desc::{Visit, Window, WindowAxis};

use super::super::Problem;

#[test]
fn shapes_parse_and_are_checked() {
    let p: Problem = "1,32,8,16384,4096".parse().unwrap();
    assert_eq!(
        (p.batch, p.heads, p.kv_heads, p.seq_q, p.seq_kv, p.group()),
        (1, 32, 8, 16384, 4096, 4)
    );
    assert_eq!(p.to_string().parse::<Problem>().unwrap(), p);
    for (bad, why) in [
        ("1,32,32,16384", "is not B,H,HKV,SQ,SKV"),
        ("1,32,5,128,128", "must divide heads"),
        ("1,32,32,0,128", "seq_q must be at least 1"),
        ("1,x,32,128,128", "heads `x` is not a count"),
        ("1,32,32,3000000000,128", "does not fit in i32"),
    ] {
        let err = bad.parse::<Problem>().unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn the_check_problem_is_small_ragged_and_keeps_group_and_ordering() {
    let p: Problem = "4,32,8,16384,16384".parse().unwrap();
    let s = p.check_shape(super::dense());
    assert_eq!(
        (s.batch, s.heads, s.kv_heads, s.seq_q, s.seq_kv),
        (1, 8, 2, 131, 131)
    );
    assert_eq!(s.head_dim, 128);
    let causal = crate::catalog::find("causal_bf16_d64").unwrap();
    let longer_kv = "1,4,4,512,4096"
        .parse::<Problem>()
        .unwrap()
        .check_shape(causal);
    assert!(longer_kv.seq_kv > longer_kv.seq_q);
    let shorter_kv = "1,4,4,4096,512"
        .parse::<Problem>()
        .unwrap()
        .check_shape(causal);
    assert!(shorter_kv.seq_kv < shorter_kv.seq_q);
    for s in [s, longer_kv, shorter_kv] {
        assert!(s.seq_q % 16 != 0 && s.seq_kv % 16 != 0, "{s:?}");
    }
}

fn window(size: u32, dilation: u32) -> tessera_desc::KernelDesc {
    let axis = WindowAxis {
        size,
        dilation,
        stride: 1,
        causal: false,
    };
    let mut desc = *super::dense();
    desc.visit = Visit::Window(Window {
        dims: 1,
        axes: [axis; 3],
    });
    desc
}

#[test]
fn window_kernels_need_one_grid_that_holds_the_window() {
    let desc = window(65, 2);
    assert!(
        "1,4,4,4096,4096"
            .parse::<Problem>()
            .unwrap()
            .check_for(&desc)
            .is_ok()
    );
    let unequal = "1,4,4,4096,2048"
        .parse::<Problem>()
        .unwrap()
        .check_for(&desc);
    assert!(unequal.unwrap_err().contains("seq_q = seq_kv"));
    let short = "1,4,4,100,100".parse::<Problem>().unwrap().check_for(&desc);
    assert!(
        short.clone().unwrap_err().contains("does not fit"),
        "{short:?}"
    );
    // Other kernels take unequal lengths.
    assert!(
        "1,4,4,4096,2048"
            .parse::<Problem>()
            .unwrap()
            .check_for(super::dense())
            .is_ok()
    );

    // The check problem: 131 tokens when the window fits, else just enough for it (ragged).
    let p: Problem = "1,4,4,16384,16384".parse().unwrap();
    let small = p.check_shape(&window(17, 3));
    assert_eq!((small.seq_q, small.seq_kv), (131, 131));
    let wide = p.check_shape(&window(65, 3));
    assert_eq!((wide.seq_q, wide.seq_kv), (195, 195));
    let aligned = p.check_shape(&window(2048, 1));
    assert_eq!((aligned.seq_q, aligned.seq_kv), (2051, 2051));
}

#[test]
fn every_visit_of_the_catalog_has_a_reference_for_the_check() {
    let p: Problem = "1,8,2,16384,16384".parse().unwrap();
    // A window as long as the check problem (2048) costs minutes of an unoptimised reference;
    // the short-window kernel covers the same code.
    let quick = crate::catalog::all()
        .iter()
        .filter(|d| p.check_shape(d).seq_q <= 256);
    let visits: std::collections::HashSet<&str> = quick.clone().map(|d| d.visit.name()).collect();
    assert_eq!(visits.len(), 3, "{visits:?}");
    for desc in quick {
        let case = super::super::verify::Case::new(desc, &p);
        assert!(case.is_ok(), "{}: {:?}", desc.name, case.err());
    }
}
