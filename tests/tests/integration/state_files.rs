//! The state a start remembers (known signers, minimum versions) is read,
//! changed and written under a lock (runtime::state_file::update), so
//! starts at the same time do not lose each other's updates: each start
//! used to read the file, add its entry, and replace the file with its own
//! view, and the last writer won.
//!
//! Real processes: many release stubs (`--smolvm-dry-run`) of different
//! names started at once against one state directory.

use crate::common;

use std::path::PathBuf;
use std::process::Child;

use common::Machine;

/// How many starts run at once: enough that, without the lock, starts
/// overlap between their read and their write (measured: every round lost
/// entries before the lock).
const STARTS: usize = 12;

fn start_all(m: &Machine, apps: &[PathBuf], args: &[&str]) {
    let children: Vec<Child> = apps
        .iter()
        .map(|app| loop {
            let mut cmd = m.command(app, args);
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.unwrap(),
            }
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::err_text(&out));
    }
}

fn entries(path: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object().unwrap().len()
}

/// First starts of many names at once, with no trusted keys: every name's
/// signer is pinned; with a trusted key: every name's minimum version is
/// remembered.
#[test]
fn starts_at_the_same_time_keep_every_update() {
    let Some(m) = Machine::new() else {
        return;
    };
    let apps: Vec<PathBuf> = (0..STARTS)
        .map(|i| m.pack(&format!("tool{i}"), "1.0.0", "test"))
        .collect();
    // Warm the shared cache once, so the starts below spend their time
    // together, not one extraction each.
    let key = m.key_flag("test");
    m.run(&apps[0], &[&key]);
    std::fs::remove_file(m.state_file()).unwrap();
    for round in 0..3 {
        let known = m.path("state/smolvm/known-signers.json");
        let _ = std::fs::remove_file(&known);
        start_all(&m, &apps, &[]);
        assert_eq!(entries(&known), STARTS, "round {round}: pins lost");
        let _ = std::fs::remove_file(m.state_file());
        start_all(&m, &apps, &[&key]);
        assert_eq!(
            entries(&m.state_file()),
            STARTS,
            "round {round}: minimum versions lost"
        );
    }
}
