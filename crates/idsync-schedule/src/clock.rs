//! Time for the scheduler: [`SystemClock`] in production, [`ManualClock`] in tests, whose time moves only when the
//! test moves it ("a schedule fires: drive time through a clock, don't sleep minutes").

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};

/// Wall-clock time and sleeping until a wall-clock instant.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once [`Clock::now`] is at or after `t` (at once if it already is).
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The system's wall clock. Sleeps in slices of at most a minute and re-reads the clock after each, so a wall-clock
/// step (NTP, suspend and resume) delays a fire by at most a minute instead of skewing it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

const MAX_SLEEP_SLICE: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let Ok(left) = (t - Utc::now()).to_std() else {
                    return; // t is not in the future
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_SLEEP_SLICE)).await;
            }
        })
    }
}

/// A clock for tests: time stands still until [`ManualClock::advance`] or [`ManualClock::set`] moves it, which wakes
/// every sleeper whose instant has come. [`ManualClock::wait_for_sleepers`] lets a test wait until the scheduler is
/// idle, waiting for its next fire time, before moving time on.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
    /// Bumped on each new sleeper, so waiters can re-check.
    registrations: watch::Sender<u64>,
}

#[derive(Debug)]
struct ManualState {
    now: DateTime<Utc>,
    sleepers: Vec<(DateTime<Utc>, oneshot::Sender<()>)>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            state: Mutex::new(ManualState {
                now: start,
                sleepers: Vec::new(),
            }),
            registrations: watch::Sender::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves time to `t` (backwards too, though nothing then wakes) and wakes the sleepers that are due.
    pub fn set(&self, t: DateTime<Utc>) {
        let due = {
            let mut state = self.state();
            state.now = t;
            let (due, waiting) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition::<Vec<_>, _>(|(deadline, _)| *deadline <= t);
            state.sleepers = waiting;
            due
        };
        for (_, wake) in due {
            let _ = wake.send(());
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let now = self.now();
        self.set(now.checked_add_signed(by).unwrap_or(now));
    }

    /// How many sleepers are waiting (not yet woken, not given up).
    pub fn pending_sleepers(&self) -> usize {
        let mut state = self.state();
        state.sleepers.retain(|(_, wake)| !wake.is_closed());
        state.sleepers.len()
    }

    /// The earliest instant a sleeper waits for.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let mut state = self.state();
        state.sleepers.retain(|(_, wake)| !wake.is_closed());
        state.sleepers.iter().map(|(deadline, _)| *deadline).min()
    }

    /// Resolves once at least `n` sleepers are waiting.
    pub async fn wait_for_sleepers(&self, n: usize) {
        let mut registrations = self.registrations.subscribe();
        loop {
            if self.pending_sleepers() >= n {
                return;
            }
            if registrations.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state().now
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let woken = {
            let mut state = self.state();
            if state.now >= t {
                return Box::pin(std::future::ready(()));
            }
            let (wake, woken) = oneshot::channel();
            state.sleepers.push((t, wake));
            woken
        };
        self.registrations.send_modify(|n| *n = n.wrapping_add(1));
        Box::pin(async move {
            let _ = woken.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp")
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_time_reaches_them() {
        let clock = ManualClock::new(t0());
        let mut early = clock.sleep_until(t0() + TimeDelta::seconds(10));
        let mut late = clock.sleep_until(t0() + TimeDelta::seconds(20));
        assert!(
            clock.sleep_until(t0()).now_or_never().is_some(),
            "now is not in the future"
        );
        assert_eq!(clock.pending_sleepers(), 2);
        assert_eq!(clock.next_deadline(), Some(t0() + TimeDelta::seconds(10)));
        clock.advance(Duration::from_secs(9));
        assert!((&mut early).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert!((&mut early).now_or_never().is_some());
        assert!((&mut late).now_or_never().is_none());
        assert_eq!(clock.pending_sleepers(), 1);
        drop(late);
        assert_eq!(clock.pending_sleepers(), 0, "a dropped sleeper is not pending");
        assert_eq!(clock.now(), t0() + TimeDelta::seconds(10));
    }

    #[tokio::test]
    async fn wait_for_sleepers_sees_a_later_sleeper() {
        let clock = ManualClock::new(t0());
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.wait_for_sleepers(1).await })
        };
        tokio::task::yield_now().await;
        let _sleep = clock.sleep_until(t0() + TimeDelta::seconds(1));
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("waiter returns")
            .expect("no panic");
    }

    #[tokio::test]
    async fn system_clock_does_not_sleep_for_the_past() {
        let clock = SystemClock;
        let past = clock.now() - TimeDelta::seconds(5);
        tokio::time::timeout(Duration::from_millis(200), clock.sleep_until(past))
            .await
            .expect("returns at once");
        let soon = clock.now() + TimeDelta::milliseconds(20);
        tokio::time::timeout(Duration::from_millis(500), clock.sleep_until(soon))
            .await
            .expect("returns soon");
        assert!(clock.now() >= soon);
    }
}
