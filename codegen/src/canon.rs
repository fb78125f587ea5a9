//! Canonical PTX for snapshot tests, and instruction counts for structural assertions.
//!
//! LLVM's PTX is deterministic, but its header names the LLVM build and its comments and
//! tab-aligned columns churn between LLVM versions without any change in meaning. Snapshots keep
//! only what the driver sees. Registers are not renamed: a renaming pass would hide real changes
//! in register pressure and is not needed for stability.

use std::collections::BTreeMap;

/// Strips comments and blank lines and normalises whitespace.
///
/// Lines that were indented in the input (instructions, declarations, parameters) get exactly
/// four spaces; the rest (directives, braces, labels) start at column 0. Runs of spaces and tabs
/// inside a line become one space, outside string literals. The result ends with a newline
/// unless it is empty.
pub fn canonicalize(ptx: &str) -> String {
    let mut out = String::with_capacity(ptx.len());
    for (line, indented) in code_lines(ptx) {
        if indented {
            out.push_str("    ");
        }
        out.push_str(&collapse_whitespace(&line));
        out.push('\n');
    }
    out
}

/// Opcode base → count: `mma`, `ldmatrix`, `cp`, `bar`, `ld`, `ret`, ...
pub fn instruction_counts(ptx: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for op in opcodes(ptx) {
        let base = op.split('.').next().unwrap_or(&op).to_string();
        *counts.entry(base).or_insert(0) += 1;
    }
    counts
}

/// Number of instructions whose full opcode (e.g. `mma.sync.aligned.m16n8k16.row.col.f32.bf16`)
/// starts with `prefix`.
pub fn count_prefix(ptx: &str, prefix: &str) -> usize {
    opcodes(ptx)
        .iter()
        .filter(|op| op.starts_with(prefix))
        .count()
}

/// Full opcodes of every instruction, in order, predicates removed.
///
/// Works on statements (text between `;`), not lines, because inline PTX may put several
/// instructions on one line or spread one instruction's operand list over several.
pub fn opcodes(ptx: &str) -> Vec<String> {
    // Directives that end at the line end instead of at `;` would otherwise merge with the next
    // instruction into one statement and hide it.
    const LINE_DIRECTIVES: [&str; 6] = [
        ".version",
        ".target",
        ".address_size",
        ".loc",
        ".file",
        ".pragma",
    ];
    let mut text = String::with_capacity(ptx.len());
    for (line, _) in code_lines(ptx) {
        if LINE_DIRECTIVES.iter().any(|d| line.starts_with(d)) {
            continue;
        }
        text.push_str(&line);
        text.push('\n');
    }

    // A `{` or `}` ends a statement when no instruction has started (bodies, scopes, function
    // headers); inside an instruction it belongs to a vector operand, and inside a directive
    // with `=` to an initializer.
    let mut ops = Vec::new();
    let mut stmt = String::new();
    for c in text.chars() {
        match c {
            ';' => push_opcode(&stmt, &mut ops),
            '{' | '}' => {
                let head = peel_labels(&stmt);
                if !(head.is_empty() || head.starts_with('.') && !head.contains('=')) {
                    stmt.push(c);
                    continue;
                }
                push_opcode(&stmt, &mut ops);
            }
            _ => {
                stmt.push(c);
                continue;
            }
        }
        stmt.clear();
    }
    push_opcode(&stmt, &mut ops);
    ops
}

fn peel_labels(stmt: &str) -> &str {
    let mut s = stmt.trim();
    while let Some(colon) = label_end(s) {
        s = s[colon + 1..].trim_start();
    }
    s
}

fn push_opcode(stmt: &str, ops: &mut Vec<String>) {
    let s = peel_labels(stmt);
    // Declarations, directives and function headers (`.reg`, `.visible .entry k(...)`).
    if s.is_empty() || s.starts_with('.') {
        return;
    }
    let mut tokens = s.split_whitespace();
    let mut op = tokens.next();
    if op.is_some_and(|t| t.starts_with('@')) {
        op = tokens.next();
    }
    if let Some(op) = op {
        ops.push(op.to_string());
    }
}

/// Byte index of the `:` ending a leading label (`$L__BB0_2:`), if the statement starts with one.
fn label_end(s: &str) -> Option<usize> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '%')))?;
    (end > 0 && s[end..].starts_with(':')).then_some(end)
}

/// Non-empty lines with comments removed and ends trimmed, each with whether it was indented.
fn code_lines(ptx: &str) -> Vec<(String, bool)> {
    let mut lines = Vec::new();
    let mut in_block_comment = false;
    for raw in ptx.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let code = strip_comments(raw, &mut in_block_comment);
        let code = code.trim();
        if !code.is_empty() {
            lines.push((code.to_string(), indented));
        }
    }
    lines
}

/// Removes `// ...` and `/* ... */` (which may span lines, hence the carried state), leaving
/// string literals such as `.pragma "nounroll"` alone.
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if *in_block {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                *in_block = false;
                // Keep tokens on either side of the comment apart.
                out.push(' ');
            }
            continue;
        }
        if in_string {
            out.push(c);
            if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => break,
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                *in_block = true;
            }
            _ => out.push(c),
        }
    }
    out
}

fn collapse_whitespace(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut pending_space = false;
    for c in line.chars() {
        if !in_string && (c == ' ' || c == '\t') {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // LLVM 22 `llc -mcpu=sm_80` output (tabs as emitted), with an inline-asm block added.
    const SAMPLE: &str = "//\n\
// Generated by LLVM NVPTX Back-End\n\
//\n\
\n\
.version 7.0\n\
.target sm_80\n\
.address_size 64\n\
\n\
\t// .globl\tk                       // -- Begin function k\n\
// buf has been demoted\n\
                                        // @k\n\
.visible .entry k(\n\
\t.param .u64 .ptr .global .align 1 k_param_0,\n\
\t.param .u32 k_param_2\n\
)\n\
.maxntid 256\n\
{\n\
\t.reg .pred \t%p<2>;\n\
\t.reg .b32 \t%r<6>;   \n\
\t// demoted variable\n\
\t.shared .align 16 .b8 buf[256];\n\
// %bb.0:                               // %entry\n\
\tmov.u32 \t%r1, %tid.x;\n\
\tsetp.ge.u32 \t%p1, %r1, %r2;\n\
\t@%p1 bra \t$L__BB0_2;\n\
// %bb.1:                               // %body\n\
\tld.global.b32 \t%r5, [%rd4];\n\
\tbar.sync \t0;\n\
\t// begin inline asm\n\
\t{ .reg .b32 t; /* scratch */ mov.b32 t, %r4; ex2.approx.f32 %r3, t; }\n\
\tmma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1, %f2, %f3, %f4},\n\
\t    {%r1, %r2, %r3, %r4}, {%r5, %r6}, {%f1, %f2, %f3, %f4};\n\
\t// end inline asm\n\
\tst.global.b32 \t[%rd7], %r3;\n\
$L__BB0_2:                              // %exit\n\
\t@!%p1 ret;\n\
                                        // -- End function\n\
}\n";

    #[test]
    fn canon_strips_comments_and_normalises_whitespace() {
        let expected = "\
.version 7.0
.target sm_80
.address_size 64
.visible .entry k(
    .param .u64 .ptr .global .align 1 k_param_0,
    .param .u32 k_param_2
)
.maxntid 256
{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .shared .align 16 .b8 buf[256];
    mov.u32 %r1, %tid.x;
    setp.ge.u32 %p1, %r1, %r2;
    @%p1 bra $L__BB0_2;
    ld.global.b32 %r5, [%rd4];
    bar.sync 0;
    { .reg .b32 t; mov.b32 t, %r4; ex2.approx.f32 %r3, t; }
    mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1, %f2, %f3, %f4},
    {%r1, %r2, %r3, %r4}, {%r5, %r6}, {%f1, %f2, %f3, %f4};
    st.global.b32 [%rd7], %r3;
$L__BB0_2:
    @!%p1 ret;
}
";
        assert_eq!(canonicalize(SAMPLE), expected);
    }

    #[test]
    fn canon_is_idempotent_and_ignores_llvm_header_and_comment_churn() {
        let once = canonicalize(SAMPLE);
        assert_eq!(canonicalize(&once), once);
        let other_llvm = SAMPLE
            .replace(
                "Generated by LLVM NVPTX Back-End",
                "Generated by LLVM NVPTX Back-End 23.0.0git",
            )
            .replace("// %entry", "// %start")
            .replace("mov.u32 \t%r1", "mov.u32     %r1");
        assert_eq!(canonicalize(&other_llvm), once);
    }

    #[test]
    fn canon_keeps_strings_intact() {
        let ptx = "\t.pragma  \"no  unroll // not a comment\";  // comment\n";
        assert_eq!(
            canonicalize(ptx),
            "    .pragma \"no  unroll // not a comment\";\n"
        );
        assert_eq!(canonicalize("// only comments\n\n  \t\n"), "");
    }

    #[test]
    fn canon_counts_instructions_by_base() {
        let counts = instruction_counts(SAMPLE);
        let expected: BTreeMap<String, usize> = [
            ("mov", 2),
            ("setp", 1),
            ("bra", 1),
            ("ld", 1),
            ("bar", 1),
            ("ex2", 1),
            ("mma", 1),
            ("st", 1),
            ("ret", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(counts, expected);
    }

    #[test]
    fn canon_counts_by_prefix() {
        assert_eq!(count_prefix(SAMPLE, "mma.sync.aligned.m16n8k16"), 1);
        assert_eq!(count_prefix(SAMPLE, "mma.sync.aligned.m16n8k8"), 0);
        assert_eq!(count_prefix(SAMPLE, "ld.global"), 1);
        assert_eq!(count_prefix(SAMPLE, "st."), 1);
        assert_eq!(
            count_prefix(SAMPLE, "bra"),
            1,
            "predicate is not part of the opcode"
        );
        // Canonicalisation must not change what is counted.
        assert_eq!(opcodes(&canonicalize(SAMPLE)), opcodes(SAMPLE));
    }

    #[test]
    fn canon_counts_across_functions_and_line_directives() {
        let ptx = "\
.version 8.0
.target sm_90a
.address_size 64
.global .align 4 .b32 table[2] = {1, 2};
.func f()
{
\t.loc 1 2 3
\tcp.async.ca.shared.global [%r1], [%rd1], 16;
\tcp.async.commit_group;
\tret;
}
.visible .entry g()
{
L1: shfl.sync.bfly.b32 %r1, %r2, 1, 31, -1;
\tldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r1, %r2, %r3, %r4}, [%r5];
\t{ .reg .pred p; setp.eq.u32 p, %r1, 0; @p bra L1; }
\tret;
}
";
        let c = instruction_counts(ptx);
        assert_eq!(c.get("cp"), Some(&2));
        assert_eq!(c.get("ret"), Some(&2));
        assert_eq!(c.get("shfl"), Some(&1));
        assert_eq!(c.get("ldmatrix"), Some(&1));
        assert_eq!(c.get("setp"), Some(&1));
        assert_eq!(c.get("bra"), Some(&1));
        assert_eq!(c.values().sum::<usize>(), 8, "{c:?}");
        assert_eq!(count_prefix(ptx, "cp.async"), 2);
    }
}
