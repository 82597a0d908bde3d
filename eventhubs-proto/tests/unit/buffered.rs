//! Unit tests of `src/client/buffered.rs`, included there as its `tests`
//! module. They live out of the library's sources because they make the
//! `Instant`s they hand in, as any caller of the sans-IO core does.

use super::*;
use crate::eventhubs::partition_key::partition_index;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn keyed(key: &str) -> EventData {
    let mut e = EventData::new(vec![0u8; 10]);
    e.partition_key = Some(key.into());
    e
}

fn producer(options: BufferedOptions, partitions: usize) -> BufferedProducer {
    let mut p = BufferedProducer::new(options).unwrap();
    p.set_partitions(ids(partitions));
    p
}

#[test]
fn keys_go_where_the_service_hashes_them_and_the_rest_round_robin() {
    let t0 = Instant::now();
    let mut p = producer(BufferedOptions::default(), 32);
    // The hashing vectors, over 32 partitions.
    for (key, expected) in [("7", "31"), ("131", "2"), ("FWfAT", "5"), ("$0cb", "29")] {
        assert_eq!(p.enqueue(t0, keyed(key), Route::Auto).unwrap(), expected);
    }
    assert_eq!(
        p.enqueue(t0, keyed("this-is-a-key-1"), Route::Auto)
            .unwrap(),
        partition_index("this-is-a-key-1", 32).unwrap().to_string()
    );
    let rr: Vec<String> = (0..3)
        .map(|_| p.enqueue(t0, EventData::new("x"), Route::Auto).unwrap())
        .collect();
    assert_eq!(rr, ["0", "1", "2"]);
    assert_eq!(
        p.enqueue(t0, EventData::new("x"), Route::Partition("9".into()))
            .unwrap(),
        "9"
    );
    assert!(matches!(
        p.enqueue(t0, keyed("k"), Route::Partition("9".into())),
        Err(EnqueueError::KeyAndPartition { .. })
    ));
    assert!(matches!(
        p.enqueue(t0, EventData::new("x"), Route::Partition("32".into())),
        Err(EnqueueError::UnknownPartition { .. })
    ));
    let mut fresh = BufferedProducer::<ClientError>::new(BufferedOptions::default()).unwrap();
    assert_eq!(
        fresh.enqueue(t0, EventData::new("x"), Route::Auto),
        Err(EnqueueError::PartitionsUnknown)
    );
}

#[test]
fn a_batch_goes_when_full_or_when_its_oldest_event_waited_max_wait() {
    let t0 = Instant::now();
    let options = BufferedOptions {
        max_batch_bytes: 2000,
        max_wait: Duration::from_millis(100),
        ..BufferedOptions::default()
    };
    let mut p = producer(options, 2);
    let one = |n| EventData::new(vec![n; 300]);
    p.enqueue(t0, one(1), Route::Partition("0".into())).unwrap();
    assert_eq!(p.poll_batch(t0), None, "not full, not waited");
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    for n in 2..10 {
        p.enqueue(t0, one(n), Route::Partition("0".into())).unwrap();
    }
    let b = p.poll_batch(t0).expect("full");
    assert_eq!(b.partition, "0");
    let first: Vec<u8> = b.events.iter().map(|e| e.body[0]).collect();
    assert_eq!(
        first,
        (1..=first.len() as u8).collect::<Vec<_>>(),
        "in order"
    );
    assert!(first.len() < 9, "cut at the size limit: {}", first.len());
    assert_eq!(p.poll_batch(t0), None, "one in flight per partition");
    assert_eq!(p.poll_timeout(), None, "nothing may go before the outcome");
    p.batch_done(b.id, Ok(()));
    assert!(
        matches!(p.poll_event(), Some(BufferedEvent::Sent { events, .. }) if events.len() == first.len())
    );
    let later = t0 + Duration::from_millis(100);
    let rest = p.poll_batch(later).expect("waited long enough");
    assert_eq!(rest.events.len(), 9 - first.len());
}

#[test]
fn flush_and_close_send_everything_and_a_full_buffer_refuses() {
    let t0 = Instant::now();
    let options = BufferedOptions {
        max_buffered_events_per_partition: 3,
        max_concurrent_sends_per_partition: 2,
        ..BufferedOptions::default()
    };
    let mut p = producer(options, 1);
    for _ in 0..3 {
        p.enqueue(t0, EventData::new("x"), Route::Auto).unwrap();
    }
    assert_eq!(
        p.enqueue(t0, EventData::new("x"), Route::Auto),
        Err(EnqueueError::Full {
            partition: "0".into(),
            limit: 3
        })
    );
    let b = p
        .poll_batch(t0)
        .expect("a full buffer goes without waiting");
    assert_eq!(b.events.len(), 3);
    p.batch_done(b.id, Ok(()));
    assert!(matches!(p.poll_event(), Some(BufferedEvent::Sent { .. })));
    for _ in 0..3 {
        p.enqueue(t0, EventData::new("x"), Route::Auto).unwrap();
    }
    let mark = p.flush();
    assert!(!p.is_flushed(mark));
    let b = p.poll_batch(t0).expect("flushed");
    assert_eq!(b.events.len(), 3);
    p.enqueue(t0, EventData::new("y"), Route::Auto).unwrap();
    assert_eq!(p.poll_batch(t0), None, "enqueued after the flush: waits");
    p.batch_done(b.id, Err(ClientError::Closed));
    assert!(p.is_flushed(mark));
    assert!(matches!(
        p.poll_event(),
        Some(BufferedEvent::Failed { events, .. }) if events.len() == 3
    ));
    p.close();
    assert_eq!(
        p.enqueue(t0, EventData::new("z"), Route::Auto),
        Err(EnqueueError::Closed)
    );
    let last = p.poll_batch(t0).expect("closing sends the rest");
    assert_eq!(last.events.len(), 1);
    assert!(!p.is_idle());
    p.batch_done(last.id, Ok(()));
    assert!(p.is_idle());
}

#[test]
fn concurrency_limits_hold_and_partitions_take_turns() {
    let t0 = Instant::now();
    let options = BufferedOptions {
        max_concurrent_sends: Some(2),
        ..BufferedOptions::default()
    };
    let mut p = producer(options, 4);
    for _ in 0..8 {
        p.enqueue(t0, EventData::new("x"), Route::Auto).unwrap();
    }
    p.flush();
    let a = p.poll_batch(t0).unwrap();
    let b = p.poll_batch(t0).unwrap();
    assert_eq!(p.poll_batch(t0), None, "two in flight at most");
    assert_ne!(a.partition, b.partition);
    p.batch_done(a.id, Ok(()));
    let c = p.poll_batch(t0).unwrap();
    assert_ne!(c.partition, b.partition);
}

#[test]
fn idempotence_needs_one_send_per_partition_and_room_for_its_annotations() {
    let bad = BufferedOptions {
        idempotent: true,
        max_concurrent_sends_per_partition: 2,
        ..BufferedOptions::default()
    };
    assert!(BufferedProducer::<ClientError>::new(bad).is_err());
    let t0 = Instant::now();
    let e = EventData::new(vec![0u8; 1000]);
    let plain = batched_size(&e, false);
    let idem = batched_size(&e, true);
    assert!(idem > plain);
    let options = BufferedOptions {
        idempotent: true,
        max_batch_bytes: envelope_size(true) + idem - 1,
        ..BufferedOptions::default()
    };
    let mut p = producer(options, 1);
    assert!(matches!(
        p.enqueue(t0, e, Route::Auto),
        Err(EnqueueError::TooLarge { .. })
    ));
}
