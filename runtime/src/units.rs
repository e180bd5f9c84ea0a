//! Quantities for people: one way to print a size everywhere (inspect,
//! cache pruning, downloads).

/// `512 B`, `40.0 MiB`: binary units, one decimal.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)] // a display value
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(40 << 20), "40.0 MiB");
        assert_eq!(human_size(3 << 30 | 512 << 20), "3.5 GiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }
}
