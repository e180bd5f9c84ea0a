//! Start-up phase timings, printed to stderr when `SMOLVM_TRACE=1`.

use std::time::Instant;

/// Phase timings printed to stderr when enabled.
pub struct Trace {
    start: Instant,
    enabled: bool,
}

impl Trace {
    /// Enabled by `SMOLVM_TRACE=1` (read here, once, at the edge).
    pub fn new() -> Trace {
        Trace {
            start: Instant::now(),
            enabled: std::env::var_os("SMOLVM_TRACE").is_some_and(|v| v == "1"),
        }
    }

    pub fn mark(&self, phase: &str) {
        if self.enabled {
            eprintln!(
                "smolvm-trace: {:>9.3} ms  {phase}",
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}
