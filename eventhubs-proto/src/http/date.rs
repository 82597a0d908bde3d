//! HTTP dates (RFC 9110 5.6.7, IMF-fixdate, e.g. `Tue, 01 Dec 2026
//! 10:00:00 GMT`) and the ISO 8601 form SAS tokens use
//! (`2026-12-01T10:00:00Z`), to and from Unix seconds. The caller reads
//! the clock; these only convert.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    weekday: usize,
}

fn civil(unix_secs: i64) -> Civil {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        weekday: days.rem_euclid(7) as usize,
    }
}

/// `unix_secs` as an IMF-fixdate: `Tue, 01 Dec 2026 10:00:00 GMT`.
pub fn format_http_date(unix_secs: i64) -> String {
    let c = civil(unix_secs);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `unix_secs` as ISO 8601 UTC to the second: `2026-12-01T10:00:00Z`.
pub fn format_iso8601(unix_secs: i64) -> String {
    let c = civil(unix_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Parses an IMF-fixdate (`Tue, 01 Dec 2026 10:00:00 GMT`) into Unix
/// seconds. The weekday is not checked. `None` for anything else.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parse_digits(parts.next()?, 2)?;
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as u32 + 1;
    let year: u32 = parse_digits(parts.next()?, 4)?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    let mut hms = time.split(':');
    let h: u32 = parse_digits(hms.next()?, 2)?;
    let m: u32 = parse_digits(hms.next()?, 2)?;
    let sec: u32 = parse_digits(hms.next()?, 2)?;
    if hms.next().is_some() || day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(
        days_from_civil(i64::from(year), month, day) * 86_400
            + i64::from(h) * 3600
            + i64::from(m) * 60
            + i64::from(sec),
    )
}

fn parse_digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        // The SharedKey test vectors' date.
        let t = parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(t, 1_796_119_200);
        assert_eq!(format_http_date(t), "Tue, 01 Dec 2026 10:00:00 GMT");
        assert_eq!(format_iso8601(t), "2026-12-01T10:00:00Z");
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        for t in (-86_400 * 800..86_400 * 80_000).step_by(86_399 * 7 + 13) {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "Tue, 31 Feb 2026 10:00:00 GMT",
            "Tue, 01 Dec 2026 10:00:00 UTC",
            "Tue, 1 Dec 2026 10:00:00 GMT",
            "Tue, 01 Dez 2026 10:00:00 GMT",
            "Tue, 01 Dec 2026 24:00:00 GMT",
            "Tuesday, 01-Dec-26 10:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
