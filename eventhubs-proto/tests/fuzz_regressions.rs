//! Inputs found by the cargo-fuzz targets in `fuzz/`, each of which once
//! broke an invariant those targets check: whatever decodes re-encodes, in
//! both forms, to exactly `encoded_len` bytes that decode again and
//! re-encode to the same bytes; nothing panics; and (`client_input`) the
//! client core never leaves a timer due after `handle_timeout`.

use bytes::Bytes;
use eventhubs_proto::codec::{Decode, Encode, Form, Value};

/// Encodes in `form`, checking `encoded_len_as`.
fn encode<T: Encode>(x: &T, form: Form) -> Bytes {
    let mut v = Vec::new();
    x.encode_as(form, &mut v);
    assert_eq!(v.len(), x.encoded_len_as(form), "encoded_len_as({form:?})");
    Bytes::from(v)
}

/// Decodes `input` and checks `encode(decode(encode(x))) == encode(x)`.
fn roundtrip<T: Encode + Decode + std::fmt::Debug>(input: &[u8]) -> T {
    let x = T::decode_all(&Bytes::copy_from_slice(input)).expect("fixture decodes");
    for form in [Form::Compact, Form::Full] {
        let b1 = encode(&x, form);
        let y = T::decode_all(&b1)
            .unwrap_or_else(|e| panic!("{form:?} re-encoding {b1:02x?} does not decode: {e}"));
        assert_eq!(encode(&y, form), b1, "{form:?} re-encoding is not stable");
    }
    x
}

/// value_decode: an array32 of five empty lists (zero-width list0 elements)
/// re-encoded as array8 with size 2 and count 5, which the decoder refused
/// ("5 elements cannot fit in 2 bytes"): the decoder bounded zero-width
/// counts by the size as written, and the encoder chose array8 without
/// regard to that bound. Nulls, which have no wider constructor, are the
/// case that is left once the encoder widens list0 to list8.
#[test]
fn array_of_zero_width_elements_reencodes_decodably() {
    // The input the fuzzer found.
    let v: Value = roundtrip(&[0xf0, 0, 0, 0, 5, 0, 0, 0, 5, 0x45]);
    assert!(matches!(&v, Value::Array(a) if a.items().len() == 5));
    // Five nulls: array32 is kept, as array8's size (2) cannot cover 5.
    let nulls = [0xf0, 0, 0, 0, 5, 0, 0, 0, 5, 0x40];
    let v: Value = roundtrip(&nulls);
    assert_eq!(v.to_bytes()[..], nulls);
    // Nulls whose count fits array8's size still use array8.
    let v: Value = roundtrip(&[0xf0, 0, 0, 0, 5, 0, 0, 0, 2, 0x40]);
    assert_eq!(v.to_bytes()[..], [0xe0, 0x02, 0x02, 0x40]);
    // More zero-width elements than the array32 encoding has bytes is
    // refused, before anything is allocated for them.
    let many = Bytes::from_static(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]);
    assert!(Value::decode_all(&many).is_err());
}

/// Nests `levels` lists (list8, one element each) around a null.
fn nested_lists(levels: usize) -> Vec<u8> {
    let mut v = vec![0x40];
    for _ in 0..levels {
        let mut outer = vec![0xc0, v.len() as u8 + 1, 1];
        outer.extend(v);
        v = outer;
    }
    v
}

/// Nests `levels` arrays (array8 of one array8 each) around an array of
/// one null.
fn nested_arrays(levels: usize) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x40]; // size, count, constructor
    for _ in 0..levels {
        let mut outer = vec![body.len() as u8 + 2, 0x01, 0xe0];
        outer.extend(body);
        body = outer;
    }
    let mut v = vec![0xe0];
    v.extend(body);
    v
}

/// value_decode (timeout): encoding a nested list, map or array took time
/// exponential in the nesting depth. `Value::encoded_len` summed the
/// elements' lengths once to choose the 8-bit or 32-bit form and again for
/// the length itself, each sum recursing, so every level doubled the work;
/// arrays did the same through `effective_code` then `content_len`. The
/// 91-byte input of 30 nested lists took minutes under the fuzzer; the
/// deepest inputs the decoder accepts would have taken hours. Encoding is
/// now linear in the size of the value at each level.
#[test]
fn deeply_nested_values_encode_in_linear_time() {
    let start = std::time::Instant::now();
    // The deepest nesting the decoder accepts, and one level more, which
    // it refuses.
    for (nest, deepest) in [
        (nested_lists as fn(usize) -> Vec<u8>, 32),
        (nested_arrays, 31),
    ] {
        let input = nest(deepest);
        let v: Value = roundtrip(&input);
        assert_eq!(v.to_bytes()[..], input[..]);
        assert!(Value::decode_all(&Bytes::from(nest(deepest + 1))).is_err());
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// client_input: a service whose open carries idle-time-out 1 ms made the
/// client spin. The engine sends heartbeats at half the peer's idle
/// time-out, computed as `ms / 2` in whole milliseconds: 0 for 1 ms, so
/// after every heartbeat the next was due at once, `poll_timeout()`
/// returned `now` forever, and a driver looping on `handle_timeout` wrote
/// an empty frame per pass without sleeping. (The broker model, on the same
/// engine, spun the same way for a client asking for 1 ms.) The interval is
/// now halved as a `Duration`: 500 us.
#[test]
fn one_ms_peer_idle_timeout_does_not_spin() {
    use std::time::{Duration, Instant};

    use eventhubs_proto::client::{Client, ClientEvent, ClientOptions, Credential, Now};
    use eventhubs_proto::codec::frame::{encode_amqp_frame, encode_sasl_frame, ProtocolHeader};
    use eventhubs_proto::codec::performatives::Open;
    use eventhubs_proto::codec::sasl::{SaslCode, SaslFrame, SaslMechanisms, SaslOutcome};
    use eventhubs_proto::codec::Symbol;

    let start = Instant::now();
    let mut now = Now {
        instant: start,
        unix_ms: 1_800_000_000_000,
    };
    let credential = Credential::Plain {
        key_name: "k".into(),
        key: "v".into(),
    };
    let mut client = Client::new(ClientOptions::new("localhost", "eh1", credential)).unwrap();
    client
        .get_hub_information(now, start + Duration::from_secs(30))
        .unwrap();
    let Some(ClientEvent::Connect(id)) = client.poll_event() else {
        panic!("no Connect");
    };
    client.connected(now, id);
    // The service: SASL PLAIN accepted, then an open asking for 1 ms.
    let mut service = ProtocolHeader::SASL.to_bytes().to_vec();
    let mechanisms = SaslMechanisms {
        sasl_server_mechanisms: vec![Symbol::from_static("PLAIN")],
    };
    encode_sasl_frame(
        &mut service,
        &SaslFrame::Mechanisms(mechanisms),
        Form::Compact,
    );
    let outcome = SaslOutcome {
        code: SaslCode::Ok,
        additional_data: None,
    };
    encode_sasl_frame(&mut service, &SaslFrame::Outcome(outcome), Form::Compact);
    service.extend_from_slice(&ProtocolHeader::AMQP.to_bytes());
    let open = Open {
        container_id: "service".into(),
        idle_time_out: Some(1),
        ..Default::default()
    };
    encode_amqp_frame(&mut service, 0, &open.into(), &[], Form::Compact);
    client.handle_input(now, &service);
    let mut out = Vec::new();
    let mut heartbeats = 0;
    // A driver's passes over 10 ms: each fires the timers due, writes, and
    // must then find the next timer in the future.
    while now.instant < start + Duration::from_millis(10) {
        if client.poll_timeout().is_some_and(|t| t <= now.instant) {
            client.handle_timeout(now);
        }
        out.clear();
        if client.poll_transmit(now, &mut out) == 8 {
            heartbeats += 1;
        }
        let next = client.poll_timeout().expect("a heartbeat timer");
        assert!(next > now.instant, "timer due at once after a pass");
        now.instant = next;
    }
    // One heartbeat per 500 us, not one per pass.
    assert!((15..=25).contains(&heartbeats), "{heartbeats} heartbeats");
}

/// client_input ("a timer after Closed"): a token that arrives after the
/// client has closed, as a token source still at work when the last handle
/// went would deliver it, armed its refresh timer on the closed client:
/// `supply_token` stored it like any other. Nothing may happen after
/// `Closed`, so a late token is now dropped.
#[test]
fn token_supplied_after_close_sets_no_timer() {
    use std::time::{Duration, Instant};

    use eventhubs_proto::client::{Client, ClientEvent, ClientOptions, Credential, Now};
    use eventhubs_proto::eventhubs::{Token, TokenType};

    let start = Instant::now();
    let now = Now {
        instant: start,
        unix_ms: 1_800_000_000_000,
    };
    let mut client =
        Client::new(ClientOptions::new("localhost", "eh1", Credential::External)).unwrap();
    client
        .get_hub_information(now, start + Duration::from_secs(30))
        .unwrap();
    let mut audience = None;
    while let Some(e) = client.poll_event() {
        if let ClientEvent::TokenRequired { audience: a } = e {
            audience = Some(a);
        }
    }
    let audience = audience.expect("an external credential asks for a token");
    client.close(now, start + Duration::from_secs(1));
    // The service never answers: the close deadline ends it.
    let mut now = now;
    for _ in 0..100 {
        while client.poll_event().is_some() {}
        let Some(t) = client.poll_timeout() else {
            break;
        };
        now.unix_ms += (t - now.instant).as_millis() as i64;
        now.instant = t;
        client.handle_timeout(now);
    }
    while client.poll_event().is_some() {}
    assert!(client.is_closed());
    assert_eq!(client.poll_timeout(), None);

    let token = Token {
        token: "SharedAccessSignature sr=x&sig=y&se=1800003600&skn=k".into(),
        expires_at_unix: 1_800_003_600,
        token_type: TokenType::SasToken,
    };
    client.supply_token(now, &audience, Ok(token));
    assert_eq!(client.poll_timeout(), None, "a timer after Closed");
    assert!(client.poll_event().is_none(), "an event after Closed");
}
