//! The modalias matcher: `fnmatch(3)` without flags, over bytes, as kmod applies the
//! `alias=` patterns of a module's `.modinfo` to a device's `modalias`.
//!
//! `*` matches any run of bytes (including `/` and none), `?` any one byte, `[...]` a set
//! (`a-z` ranges, `!` or `^` first to negate, `]` first to include it), `\x` the byte `x`.
//! A malformed set (no closing `]`) matches a literal `[`, as glibc does.
//!
//! The algorithm backtracks only to the last `*`, so a match costs O(pattern × text) at
//! worst and never recurses: no pattern can blow the stack or take exponential time.

/// Whether `text` matches the glob `pattern` in full.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: pattern index after the star, text index.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(&pc) = pattern.get(p) {
            match pc {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                _ => {
                    if let Some(&tc) = text.get(t) {
                        if let Some(next_p) = single(pattern, p, tc) {
                            p = next_p;
                            t += 1;
                            continue;
                        }
                    }
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch (or pattern exhausted with text left): let the last star eat one more.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Matches one non-`*` pattern element at `p` against the byte `c`; returns the pattern
/// index after the element on a match.
fn single(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => match set(pattern, p + 1, c) {
            Some((hit, end)) => hit.then_some(end),
            // No closing bracket: the `[` is an ordinary byte.
            None => (c == b'[').then_some(p + 1),
        },
        b'\\' => match pattern.get(p + 1) {
            Some(&e) => (e == c).then_some(p + 2),
            None => (c == b'\\').then_some(p + 1),
        },
        &pc => (pc == c).then_some(p + 1),
    }
}

/// Parses the set starting after its `[` at `start`; returns whether `c` is in it and the
/// index after the closing `]`, or `None` when the set is not closed.
fn set(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = match *pattern.get(i)? {
            b']' if !first => return Some((hit != negate, i + 1)),
            b'\\' => {
                i += 1;
                *pattern.get(i)?
            }
            b => b,
        };
        first = false;
        i += 1;
        // A range `lo-hi`, unless the `-` is last in the set.
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&b| b != b']') {
            let mut hi = *pattern.get(i + 1)?;
            i += 2;
            if hi == b'\\' {
                hi = *pattern.get(i)?;
                i += 1;
            }
            if lo <= c && c <= hi {
                hit = true;
            }
        } else if lo == c {
            hit = true;
        }
    }
}

/// The bytes before the first wildcard of `pattern`: every text it matches starts with
/// them, so a caller can reject most patterns with one `starts_with`.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    pattern.get(..end).unwrap_or(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abd"));
        assert!(m("*", ""));
        assert!(m("*", "anything/at:all"));
        assert!(m("a*", "a"));
        assert!(m("a*c", "abbbc"));
        assert!(!m("a*c", "abbbd"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("**", "x"));
    }

    #[test]
    fn sets() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]", "b"));
        assert!(m("[^a-c]", "d"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(m("[a-]", "-"));
        assert!(m("[\\]]", "]"));
        // Unclosed: a literal '['.
        assert!(m("[ab", "[ab"));
        assert!(!m("[ab", "a"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
    }

    #[test]
    fn real_modaliases() {
        // virtio_net and virtio_blk.
        assert!(m("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!m("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        // virtio_pci: any device of vendor 1AF4.
        let pci = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        assert!(m("pci:v00001AF4d*sv*sd*bc*sc*i*", pci));
        // e1000e-style specific id.
        assert!(!m("pci:v00008086d000010D3sv*sd*bc*sc*i*", pci));
        // usb-storage style with bracket sets.
        assert!(m(
            "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"
        ));
        assert!(m(
            "usb:v0781p5567d0[0-1]*dc*",
            "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"
        ));
        // acpi button.
        assert!(m("acpi*:PNP0C0C:*", "acpi:PNP0C0C:"));
        assert!(m(
            "cpu:type:x86,ven*fam*mod*:feature:*0071*",
            "cpu:type:x86,ven0002fam0006mod0006:feature:,0000,0071,0080"
        ));
    }

    #[test]
    fn pathological_patterns_are_linear() {
        let text = "a".repeat(4000);
        let pattern = "*a".repeat(200) + "b";
        assert!(!m(&pattern, &text));
    }

    #[test]
    fn prefix() {
        assert_eq!(literal_prefix(b"pci:v00001AF4d*"), b"pci:v00001AF4d");
        assert_eq!(literal_prefix(b"*x"), b"");
        assert_eq!(literal_prefix(b"abc"), b"abc");
        assert_eq!(literal_prefix(b"ab[c]"), b"ab");
    }
}
