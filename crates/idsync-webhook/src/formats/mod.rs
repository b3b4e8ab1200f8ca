//! The payload formats: idsync's generic JSON and the native Okta and Keycloak deliveries, each mapped to
//! `LoginEvent`s. Pure functions over parsed bodies; authentication happens before any of this runs.

pub(crate) mod generic;
pub(crate) mod keycloak;
pub(crate) mod okta;

use idsync_core::LoginEvent;

use crate::reject::Reject;

/// Longest accepted event id, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 128;
/// Longest accepted login, in bytes.
pub(crate) const MAX_LOGIN_BYTES: usize = 256;

/// What a native delivery maps to: the login events to enqueue and, per ignored event, why.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub events: Vec<LoginEvent>,
    pub ignored: Vec<&'static str>,
}

/// A sender's event id: 1–128 bytes, no control characters.
pub(crate) fn check_id(id: &str) -> Result<(), Reject> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Reject::bad_request(format!(
            "the event id must be 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// A login: 1–256 bytes once trimmed, no control characters. Returns the trimmed login.
pub(crate) fn check_login(login: &str) -> Result<&str, Reject> {
    let trimmed = login.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_LOGIN_BYTES || trimmed.chars().any(char::is_control) {
        return Err(Reject::bad_request(format!(
            "the login must be 1 to {MAX_LOGIN_BYTES} bytes without control characters"
        )));
    }
    Ok(trimmed)
}

/// A random version-4 UUID, for events that arrive without an id.
pub(crate) fn generated_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A time the sender gave, kept only when it is RFC 3339.
fn rfc3339(value: Option<String>) -> Option<String> {
    value.filter(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v4_uuids() {
        let a = generated_id();
        let b = generated_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert!(check_id(&a).is_ok());
    }

    #[test]
    fn ids_and_logins_are_bounded() {
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(129)).is_err());
        assert!(check_id("a\nb").is_err());
        assert_eq!(check_login("  alice ").unwrap(), "alice");
        assert!(check_login("   ").is_err());
        assert!(check_login(&"x".repeat(257)).is_err());
    }
}
