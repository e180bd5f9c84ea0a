//! Untrusted text made safe for a terminal (a leaf: inspect, consent and
//! rotation messages all use it).

use std::borrow::Cow;
use std::fmt::Write as _;

/// A string from the manifest (or an error quoting one) made safe for a
/// terminal: control characters (C0 including ESC and newline, DEL, C1) and
/// the bidirectional-override characters are written as `\u{..}`, so an
/// artifact cannot move the cursor, recolour, or rewrite a line such as
/// "signature ... valid, trusted key". Every manifest-derived string in
/// human output goes through here; JSON output stays exact.
pub fn escape_untrusted(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
