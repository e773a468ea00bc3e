//! Exponential backoff with a cap and jitter for transient failures.

use std::time::Duration;

use crate::config::RetryConfig;

/// Delays for successive retries: about `initial`, `2·initial`, `4·initial`, … capped at `max`,
/// each scaled by a random factor in [0.5, 1) so that many replicators do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            initial: Duration::from_millis(config.initial_ms),
            max: Duration::from_millis(config.max_ms),
            attempt: 0,
        }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.saturating_mul(factor).min(self.max);
        base.mul_f64(rand::random_range(0.5..1.0))
    }

    /// Retries since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The operation succeeded: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut backoff = Backoff::new(&RetryConfig {
            once_attempts: 5,
            initial_ms: 100,
            max_ms: 1_000,
        });
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] < Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d < Duration::from_millis(1_000)));
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(100));
    }
}
