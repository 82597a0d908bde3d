//! RFC 3339 instants, as the management API writes `CreatedAt`,
//! `UpdatedAt`, `published` and `updated` (`2018-07-18T17:04:00.67Z`).
//! The caller reads the clock; these only convert.

use crate::codec::Timestamp;
use crate::http::date::{civil_from_days, days_from_civil, days_in_month};

const MS_PER_DAY: i64 = 86_400_000;

/// `t` in UTC with milliseconds: `2026-12-01T10:00:00.123Z`.
pub fn format_rfc3339(t: Timestamp) -> String {
    let ms = t.millis();
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Parses an RFC 3339 date-time (section 5.6): `YYYY-MM-DDTHH:MM:SS`,
/// optional fraction (any number of digits; kept to the millisecond),
/// then `Z` or `±HH:MM`. `T`/`Z` may be lower case. A time without any
/// offset (as the List Event Hubs example of the REST docs shows) is read
/// as UTC. `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if !at(4, b'-') || !at(7, b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !at(13, b':') || !at(16, b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > i64::from(days_in_month(year, month as u32))
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset_minutes = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b':') => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp(secs * 1000 + millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forms() {
        let t = parse_rfc3339("2018-07-18T17:04:00.67Z").unwrap();
        assert_eq!(format_rfc3339(t), "2018-07-18T17:04:00.670Z");
        assert_eq!(
            parse_rfc3339("2018-07-18T17:04:00.6700000Z"),
            Some(t),
            ".NET's seven digits"
        );
        assert_eq!(parse_rfc3339("2018-07-18T19:04:00.670+02:00"), Some(t));
        assert_eq!(parse_rfc3339("2018-07-18t12:34:00.670-04:30"), Some(t));
        assert_eq!(
            parse_rfc3339("2015-09-09T20:30:51.083"),
            parse_rfc3339("2015-09-09T20:30:51.083Z"),
            "zone-less is UTC"
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(
            format_rfc3339(Timestamp(1_709_251_199_999)),
            "2024-02-29T23:59:59.999Z"
        );
        for ms in (-86_400_000i64 * 400..86_400_000 * 40_000).step_by(86_399_997 * 3 + 17) {
            let t = Timestamp(ms);
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{ms}");
        }
        for bad in [
            "",
            "2018-07-18",
            "2018-07-18T17:04Z",
            "2018-13-01T00:00:00Z",
            "2018-02-29T00:00:00Z",
            "2018-07-18T24:00:00Z",
            "2018-07-18T17:04:00.Z",
            "2018-07-18T17:04:00ZZ",
            "2018-07-18T17:04:00+0200",
            "2018-07-18T17:04:00+02:60",
            "２018-07-18T17:04:00Z",
            "+018-07-18T17:04:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
