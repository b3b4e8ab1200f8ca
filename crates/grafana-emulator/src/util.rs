//! Small helpers shared by the handlers: Grafana-style avatars, ages, timestamps and identifiers.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;

/// Formats a timestamp the way Grafana's Go JSON encoder does for second-precision DB values.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Current time truncated to whole seconds (Grafana stores second-precision timestamps).
pub fn now() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp(n.timestamp(), 0).unwrap_or(n)
}

/// `util.GetAgeString`: "10y", "3M", "2d", "5h", "7m" or "< 1 minute".
pub fn age_string(t: DateTime<Utc>) -> String {
    let minutes = (Utc::now() - t).num_seconds() as f64 / 60.0;
    let years = (minutes / 525_600.0).floor() as i64;
    let months = (minutes / 43_800.0).floor() as i64;
    let days = (minutes / 1_440.0).floor() as i64;
    let hours = (minutes / 60.0).floor() as i64;
    if years > 0 {
        format!("{years}y")
    } else if months > 0 {
        format!("{months}M")
    } else if days > 0 {
        format!("{days}d")
    } else if hours > 0 {
        format!("{hours}h")
    } else if minutes as i64 > 0 {
        format!("{}m", minutes as i64)
    } else {
        "< 1 minute".to_string()
    }
}

/// `dtos.GetGravatarUrl`: `/avatar/<md5(lower(text))>`, empty for empty text.
pub fn gravatar_url(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    format!("/avatar/{}", md5_hex(text.to_lowercase().as_bytes()))
}

/// `dtos.GetGravatarUrlWithDefault`: falls back to `<alnum(default)>@localhost`.
pub fn gravatar_url_with_default(text: &str, default_text: &str) -> String {
    if !text.is_empty() {
        return gravatar_url(text);
    }
    let cleaned: String = default_text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    gravatar_url(&format!("{cleaned}@localhost"))
}

const ALNUM_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A 14-character short UID whose first character is a letter (like `util.GenerateShortUID`).
pub fn short_uid() -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(14);
    s.push(char::from(ALNUM_LOWER[rng.random_range(0..26)]));
    for _ in 0..13 {
        s.push(char::from(ALNUM_LOWER[rng.random_range(0..ALNUM_LOWER.len())]));
    }
    s
}

/// A service-account token in Grafana's `glsa_<32 alnum>_<8 hex>` shape.
pub fn sa_token() -> String {
    let mut rng = rand::rng();
    let secret: String = (0..32)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect();
    let checksum: u32 = rng.random();
    format!("glsa_{secret}_{checksum:08x}")
}

/// `ACE` followed by ten random digits, as in RBAC denial bodies.
pub fn access_error_id() -> String {
    let mut rng = rand::rng();
    let digits: String = (0..10)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    format!("ACE{digits}")
}

/// Case-insensitive (ASCII and Unicode lowercase) substring test used for `LIKE %q%` filters.
pub fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

/// Minimal MD5 (RFC 1321), only used for gravatar-style avatar URLs.
pub fn md5_hex(input: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in md5(input) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The MD5 digest of `input` (blocks are hashed in place; only the padded tail is copied).
fn md5(input: &[u8]) -> [u8; 16] {
    let mut state: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    let mut blocks = input.chunks_exact(64);
    for block in &mut blocks {
        md5_block(&mut state, block);
    }
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bit_len = (input.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        md5_block(&mut state, block);
    }
    let mut digest = [0u8; 16];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_le_bytes());
    }
    digest
}

fn md5_block(state: &mut [u32; 4], block: &[u8]) {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15,
        21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
        0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
        0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
        0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
        0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
        0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
        0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
    ];
    let mut m = [0u32; 16];
    for (w, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let f = f.wrapping_add(a).wrapping_add(K[i]).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(f.rotate_left(S[i]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        // Lengths around the padding boundaries (55/56/64 bytes) and more than one block.
        assert_eq!(md5_hex(&[b'a'; 55]), "ef1772b6dff9a122358552954ad0df65");
        assert_eq!(md5_hex(&[b'a'; 56]), "3b0c8ac703f828b04c6c197006d17218");
        assert_eq!(md5_hex(&[b'a'; 64]), "014842d480b571495a4a0363793f7367");
        assert_eq!(md5_hex(&[b'a'; 130]), "e016e4ccc7fdaea56fc377600b58c4cb");
    }

    #[test]
    fn short_uid_shape() {
        let u = short_uid();
        assert_eq!(u.len(), 14);
        assert!(u.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    }

    #[test]
    fn token_shape() {
        let t = sa_token();
        assert!(t.starts_with("glsa_"));
        assert_eq!(t.len(), 5 + 32 + 1 + 8);
    }
}
