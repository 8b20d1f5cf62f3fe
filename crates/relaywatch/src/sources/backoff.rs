//! Retry delays with jitter, for every source that reconnects or re-polls after a failure.
//!
//! A deterministic backoff (0.5 s, 1 s, 2 s, … capped) retries at fixed offsets, and against
//! a source that flaps with a fixed period those offsets can land in its down phase every
//! time: a 2 s flap was never seen up in 30 s. Random delays decorrelate the retries from any
//! period, so each retry has an independent chance of landing in an up phase.
//!
//! [`next_delay`] is pure (the caller passes the random number), so it is table-tested.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay before the next retry: uniform in `[base, 3 × previous]`, capped at `max`
/// ("decorrelated jitter"). Pass `Duration::ZERO` as `previous` for the first retry (gives
/// `base`). `random` is a number in `[0, 1]`, e.g. [`random_unit`]; values outside are
/// clamped, NaN counts as 0.5.
///
/// It grows about 1.5× per retry on average, like doubling with full jitter, but never
/// below `base`, so a failing source is not hammered.
pub fn next_delay(previous: Duration, base: Duration, max: Duration, random: f64) -> Duration {
    let random = if random.is_nan() {
        0.5
    } else {
        random.clamp(0.0, 1.0)
    };
    let base = base.min(max);
    let high = previous.saturating_mul(3).clamp(base, max);
    base + (high - base).mul_f64(random)
}

/// A random number in `[0, 1)` from std's per-process random hash keys: no dependency, no
/// IO, and different in every process and call (enough for jitter; not for secrets).
pub fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn delays_stay_between_base_and_max() {
        let cases = [
            // (previous, random, expected)
            (Duration::ZERO, 0.0, ms(500)),
            (Duration::ZERO, 1.0, ms(500)),
            (ms(500), 0.0, ms(500)),
            (ms(500), 1.0, ms(1500)),
            (ms(500), 0.5, ms(1000)),
            (ms(4000), 1.0, MAX),
            (MAX, 0.0, ms(500)),
            (MAX, 1.0, MAX),
            (Duration::MAX, 1.0, MAX),
            (ms(500), -3.0, ms(500)),
            (ms(500), 7.0, ms(1500)),
            (ms(500), f64::NAN, ms(1000)),
            (ms(500), f64::INFINITY, ms(1500)),
        ];
        for (previous, random, expected) in cases {
            assert_eq!(
                next_delay(previous, BASE, MAX, random),
                expected,
                "{previous:?} {random}"
            );
        }
        // A base above max is capped too.
        assert_eq!(next_delay(ms(1), ms(5000), ms(100), 0.3), ms(100));
        assert_eq!(
            next_delay(ms(1), Duration::ZERO, Duration::ZERO, 0.3),
            Duration::ZERO
        );
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let values: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let distinct: std::collections::BTreeSet<u64> =
            values.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > 990, "{} distinct of 1000", distinct.len());
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    /// splitmix64, seeded: the simulation below is deterministic.
    fn rng(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// When, within `horizon`, a source that is up only in `[0, up)` of every `period` is first
    /// seen up by retries `delay(previous)` apart, starting at `start` (retries take no time).
    fn first_seen_up(
        start: f64,
        period: f64,
        up: f64,
        horizon: f64,
        mut delay: impl FnMut(Duration) -> Duration,
    ) -> Option<f64> {
        let mut t = start;
        let mut previous = Duration::ZERO;
        while t < horizon {
            if t.rem_euclid(period) < up {
                return Some(t);
            }
            previous = delay(previous);
            t += previous.as_secs_f64();
        }
        None
    }

    /// The case: a source flapping with a 2 s period, here up for 0.5 s of it. The old
    /// deterministic doubling (0.5 s, 1 s, 2 s, … 10 s: after the third retry all multiples of
    /// the period) phase-locks and never sees it up; with jitter each retry has its own chance.
    #[test]
    fn jitter_does_not_phase_lock_with_a_flapping_source() {
        let doubling = |previous: Duration| (previous * 2).clamp(BASE, MAX);
        // Started at 1.0 s into the period: retries at 1.5, 2.5, 4.5, 8.5, 16.5, 26.5, 36.5, …
        // all land 0.5 s into a period, just after the up phase.
        assert_eq!(first_seen_up(1.0, 2.0, 0.5, 30.0, doubling), None);
        assert_eq!(
            first_seen_up(1.0, 2.0, 0.5, 3600.0, doubling),
            None,
            "never, not just late"
        );

        let mut random = rng(0x6a69_7474_6572);
        let starts = 1000;
        let mut within_30s = 0;
        let mut within_120s = 0;
        for i in 0..starts {
            let start = 0.5 + 1.5 * f64::from(i) / f64::from(starts); // inside the down phase
            let jittered = |previous: Duration| next_delay(previous, BASE, MAX, random());
            match first_seen_up(start, 2.0, 0.5, start + 120.0, jittered) {
                Some(seen) if seen - start <= 30.0 => within_30s += 1,
                Some(_) => {}
                None => continue,
            }
            within_120s += 1;
        }
        eprintln!("jittered backoff against a 0.5 s-in-2 s flap, {starts} starts: {within_30s} seen up within 30 s, {within_120s} within 120 s");
        // Each retry has a 1-in-4 chance; about 8 retries fit in 30 s (≈ 90 %) and ≈ 17 in 120 s.
        assert!(within_30s * 100 >= starts * 80, "{within_30s}");
        assert!(within_120s * 1000 >= starts * 990, "{within_120s}");
    }
}
