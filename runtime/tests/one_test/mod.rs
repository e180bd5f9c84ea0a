//! These test binaries are their own harness (`harness = false`): each is
//! one process, since what its checks install (seccomp filters, Landlock,
//! blocked signals, a kernel mapping) lasts for the life of the process.
//! To a test runner each is one test named `checks`: cargo-nextest lists a
//! binary's tests with `--list --format terse` and then runs one as
//! `checks --exact --nocapture`, which the checks ignore.

/// Answers a `--list` (nextest, or `cargo test -- --list`) and returns
/// true; false when the binary should run its checks.
pub fn answered_list() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--list") {
        return false;
    }
    // Nothing here is #[ignore]d: the ignored list is empty.
    if !args.iter().any(|a| a == "--ignored") {
        println!("checks: test");
    }
    true
}
