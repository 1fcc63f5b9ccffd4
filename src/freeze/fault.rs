//! Fault injection for the crate's own tests: with the `internals`
//! feature (never part of the API), `UNOTIFY_TEST_FAULT` in the
//! supervisor's environment names points (comma-separated) where the
//! re-issue machinery fails as if the kernel had refused, so that its
//! failure paths can be driven from a test. Without the feature no point
//! ever fails and nothing is read.
//!
//! Points: `reissue-busy` (the tracer refuses a re-issue after seizing
//! its caller), `reissue-after-addfd` (a failure after the re-issue's
//! files were added, as an `ADDFD` of a further file would),
//! `reissue-late` (the worker waits 50 ms for the tracer, which takes a
//! re-issue 300 ms late), `reissue-stall` (the tracer takes a re-issue
//! at once and stalls 600 ms before acting on it, the worker waiting
//! 100 ms for it, and as long again once it is taken), `reissued-freeze-fails` (the freeze of a
//! re-issued exec fails).

/// Whether fault `point` is to be injected.
#[cfg(feature = "internals")]
pub(crate) fn injected(point: &str) -> bool {
    std::env::var("UNOTIFY_TEST_FAULT").is_ok_and(|v| v.split(',').any(|p| p == point))
}

/// Whether fault `point` is to be injected: never without `internals`.
#[cfg(not(feature = "internals"))]
pub(crate) const fn injected(_point: &str) -> bool {
    false
}
