//! Small text helpers every layer shares: cutting text at a byte budget, hex,
//! milliseconds. One copy of each, so a cut never splits a character in one
//! place and not in another.

use std::time::Duration;

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest suffix of `s` that is at most `max` bytes and starts on a character boundary.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// What a client sent, cut to `max` characters for a message (with `…` if cut).
pub fn shown(s: &str, max: usize) -> String {
    let mut shown: String = s.chars().take(max).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    shown
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A duration in milliseconds, rounded to two decimals (logs, transcripts).
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        assert_eq!(head("aé", 2), "a");
        assert_eq!(head("aé", 3), "aé");
        assert_eq!(tail("éa", 2), "a");
        assert_eq!(tail("éa", 3), "éa");
        assert_eq!(hex(&[0, 0xab]), "00ab");
        assert_eq!(ms(Duration::from_micros(1234)), 1.23);
    }
}
