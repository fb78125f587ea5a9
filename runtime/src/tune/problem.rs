//! The problem a schedule is tuned for: batch, heads of q and of k/v, and both sequence lengths.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tessera_codegen::reference::Shape;
use tessera_desc::{KernelDesc, Visit, check_window_extents};

/// Q is `[batch, heads, seq_q, head_dim]`, K and V `[batch, kv_heads, seq_kv, head_dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
}

impl Problem {
    /// Query heads per K/V head (1 without grouped-query attention).
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }

    /// Why this problem cannot be launched, if it cannot: the same limits `Attention::run`
    /// checks, found before anything is compiled or allocated.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("batch", self.batch),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("seq_q", self.seq_q),
            ("seq_kv", self.seq_kv),
        ];
        for (name, v) in fields {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
            if i32::try_from(v).is_err() {
                return Err(format!("{name} = {v} does not fit in i32"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "kv_heads ({}) must divide heads ({})",
                self.kv_heads, self.heads
            ));
        }
        Ok(())
    }

    /// [`Problem::check`], and what `desc` asks of a problem: a neighborhood is
    /// self-attention over one grid, whose extent must hold the window.
    pub fn check_for(&self, desc: &KernelDesc) -> Result<(), String> {
        self.check()?;
        if let Visit::Window(w) = desc.visit {
            if self.seq_q != self.seq_kv {
                return Err(format!(
                    "a window kernel needs seq_q = seq_kv, got {} and {}",
                    self.seq_q, self.seq_kv
                ));
            }
            check_window_extents(&w, &[self.seq_q])?;
        }
        Ok(())
    }

    pub fn q_dims(&self, head_dim: usize) -> [usize; 4] {
        [self.batch, self.heads, self.seq_q, head_dim]
    }

    pub fn kv_dims(&self, head_dim: usize) -> [usize; 4] {
        [self.batch, self.kv_heads, self.seq_kv, head_dim]
    }

    /// The small problem each candidate must get right before it is timed: lengths that are no
    /// multiple of any tile (so the bounds checks run), the same GQA group and the same
    /// ordering of seq_q against seq_kv (so a causal kernel's bottom-right alignment is
    /// exercised as in the real problem). A window gets the smallest ragged length that holds
    /// it (at least 131), so that its border shifts are exercised too.
    pub fn check_shape(&self, desc: &KernelDesc) -> Shape {
        const SEQ: usize = 131;
        let (seq_q, seq_kv) = match desc.visit {
            Visit::Window(w) => {
                let span = w
                    .axes()
                    .iter()
                    .map(|a| a.size as usize * a.dilation as usize);
                let mut seq = span.max().unwrap_or(0).max(SEQ);
                if seq % 16 == 0 {
                    seq += 3;
                }
                let seq = match check_window_extents(&w, &[seq]) {
                    Ok(()) => seq,
                    // Whatever the rule wants beyond the span, the real problem satisfies it.
                    Err(_) => self.seq_q,
                };
                (seq, seq)
            }
            _ => match self.seq_kv.cmp(&self.seq_q) {
                Ordering::Greater => (SEQ, 197),
                Ordering::Less => (SEQ, 67),
                Ordering::Equal => (SEQ, SEQ),
            },
        };
        Shape {
            batch: 1,
            heads: 2 * self.group(),
            kv_heads: 2,
            seq_q,
            seq_kv,
            head_dim: desc.head_dim as usize,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{}",
            self.batch, self.heads, self.kv_heads, self.seq_q, self.seq_kv
        )
    }
}

/// `B,H,HKV,SQ,SKV`, as `--shape` takes it.
impl FromStr for Problem {
    type Err = String;

    fn from_str(s: &str) -> Result<Problem, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [b, h, hkv, sq, skv] = parts.as_slice() else {
            return Err(format!(
                "`{s}` is not B,H,HKV,SQ,SKV (batch, heads, kv heads, seq_q, seq_kv)"
            ));
        };
        let num = |name: &str, v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{name} `{v}` is not a count"))
        };
        let p = Problem {
            batch: num("batch", b)?,
            heads: num("heads", h)?,
            kv_heads: num("kv heads", hkv)?,
            seq_q: num("seq_q", sq)?,
            seq_kv: num("seq_kv", skv)?,
        };
        p.check()?;
        Ok(p)
    }
}
