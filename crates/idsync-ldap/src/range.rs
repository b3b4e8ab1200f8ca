//! Active Directory ranged attribute retrieval. AD returns at most `MaxValRange` values of a multi-valued
//! attribute per entry (1500 by default) as `member;range=0-1499`; the rest must be requested with
//! `member;range=1500-*`, and so on, until a response ends in `*`. ldap3 does not do this by itself.

use std::future::Future;

use crate::error::LdapError;

/// The `range=START-END` option of an attribute description; `end == None` means `*` (the last chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: Option<u64>,
}

/// Parses `attr;range=START-END` (or `-*`) when its base attribute is `attr` (case-insensitively; other
/// options may precede or follow). `None` when `desc` is not a ranged form of `attr`.
pub fn parse_range(desc: &str, attr: &str) -> Option<Range> {
    let mut parts = desc.split(';');
    let base = parts.next()?;
    if !base.eq_ignore_ascii_case(attr) {
        return None;
    }
    let option = parts.find(|p| p.len() > 6 && p[..6].eq_ignore_ascii_case("range="))?;
    let (start, end) = option[6..].split_once('-')?;
    let start = start.parse().ok()?;
    let end = match end {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(Range { start, end })
}

/// The most follow-up requests one attribute may need (a million values at the default 1500 per chunk
/// needs ~670); beyond it the server is assumed to be misbehaving.
const MAX_ROUNDS: usize = 10_000;

/// Fetches the values after a first chunk that ended at `first_end`: requests `attr;range=N-*` through
/// `fetch` (which performs one base-scope read of the entry for the given attribute description and returns
/// the attribute descriptions and values it got) until a chunk ends in `*`. A response without the
/// expected range, a range that does not continue where the previous one ended, or no progress is an error,
/// never a silently short list.
pub async fn fetch_remaining<V, F, Fut>(attr: &str, first_end: u64, mut fetch: F) -> Result<Vec<V>, LdapError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Vec<(String, Vec<V>)>, LdapError>>,
{
    let mut values = Vec::new();
    let mut next = first_end + 1;
    for _ in 0..MAX_ROUNDS {
        let request = format!("{attr};range={next}-*");
        let attrs = fetch(request.clone()).await?;
        let chunk = attrs
            .into_iter()
            .find_map(|(desc, vals)| parse_range(&desc, attr).map(|range| (range, vals)));
        let Some((range, chunk_values)) = chunk else {
            return Err(LdapError::data(format!(
                "ranged retrieval of {attr}: the server answered {request} without a {attr};range=... attribute"
            )));
        };
        if range.start != next {
            return Err(LdapError::data(format!(
                "ranged retrieval of {attr}: asked for values from {next}, got range {}-{}",
                range.start,
                range.end.map_or("*".to_string(), |e| e.to_string())
            )));
        }
        values.extend(chunk_values);
        match range.end {
            None => return Ok(values),
            Some(end) => next = end + 1,
        }
    }
    Err(LdapError::data(format!(
        "ranged retrieval of {attr}: more than {MAX_ROUNDS} chunks"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn parses_range_options() {
        assert_eq!(
            parse_range("member;range=0-1499", "member"),
            Some(Range {
                start: 0,
                end: Some(1499)
            })
        );
        assert_eq!(
            parse_range("Member;Range=1500-*", "member"),
            Some(Range {
                start: 1500,
                end: None
            })
        );
        assert_eq!(
            parse_range("member;binary;range=3000-3999", "MEMBER"),
            Some(Range {
                start: 3000,
                end: Some(3999)
            })
        );
        assert_eq!(parse_range("member", "member"), None);
        assert_eq!(parse_range("memberOf;range=0-1", "member"), None);
        assert_eq!(parse_range("member;range=5-2", "member"), None);
        assert_eq!(parse_range("member;range=x-2", "member"), None);
        assert_eq!(parse_range("member;range=0", "member"), None);
        assert_eq!(parse_range("member;range=", "member"), None);
    }

    /// A fake AD entry with `total` member values served `chunk` at a time, recording the requests.
    fn serve(total: u64, chunk: u64, request: &str) -> Vec<(String, Vec<Vec<u8>>)> {
        let range = parse_range(request, "member").unwrap();
        let start = range.start;
        let end = (start + chunk - 1).min(total - 1);
        let values = (start..=end).map(|i| format!("cn=u{i}").into_bytes()).collect();
        let desc = if end == total - 1 {
            format!("member;range={start}-*")
        } else {
            format!("member;range={start}-{end}")
        };
        vec![("cn".into(), vec![b"g".to_vec()]), (desc, values)]
    }

    #[tokio::test]
    async fn loops_until_the_star_chunk() {
        let requests = RefCell::new(Vec::new());
        let rest = fetch_remaining("member", 1499, |req| {
            requests.borrow_mut().push(req.clone());
            let answer = serve(5000, 1500, &req);
            async move { Ok(answer) }
        })
        .await
        .unwrap();
        assert_eq!(rest.len(), 5000 - 1500);
        assert_eq!(rest[0], b"cn=u1500".to_vec());
        assert_eq!(rest.last().unwrap(), &b"cn=u4999".to_vec());
        assert_eq!(
            requests.into_inner(),
            vec![
                "member;range=1500-*",
                "member;range=3000-*",
                "member;range=4500-*"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_or_misplaced_range_is_an_error() {
        let err = fetch_remaining("member", 1499, |_| async {
            Ok(vec![("cn".to_string(), Vec::<Vec<u8>>::new())])
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Data);
        let err = fetch_remaining("member", 1499, |_| async {
            Ok(vec![("member;range=0-*".to_string(), vec![b"x".to_vec()])])
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("asked for values from 1500"), "{err}");
    }

    #[tokio::test]
    async fn errors_from_the_fetch_propagate() {
        let err =
            fetch_remaining::<Vec<u8>, _, _>("member", 9, |_| async { Err(LdapError::unreachable("gone")) })
                .await
                .unwrap_err();
        assert!(err.is_transient());
    }
}
