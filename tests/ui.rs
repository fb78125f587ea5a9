//! Compile-time behaviour of `#[tessera::attention]`: every rejected definition must fail with our
//! message at the offending token (tests/ui), and valid ones must build and carry the right
//! description (tests/ui-pass). Regenerate expectations with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
