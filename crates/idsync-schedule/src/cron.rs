//! Cron expressions: Grafana's 5-field `sync_cron` syntax (or 6 fields with seconds first), evaluated in an IANA
//! time zone that follows DST, with standard (Vixie) day-of-month / day-of-week OR semantics.
//!
//! Parsing uses [`croner`], the engine inside tokio-cron-scheduler 0.15, configured exactly as tokio-cron-scheduler
//! configures it (seconds required, day-of-month AND day-of-week). Every expression this module evaluates is therefore
//! one tokio-cron-scheduler accepts; [`CronSpec::as_six_field`] is the translated form it expects. Two things are done
//! here instead of there:
//!
//! - **Day-of-month OR day-of-week.** When both fields are restricted (neither is `*` or `?`), a day matches if
//!   *either* matches, as in Vixie cron and Grafana's Go cron. tokio-cron-scheduler ANDs them, so the expression is
//!   split into two schedules (one restricting only the day of month, one only the day of week) and the next fire
//!   time is the earlier of the two. A leading `+` on the day-of-week field (croner's explicit AND) keeps AND.
//!   `*/n` counts as a restriction.
//! - **Time zones.** Fire times are searched in local wall-clock time and mapped to instants one at a time, so each
//!   fire follows the offset in force on its own date (tokio-cron-scheduler freezes the offset at job creation).
//!   DST follows Vixie cron: a *fixed-time* job (no `*` at the start of the second, minute or hour field) whose local
//!   time is skipped by a spring-forward gap runs once at the first instant after the gap, and runs only once when a
//!   fall-back repeats its local time; a *wildcard* job skips the missing times and runs in both passes of a repeated
//!   hour, so it keeps its rhythm in real time.

use std::fmt;

use chrono::{DateTime, LocalResult, NaiveDateTime, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::ScheduleError;

/// Shorthand descriptors accepted besides the five or six fields (as Grafana's Go cron accepts them).
const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Upper bound on candidate local times examined for one fire time; reached only by pathological schedules.
const MAX_CANDIDATES: usize = 200_000;

/// A validated cron schedule in a time zone. Cheap to clone.
#[derive(Clone)]
pub struct CronSpec {
    expression: String,
    six_field: String,
    timezone: Tz,
    /// One schedule, or two whose union is the schedule (day-of-month OR day-of-week).
    schedules: Vec<Cron>,
    /// Vixie's "wildcard job": the second, minute or hour field starts with `*`.
    wildcard: bool,
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSpec")
            .field("expression", &self.expression)
            .field("six_field", &self.six_field)
            .field("timezone", &self.timezone)
            .field("dom_or_dow", &(self.schedules.len() > 1))
            .finish()
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.timezone)
    }
}

impl CronSpec {
    /// Parses `cron` (5 fields as in Grafana's `sync_cron`, 6 with seconds first, or a descriptor such as `@daily`)
    /// in `timezone` (an IANA name; `None` means UTC).
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<CronSpec, ScheduleError> {
        let timezone = parse_timezone(timezone)?;
        let expression = cron.trim().to_owned();
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expression: expression.clone(),
            reason,
        };

        let fields = to_six_fields(&expression).map_err(invalid)?;
        let six_field = fields.join(" ");
        // The whole expression must be valid as tokio-cron-scheduler would parse it.
        let full = parse_like_tokio_cron_scheduler(&six_field).map_err(invalid)?;

        let unrestricted = |field: &str| field == "*" || field == "?";
        let (dom, dow) = (fields[3].as_str(), fields[5].as_str());
        let schedules = if !unrestricted(dom) && !unrestricted(dow) && !dow.starts_with('+') {
            let mut dom_only = fields.clone();
            dom_only[5] = "*".to_owned();
            let mut dow_only = fields.clone();
            dow_only[3] = "*".to_owned();
            vec![
                parse_like_tokio_cron_scheduler(&dom_only.join(" ")).map_err(invalid)?,
                parse_like_tokio_cron_scheduler(&dow_only.join(" ")).map_err(invalid)?,
            ]
        } else {
            vec![full]
        };
        let wildcard = fields[..3].iter().any(|f| f.starts_with('*'));

        let spec = CronSpec {
            expression: expression.clone(),
            six_field,
            timezone,
            schedules,
            wildcard,
        };
        // Without a year field a schedule that fires at all fires within any few decades, so one fixed reference
        // point keeps this check deterministic.
        let reference = DateTime::<Utc>::from_timestamp(946_684_800, 0); // 2000-01-01T00:00:00Z
        if reference.and_then(|r| spec.next_after(r)).is_none() {
            return Err(invalid("it never fires (no date matches)".to_owned()));
        }
        Ok(spec)
    }

    /// The first fire time strictly after `t`, or `None` if there is none (croner's year limit).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|cron| next_in_zone(cron, self.wildcard, self.timezone, t))
            .min()
    }

    /// The six-field form (seconds first) that tokio-cron-scheduler and croner expect. When both day fields are
    /// restricted, tokio-cron-scheduler would AND them; [`CronSpec::next_after`] ORs them.
    pub fn as_six_field(&self) -> &str {
        &self.six_field
    }

    /// The expression as configured (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone fire times are computed in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }
}

fn parse_timezone(timezone: Option<&str>) -> Result<Tz, ScheduleError> {
    match timezone {
        None => Ok(Tz::UTC),
        Some(name) => name
            .trim()
            .parse::<Tz>()
            .map_err(|_| ScheduleError::InvalidTimezone {
                timezone: name.to_owned(),
            }),
    }
}

/// Translates a 5-field expression or a descriptor to six fields; checks the field count.
fn to_six_fields(expression: &str) -> Result<Vec<String>, String> {
    if expression.is_empty() {
        return Err("the expression is empty".to_owned());
    }
    let expanded = if expression.starts_with('@') {
        let lower = expression.to_ascii_lowercase();
        match DESCRIPTORS.iter().find(|(name, _)| *name == lower) {
            Some((_, fields)) => *fields,
            None => {
                let names: Vec<&str> = DESCRIPTORS.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown descriptor (supported: {}; @every is not supported)",
                    names.join(", ")
                ));
            }
        }
    } else {
        expression
    };
    let mut fields: Vec<String> = expanded.split_whitespace().map(str::to_owned).collect();
    match fields.len() {
        5 => {
            fields.insert(0, "0".to_owned());
            Ok(fields)
        }
        6 => Ok(fields),
        n => Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found {n}"
        )),
    }
}

/// Parses six fields with the parser configuration tokio-cron-scheduler 0.15 uses.
fn parse_like_tokio_cron_scheduler(six_field: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(six_field)
        .map_err(|e| e.to_string())
}

/// Walks the local (naive) times `cron` matches, from `from` (inclusive) onwards.
struct Candidates<'a> {
    cron: &'a Cron,
    next_from: Option<NaiveDateTime>,
    inclusive: bool,
    remaining: usize,
}

impl<'a> Candidates<'a> {
    fn new(cron: &'a Cron, from: NaiveDateTime) -> Self {
        Candidates {
            cron,
            next_from: Some(from),
            inclusive: true,
            remaining: MAX_CANDIDATES,
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        let from = self.next_from.take()?;
        self.remaining = self.remaining.checked_sub(1)?;
        // croner searches a zone-less calendar here: UTC has no DST, so this is pure local-time arithmetic.
        let found = self
            .cron
            .find_next_occurrence(&Utc.from_utc_datetime(&from), self.inclusive)
            .ok()?
            .naive_utc();
        self.inclusive = false;
        self.next_from = Some(found);
        Some(found)
    }
}

/// The first instant strictly after `t` at which `cron` fires in `tz` (see the module docs for the DST rules).
fn next_in_zone(cron: &Cron, wildcard: bool, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Fire times are whole seconds; anything after the truncated `t` is after `t`.
    let t = t.trunc_subsecs(0);
    let n0 = t.with_timezone(&tz).naive_local();

    // Each local time's first instance (or, for fixed-time jobs, the end of the gap that swallowed it). These
    // instants grow with the local time, so the first one after `t` is the earliest.
    let first_instances = Candidates::new(cron, n0).find_map(|local| {
        let instant = match tz.from_local_datetime(&local) {
            LocalResult::Single(dt) => Some(dt),
            LocalResult::Ambiguous(early, _) => Some(early),
            LocalResult::None if wildcard => None,
            LocalResult::None => first_instant_after_gap(tz, local),
        }?
        .with_timezone(&Utc);
        (instant > t).then_some(instant)
    });

    // Wildcard jobs also fire in the second pass of a repeated (fall-back) hour. That matters only while `t` is
    // itself inside the repeated hour, i.e. when its local time is ambiguous.
    let second_instances = match (wildcard, tz.from_local_datetime(&n0)) {
        (true, LocalResult::Ambiguous(early, late)) => {
            let early = early.with_timezone(&Utc);
            let late = late.with_timezone(&Utc);
            // In the first pass, the second pass begins `late - early` earlier in local time.
            let start = if t == early { n0 - (late - early) } else { n0 };
            Candidates::new(cron, start)
                .map_while(|local| match tz.from_local_datetime(&local) {
                    LocalResult::Ambiguous(_, late) => Some(Some(late.with_timezone(&Utc))),
                    // Still before the repeated hour (in local time): keep looking.
                    _ if local < n0 => Some(None),
                    _ => None,
                })
                .flatten()
                .find(|instant| *instant > t)
        }
        _ => None,
    };

    match (first_instances, second_instances) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The first instant after the spring-forward gap that contains `local` (a local time that does not exist).
fn first_instant_after_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    // Gaps are at most a day (Samoa, 2011); find the first valid minute, then the first valid second before it.
    let mut minute = local.trunc_subsecs(0);
    for _ in 0..(48 * 60) {
        minute = minute.checked_add_signed(TimeDelta::minutes(1))?;
        if let Some(valid) = tz.from_local_datetime(&minute).earliest() {
            let mut first = valid;
            for back in 1..60 {
                let earlier = minute.checked_sub_signed(TimeDelta::seconds(back))?;
                if earlier <= local {
                    break;
                }
                match tz.from_local_datetime(&earlier).earliest() {
                    Some(dt) => first = dt,
                    None => break,
                }
            }
            return Some(first);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test timestamp")
            .with_timezone(&Utc)
    }

    fn fires(spec: &CronSpec, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = spec.next_after(t).expect("a next fire time");
            out.push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn five_fields_gain_a_seconds_field() {
        let spec = CronSpec::parse("0 1 * * *", None).expect("grafana default");
        assert_eq!(spec.as_six_field(), "0 0 1 * * *");
        assert_eq!(spec.expression(), "0 1 * * *");
        assert_eq!(spec.timezone(), Tz::UTC);
        assert_eq!(
            fires(&spec, "2024-05-01T00:30:00Z", 2),
            ["2024-05-01T01:00:00Z", "2024-05-02T01:00:00Z"]
        );
    }

    #[test]
    fn six_fields_are_kept_and_whitespace_normalised() {
        let spec = CronSpec::parse("  30   */15 * * *   * ", None).expect("six fields");
        assert_eq!(spec.as_six_field(), "30 */15 * * * *");
        assert_eq!(
            fires(&spec, "2024-05-01T00:00:00Z", 3),
            [
                "2024-05-01T00:00:30Z",
                "2024-05-01T00:15:30Z",
                "2024-05-01T00:30:30Z"
            ]
        );
    }

    #[test]
    fn descriptors_are_translated() {
        let spec = CronSpec::parse("@daily", None).expect("descriptor");
        assert_eq!(spec.as_six_field(), "0 0 0 * * *");
        let spec = CronSpec::parse("@HOURLY", None).expect("descriptor");
        assert_eq!(spec.as_six_field(), "0 0 * * * *");
    }

    #[test]
    fn next_after_is_strictly_after_and_ignores_subseconds() {
        let spec = CronSpec::parse("0 1 * * *", None).expect("valid");
        let fire = utc("2024-05-01T01:00:00Z");
        assert_eq!(
            spec.next_after(fire),
            Some(utc("2024-05-02T01:00:00Z")),
            "a fire time is not after itself"
        );
        assert_eq!(spec.next_after(utc("2024-05-01T00:59:59.900Z")), Some(fire));
        assert_eq!(
            spec.next_after(utc("2024-05-01T01:00:00.100Z")),
            Some(utc("2024-05-02T01:00:00Z"))
        );
    }

    fn invalid(cron: &str) -> String {
        CronSpec::parse(cron, None)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn invalid_expressions_are_rejected_with_the_reason() {
        let msg = invalid("0 1 * *");
        assert!(
            msg.starts_with("invalid cron expression \"0 1 * *\": expected 5 fields"),
            "{msg}"
        );
        assert!(msg.contains("found 4"), "{msg}");
        let msg = invalid("0 0 1 * * * 2030");
        assert!(msg.contains("found 7"), "{msg}");
        let msg = invalid("61 * * * *");
        assert!(
            msg.starts_with("invalid cron expression \"61 * * * *\": "),
            "{msg}"
        );
        let msg = invalid("0 25 * * *");
        assert!(msg.starts_with("invalid cron expression"), "{msg}");
        let msg = invalid("x y z a b");
        assert!(msg.starts_with("invalid cron expression"), "{msg}");
        let msg = invalid("");
        assert!(msg.contains("empty"), "{msg}");
        let msg = invalid("@every 1h");
        assert!(msg.contains("@every is not supported"), "{msg}");
        let msg = invalid("0 0 30 2 *");
        assert!(msg.contains("never fires"), "{msg}");
    }

    #[test]
    fn unknown_time_zones_are_rejected() {
        let err = CronSpec::parse("0 1 * * *", Some("Europe/Atlantis")).expect_err("bad zone");
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Europe/Atlantis\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
        );
        assert!(CronSpec::parse("0 1 * * *", Some("")).is_err());
        assert!(CronSpec::parse("0 1 * * *", Some("UTC")).is_ok());
    }

    #[test]
    fn daily_job_follows_dst_in_berlin() {
        // Spring forward: 2024-03-31 02:00 CET -> 03:00 CEST. 01:00 local is 00:00Z before, 23:00Z after.
        let spec = CronSpec::parse("0 1 * * *", Some("Europe/Berlin")).expect("valid");
        assert_eq!(
            fires(&spec, "2024-03-29T12:00:00Z", 4),
            [
                "2024-03-30T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-03-31T23:00:00Z",
                "2024-04-01T23:00:00Z"
            ]
        );
        // Fall back: 2024-10-27 03:00 CEST -> 02:00 CET.
        assert_eq!(
            fires(&spec, "2024-10-25T12:00:00Z", 3),
            [
                "2024-10-25T23:00:00Z",
                "2024-10-26T23:00:00Z",
                "2024-10-28T00:00:00Z"
            ]
        );
    }

    #[test]
    fn fixed_time_in_the_spring_gap_runs_right_after_it() {
        // 02:30 does not exist on 2024-03-31 in Berlin: run at 03:00 CEST (01:00Z), once.
        let spec = CronSpec::parse("30 2 * * *", Some("Europe/Berlin")).expect("valid");
        assert_eq!(
            fires(&spec, "2024-03-30T12:00:00Z", 3),
            [
                "2024-03-31T01:00:00Z",
                "2024-04-01T00:30:00Z",
                "2024-04-02T00:30:00Z"
            ]
        );
    }

    #[test]
    fn fixed_time_in_the_repeated_hour_runs_once() {
        // 02:30 happens twice on 2024-10-27 in Berlin (00:30Z CEST, 01:30Z CET): run at the first only.
        let spec = CronSpec::parse("30 2 * * *", Some("Europe/Berlin")).expect("valid");
        assert_eq!(
            fires(&spec, "2024-10-26T12:00:00Z", 3),
            [
                "2024-10-27T00:30:00Z",
                "2024-10-28T01:30:00Z",
                "2024-10-29T01:30:00Z"
            ]
        );
    }

    #[test]
    fn wildcard_job_keeps_its_rhythm_through_both_dst_changes() {
        let spec = CronSpec::parse("*/30 * * * *", Some("Europe/Berlin")).expect("valid");
        // Fall back: every 30 real minutes, through both passes of 02:xx.
        assert_eq!(
            fires(&spec, "2024-10-26T23:45:00Z", 6),
            [
                "2024-10-27T00:00:00Z",
                "2024-10-27T00:30:00Z",
                "2024-10-27T01:00:00Z",
                "2024-10-27T01:30:00Z",
                "2024-10-27T02:00:00Z",
                "2024-10-27T02:30:00Z"
            ]
        );
        // Spring forward: the missing hour simply has no fire times; still every 30 real minutes.
        assert_eq!(
            fires(&spec, "2024-03-31T00:15:00Z", 4),
            [
                "2024-03-31T00:30:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:30:00Z",
                "2024-03-31T02:00:00Z"
            ]
        );
        // Every second through the repeated hour: no jumps back, no holes.
        let every_second = CronSpec::parse("* * * * * *", Some("Europe/Berlin")).expect("valid");
        let mut t = utc("2024-10-27T00:59:58Z");
        for _ in 0..4 {
            let next = every_second.next_after(t).expect("next");
            assert_eq!(next - t, TimeDelta::seconds(1), "after {t}");
            t = next;
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th of the month OR any Friday. 2024-09: Fridays 6, 13, 20, 27.
        let spec = CronSpec::parse("0 9 13 * 5", None).expect("valid");
        assert_eq!(
            fires(&spec, "2024-09-01T00:00:00Z", 5),
            [
                "2024-09-06T09:00:00Z",
                "2024-09-13T09:00:00Z",
                "2024-09-20T09:00:00Z",
                "2024-09-27T09:00:00Z",
                "2024-10-04T09:00:00Z"
            ]
        );
        assert_eq!(
            fires(&spec, "2024-10-05T00:00:00Z", 3),
            [
                "2024-10-11T09:00:00Z",
                "2024-10-13T09:00:00Z",
                "2024-10-18T09:00:00Z"
            ]
        );
        // The 1st and 15th OR Mondays (names work too).
        let spec = CronSpec::parse("0 0 1,15 * MON", None).expect("valid");
        // 2024-07-01 is a Monday; Mondays 1, 8, 15, 22, 29.
        assert_eq!(
            fires(&spec, "2024-06-30T00:00:00Z", 4),
            [
                "2024-07-01T00:00:00Z",
                "2024-07-08T00:00:00Z",
                "2024-07-15T00:00:00Z",
                "2024-07-22T00:00:00Z"
            ]
        );
    }

    #[test]
    fn one_restricted_day_field_is_not_widened() {
        let dom = CronSpec::parse("0 0 13 * *", None).expect("valid");
        assert_eq!(
            fires(&dom, "2024-09-01T00:00:00Z", 2),
            ["2024-09-13T00:00:00Z", "2024-10-13T00:00:00Z"]
        );
        let dow = CronSpec::parse("0 0 ? * FRI", None).expect("valid");
        assert_eq!(
            fires(&dow, "2024-09-01T00:00:00Z", 2),
            ["2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z"]
        );
        // croner's explicit AND marker keeps AND: Friday the 13th.
        let and = CronSpec::parse("0 0 13 * +5", None).expect("valid");
        assert_eq!(
            fires(&and, "2024-01-01T00:00:00Z", 2),
            ["2024-09-13T00:00:00Z", "2024-12-13T00:00:00Z"]
        );
    }

    #[test]
    fn or_split_matches_crons_own_or_mode() {
        // Cross-check the split against croner's native OR mode (dom_and_dow = false) on a range of patterns.
        let patterns = [
            "0 0 9 13 * 5",
            "0 30 6 1,15 * MON-WED",
            "0 0 0 L * SUN",
            "0 0 12 */10 * 2",
            "0 15 3 29 2 1",
        ];
        for pattern in patterns {
            let spec = CronSpec::parse(pattern, None).expect("valid");
            let native = CronParser::builder()
                .seconds(Seconds::Required)
                .dom_and_dow(false)
                .build()
                .parse(pattern)
                .expect("croner parses");
            let mut t = utc("2023-12-20T00:00:00Z");
            for _ in 0..40 {
                let ours = spec.next_after(t).expect("ours");
                let theirs = native.find_next_occurrence(&t, false).expect("theirs");
                assert_eq!(ours, theirs, "{pattern} after {t}");
                t = ours;
            }
        }
    }
}
