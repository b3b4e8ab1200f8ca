//! Every expression `CronSpec` accepts is one tokio-cron-scheduler 0.15 accepts, in the six-field form
//! `CronSpec::as_six_field` gives, and in the spec's zone; and what tokio-cron-scheduler rejects, we reject.

use idsync_schedule::CronSpec;
use tokio_cron_scheduler::Job;

fn tokio_cron_accepts(six_field: &str, zone: chrono_tz::Tz) -> bool {
    Job::new_async_tz(six_field, zone, |_id, _scheduler| Box::pin(async {})).is_ok()
}

#[test]
fn accepted_expressions_are_accepted_by_tokio_cron_scheduler() {
    let expressions = [
        ("0 1 * * *", None),
        ("*/15 * * * *", Some("Europe/Berlin")),
        ("0 9 13 * 5", Some("America/New_York")),
        ("0 0 1,15 * MON-FRI", None),
        ("30 0 2 * * *", Some("Australia/Lord_Howe")),
        ("0 0 L * *", None),
        ("0 12 ? * SUN#2", None),
        ("@daily", Some("Asia/Kolkata")),
        ("@weekly", None),
    ];
    for (expression, zone) in expressions {
        let spec = CronSpec::parse(expression, zone).expect(expression);
        assert!(
            tokio_cron_accepts(spec.as_six_field(), spec.timezone()),
            "tokio-cron-scheduler rejects {:?} (from {expression:?})",
            spec.as_six_field()
        );
    }
}

#[test]
fn tokio_cron_scheduler_needs_the_seconds_field_we_add() {
    assert!(!tokio_cron_accepts("0 1 * * *", chrono_tz::Tz::UTC));
    let spec = CronSpec::parse("0 1 * * *", None).expect("valid");
    assert!(tokio_cron_accepts(spec.as_six_field(), chrono_tz::Tz::UTC));
}

#[test]
fn what_tokio_cron_scheduler_rejects_we_reject() {
    for six_field in [
        "61 * * * * *",
        "0 0 25 * * *",
        "0 0 0 32 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 9",
        "a b c d e f",
    ] {
        assert!(!tokio_cron_accepts(six_field, chrono_tz::Tz::UTC), "{six_field}");
        assert!(CronSpec::parse(six_field, None).is_err(), "{six_field}");
    }
}
