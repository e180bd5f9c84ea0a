//! `smolvm pack cache ls` and `smolvm pack prune`: what the per-user cache
//! holds, and removing what is not needed, never what a running machine
//! holds (see `smolvm_runtime::cache`: starts hold a shared lock, removal
//! takes an exclusive non-blocking one and skips busy entries).
//!
//! Which entries go (pure, [`plan`]):
//! - `--keep-last N` keeps the N most recently used entries of each kind
//!   (kernels, root images, blobs); with no other option, everything else
//!   goes.
//! - `--older-than D` removes entries last used more than D ago.
//! - `--max-size S` removes the least recently used entries until the cache
//!   is at most S.
//! - No option: every entry not in use goes.
//!
//! Options combine: `--keep-last` protects, the others select.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use smolvm_runtime::cache::{CacheEntry, EntryKind, Removal};

/// What to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<usize>,
    pub older_than: Option<Duration>,
    pub max_size: Option<u64>,
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Removed,
    /// `--dry-run`: would be removed.
    WouldRemove,
    /// A running machine holds it.
    Busy,
}

/// The entries to try to remove, least recently used first, and for
/// `--max-size` the total to get down to (entries after it is reached are
/// not removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Removed whatever the size: selected by age, or by no option at all.
    pub always: Vec<usize>,
    /// Removed, oldest first, only while the cache is over `max_size`.
    pub while_over: Vec<usize>,
}

/// Which entries of `entries` the policy selects (indices), given `now`.
pub fn plan(entries: &[CacheEntry], policy: &Policy, now: SystemTime) -> Plan {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // Least recently used first; ties by kind and hash so the order is fixed.
    order.sort_by(|&a, &b| {
        let (x, y) = (&entries[a], &entries[b]);
        (x.last_used, x.kind, &x.hash).cmp(&(y.last_used, y.kind, &y.hash))
    });
    let mut protected = vec![false; entries.len()];
    if let Some(n) = policy.keep_last {
        let mut per_kind: BTreeMap<EntryKind, usize> = BTreeMap::new();
        for &i in order.iter().rev() {
            let seen = per_kind.entry(entries[i].kind).or_default();
            if *seen < n {
                protected[i] = true;
            }
            *seen += 1;
        }
    }
    let selects_nothing_else = policy.older_than.is_none() && policy.max_size.is_none();
    let mut always = Vec::new();
    let mut while_over = Vec::new();
    for &i in &order {
        if protected[i] {
            continue;
        }
        let age = now
            .duration_since(entries[i].last_used)
            .unwrap_or(Duration::ZERO);
        let old = policy.older_than.is_some_and(|d| age > d);
        if selects_nothing_else || old {
            always.push(i);
        } else if policy.max_size.is_some() {
            while_over.push(i);
        }
    }
    Plan { always, while_over }
}

/// Carries out `plan`: `remove` is tried on each entry in turn (a busy one
/// is kept and the next one tried); with `dry_run` nothing is removed and
/// busy entries are found by `busy`. Returns what happened to each entry
/// tried, in order.
pub fn execute<E>(
    entries: &[CacheEntry],
    plan: &Plan,
    max_size: Option<u64>,
    dry_run: bool,
    mut remove: impl FnMut(&CacheEntry) -> Result<Removal, E>,
    mut busy: impl FnMut(&CacheEntry) -> Result<bool, E>,
) -> Result<Vec<(usize, Outcome)>, E> {
    let mut total: u64 = entries.iter().map(|e| e.size).sum();
    let mut done = Vec::new();
    let mut attempt = |i: usize, total: &mut u64| -> Result<(), E> {
        let e = &entries[i];
        let outcome = if dry_run {
            if busy(e)? {
                Outcome::Busy
            } else {
                Outcome::WouldRemove
            }
        } else {
            match remove(e)? {
                Removal::Removed => Outcome::Removed,
                Removal::Busy => Outcome::Busy,
                Removal::Gone => {
                    *total = total.saturating_sub(e.size);
                    return Ok(());
                }
            }
        };
        if outcome != Outcome::Busy {
            *total = total.saturating_sub(e.size);
        }
        done.push((i, outcome));
        Ok(())
    };
    for &i in &plan.always {
        attempt(i, &mut total)?;
    }
    if let Some(limit) = max_size {
        for &i in &plan.while_over {
            if total <= limit {
                break;
            }
            attempt(i, &mut total)?;
        }
    }
    Ok(done)
}

/// `10G`, `512M`, `1.5GiB`, `300000` (bytes): binary units (K = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size: give a number with K, M, G or T (binary: 1K = 1024 bytes), like 10G or 512M"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: give a number like 10G or 512M"))?;
    #[allow(clippy::cast_precision_loss)] // sizes far below 2^53 bytes
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || !(0.0..1.8e19).contains(&bytes) {
        return Err(format!("{s:?} is out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
    Ok(bytes as u64)
}

/// `30d`, `12h`, `1week 2days` (humantime).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); give one like 30d, 12h or 2weeks"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const DAY: Duration = Duration::from_secs(86_400);

    fn entry(kind: EntryKind, n: u8, size: u64, days_ago: u64, now: SystemTime) -> CacheEntry {
        CacheEntry {
            kind,
            hash: format!("{n:064x}"),
            path: PathBuf::from(format!("/nonexistent/{n}")),
            size,
            last_used: now - DAY * u32::try_from(days_ago).unwrap(),
        }
    }

    fn fixture() -> (Vec<CacheEntry>, SystemTime) {
        let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let e = vec![
            entry(EntryKind::Rootfs, 0, 100, 10, now),
            entry(EntryKind::Rootfs, 1, 100, 1, now),
            entry(EntryKind::Rootfs, 2, 100, 5, now),
            entry(EntryKind::Kernel, 3, 20, 30, now),
            entry(EntryKind::Blob, 4, 50, 2, now),
        ];
        (e, now)
    }

    fn hashes(e: &[CacheEntry], idx: &[usize]) -> Vec<u8> {
        idx.iter()
            .map(|&i| u8::from_str_radix(&e[i].hash[62..], 16).unwrap())
            .collect()
    }

    #[test]
    fn no_option_selects_everything_oldest_first() {
        let (e, now) = fixture();
        let p = plan(&e, &Policy::default(), now);
        assert_eq!(hashes(&e, &p.always), vec![3, 0, 2, 4, 1]);
        assert!(p.while_over.is_empty());
    }

    #[test]
    fn keep_last_keeps_the_most_recently_used_of_each_kind() {
        let (e, now) = fixture();
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let p = plan(&e, &policy, now);
        // Rootfs 1 (newest root), kernel 3 and blob 4 (only ones) stay.
        assert_eq!(hashes(&e, &p.always), vec![0, 2]);
    }

    #[test]
    fn older_than_selects_by_last_use_and_keep_last_protects() {
        let (e, now) = fixture();
        let mut policy = Policy {
            older_than: Some(DAY * 4),
            ..Policy::default()
        };
        assert_eq!(hashes(&e, &plan(&e, &policy, now).always), vec![3, 0, 2]);
        policy.keep_last = Some(1);
        assert_eq!(hashes(&e, &plan(&e, &policy, now).always), vec![0, 2]);
    }

    #[test]
    fn max_size_removes_least_recently_used_until_under_and_skips_busy() {
        let (e, now) = fixture();
        let policy = Policy {
            max_size: Some(200),
            ..Policy::default()
        };
        let p = plan(&e, &policy, now);
        assert!(p.always.is_empty());
        // Total 370: removing kernel 3 (20) and root 0 (100) gets to 250,
        // root 2 (100) to 150. Root 0 is busy: kept, so root 2 and blob 4 go.
        let busy_hash = e[0].hash.clone();
        let out = execute(
            &e,
            &p,
            policy.max_size,
            false,
            |x| {
                Ok::<_, ()>(if x.hash == busy_hash {
                    Removal::Busy
                } else {
                    Removal::Removed
                })
            },
            |_| Ok(false),
        )
        .unwrap();
        let got: Vec<(u8, Outcome)> = out.iter().map(|&(i, o)| (hashes(&e, &[i])[0], o)).collect();
        assert_eq!(
            got,
            vec![
                (3, Outcome::Removed),
                (0, Outcome::Busy),
                (2, Outcome::Removed),
                (4, Outcome::Removed),
            ]
        );
    }

    #[test]
    fn dry_run_removes_nothing() {
        let (e, now) = fixture();
        let p = plan(&e, &Policy::default(), now);
        let out = execute(
            &e,
            &p,
            None,
            true,
            |_| -> Result<Removal, ()> { panic!("removed in a dry run") },
            |_| Ok(false),
        )
        .unwrap();
        assert!(out.iter().all(|(_, o)| *o == Outcome::WouldRemove));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn sizes_and_ages_parse_with_units() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("300000").unwrap(), 300_000);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("-1G").is_err());
        assert_eq!(parse_age("30d").unwrap(), DAY * 30);
        assert!(parse_age("soon").is_err());
    }
}
