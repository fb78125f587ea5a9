//! Early elimination, kept free of the GPU so that it can be tested on synthetic timings.
//!
//! Every candidate first gets a short measurement ([`QUICK_REPS`] launches). One slower than
//! [`FACTOR`] times the best time seen so far is dropped; the others are timed in full. A
//! factor of 1.5 is far outside the run-to-run noise of a median of three launches with the L2
//! flushed (a few percent), so no candidate that could win is dropped, while the clearly bad
//! half of a typical space costs three launches instead of a dozen.

/// Launches in the short measurement.
pub const QUICK_REPS: usize = 3;
/// How much slower than the best so far a short measurement may be and still go on.
pub const FACTOR: f64 = 1.5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Worth a full measurement.
    Continue,
    /// Slower than `FACTOR` × `best_ms`.
    Eliminated { best_ms: f64 },
}

/// The best time so far, shared by every candidate of a sweep (on every GPU).
#[derive(Clone, Debug)]
pub struct Race {
    factor: f64,
    best_ms: Option<f64>,
}

impl Race {
    pub fn new(factor: f64) -> Race {
        Race {
            factor,
            best_ms: None,
        }
    }

    pub fn best_ms(&self) -> Option<f64> {
        self.best_ms
    }

    /// Records a time as a reference: a full measurement, or a stored winner's median when a
    /// sweep resumes.
    pub fn record(&mut self, ms: f64) {
        if ms.is_finite() {
            self.best_ms = Some(self.best_ms.map_or(ms, |b| b.min(ms)));
        }
    }

    /// Judges a short measurement; one that goes on also becomes a reference.
    pub fn judge(&mut self, quick_ms: f64) -> Verdict {
        match self.best_ms {
            Some(best) if quick_ms > self.factor * best || !quick_ms.is_finite() => {
                Verdict::Eliminated { best_ms: best }
            }
            _ => {
                self.record(quick_ms);
                Verdict::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slower_than_the_factor_is_eliminated_against_the_best_so_far() {
        let mut race = Race::new(1.5);
        let verdicts: Vec<Verdict> = [10.0, 16.0, 14.9, 9.0, 14.0, 13.5]
            .into_iter()
            .map(|ms| race.judge(ms))
            .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Continue,
                Verdict::Eliminated { best_ms: 10.0 },
                Verdict::Continue,
                Verdict::Continue,
                Verdict::Eliminated { best_ms: 9.0 },
                // Exactly 1.5×: kept, the rule is strictly slower.
                Verdict::Continue,
            ]
        );
        assert_eq!(race.best_ms(), Some(9.0));
    }

    #[test]
    fn full_measurements_and_stored_winners_tighten_the_reference() {
        let mut race = Race::new(1.5);
        race.record(4.0);
        assert_eq!(race.judge(6.5), Verdict::Eliminated { best_ms: 4.0 });
        assert_eq!(race.judge(5.0), Verdict::Continue);
        race.record(f64::NAN);
        assert_eq!(race.best_ms(), Some(4.0));
        // A full median below the quick one it followed becomes the reference.
        race.record(3.0);
        assert_eq!(race.judge(4.6), Verdict::Eliminated { best_ms: 3.0 });
    }

    #[test]
    fn the_first_candidate_always_goes_on_and_nan_never_does() {
        let mut race = Race::new(1.5);
        assert_eq!(race.judge(1000.0), Verdict::Continue);
        assert_eq!(
            race.judge(f64::NAN),
            Verdict::Eliminated { best_ms: 1000.0 }
        );
    }
}
