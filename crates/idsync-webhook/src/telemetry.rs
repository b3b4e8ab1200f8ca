//! The webhook's metrics, through the `metrics` facade (the binary installs the Prometheus exporter).
//!
//! - `idsync_webhook_events_received_total{source,format}`: deliveries (POST requests) that reached a
//!   delivery route; `source` is `unknown` until a configured source is identified, so an attacker cannot
//!   create label values.
//! - `idsync_webhook_events_accepted_total{source}`: events acknowledged (stored, or duplicates of stored).
//! - `idsync_webhook_events_rejected_total{source,reason}`: rejected deliveries, one per delivery; and
//!   `reason="ignored"`, one per native event that is not a successful login.
//! - `idsync_webhook_ack_seconds`: from receipt to the queue's commit, for acknowledged deliveries (any
//!   `?wait=` time excluded).

use metrics::{SharedString, counter, describe_counter, describe_histogram, histogram};

use crate::reject::Reason;

pub(crate) const RECEIVED: &str = "idsync_webhook_events_received_total";
pub(crate) const ACCEPTED: &str = "idsync_webhook_events_accepted_total";
pub(crate) const REJECTED: &str = "idsync_webhook_events_rejected_total";
pub(crate) const ACK_SECONDS: &str = "idsync_webhook_ack_seconds";

/// The label value for a delivery whose source is not (yet) known.
pub(crate) const UNKNOWN_SOURCE: &str = "unknown";

pub(crate) fn describe() {
    describe_counter!(RECEIVED, "Webhook deliveries received, by source and format.");
    describe_counter!(
        ACCEPTED,
        "Login events acknowledged to the sender (stored or duplicate), by source."
    );
    describe_counter!(
        REJECTED,
        "Webhook deliveries rejected (and native events ignored), by source and reason."
    );
    describe_histogram!(
        ACK_SECONDS,
        metrics::Unit::Seconds,
        "Time from receiving a delivery to acknowledging it (after the queue's commit)."
    );
}

pub(crate) fn received(source: &SharedString, format: &'static str) {
    counter!(RECEIVED, "source" => source.clone(), "format" => format).increment(1);
}

pub(crate) fn accepted(source: &SharedString, count: u64) {
    if count > 0 {
        counter!(ACCEPTED, "source" => source.clone()).increment(count);
    }
}

pub(crate) fn rejected(source: &SharedString, reason: Reason, count: u64) {
    if count > 0 {
        counter!(REJECTED, "source" => source.clone(), "reason" => reason.as_str()).increment(count);
    }
}

pub(crate) fn ack(seconds: f64) {
    histogram!(ACK_SECONDS).record(seconds);
}
