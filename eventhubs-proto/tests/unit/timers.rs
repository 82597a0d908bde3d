//! Unit tests of `src/client/timers.rs`, included there as its `tests`
//! module. They live out of the library's sources because they make the
//! `Instant`s they hand in, as any caller of the sans-IO core does.

use super::*;
use std::time::Duration;

#[test]
fn first_entry_and_fired_timers_are_removed() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut t = TimerTable::default();
    t.set(Timer::Connect, t0 + s(10));
    t.set(Timer::OpDeadline(OpId(1)), t0 + s(5));
    t.set(Timer::TokenRefresh("a".into()), t0 + s(7));
    assert_eq!(t.first(), Some(t0 + s(5)));
    t.set(Timer::OpDeadline(OpId(1)), t0 + s(20));
    assert_eq!(t.first(), Some(t0 + s(7)), "a reset moves the timer");
    assert_eq!(t.pop_due(t0 + s(6)), None);
    assert_eq!(t.pop_due(t0 + s(10)), Some(Timer::TokenRefresh("a".into())));
    assert_eq!(t.pop_due(t0 + s(10)), Some(Timer::Connect));
    assert_eq!(t.pop_due(t0 + s(10)), None);
    assert_eq!(t.len(), 1);
    t.stop(&Timer::OpDeadline(OpId(1)));
    assert_eq!(t.first(), None);
}
