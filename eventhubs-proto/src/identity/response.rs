//! Token responses of every endpoint, and their error bodies.
//!
//! | endpoint | `expires_in` | `expires_on` |
//! |---|---|---|
//! | Entra ID v2.0 | number | absent |
//! | Entra ID v1 | numeric string | numeric string |
//! | IMDS | numeric string | numeric string |
//! | App Service 2019-08-01 | may be absent | number or numeric string |
//! | App Service 2017-09-01 | absent | `M/d/yyyy h:mm:ss AM +00:00` |
//!
//! `expires_on` wins when present (also as an RFC 3339 date); otherwise
//! `now + expires_in`. `refresh_in` (v2.0) is kept as the time to refresh.
//!
//! Errors: Entra ID sends `error`, `error_description` (starting with the
//! `AADSTS` code) and `error_codes`; IMDS `error` and `error_description`;
//! App Service `statusCode` and `message`; Azure front ends
//! `{"error":{"code","message"}}`; anything else is quoted, shortened.

use std::fmt;

use serde_json::Value;

use super::error::{CredentialError, TokenEndpoint};

/// Longest piece of a non-JSON error body quoted in an error.
const MAX_QUOTED: usize = 300;

/// A bearer token and when it expires. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: String,
    /// Expiry, Unix seconds.
    pub expires_on: u64,
    /// When to refresh it, Unix seconds, if the endpoint said (`refresh_in`).
    pub refresh_on: Option<u64>,
    /// When it was received, Unix seconds (the caller's `now`).
    pub obtained_at: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &format_args!("<redacted>"))
            .field("expires_on", &self.expires_on)
            .field("refresh_on", &self.refresh_on)
            .field("obtained_at", &self.obtained_at)
            .finish()
    }
}

impl AccessToken {
    /// A token from its parts.
    pub fn new(token: impl Into<String>, expires_on: u64, obtained_at: u64) -> Self {
        AccessToken {
            token: token.into(),
            expires_on,
            refresh_on: None,
            obtained_at,
        }
    }

    /// The token text (a JWT). A secret: never log it.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// The token text, owned.
    pub fn into_secret(self) -> String {
        self.token
    }

    /// True while a cached token may still be handed out at `now_unix`:
    /// before its `refresh_in` time and while more than a quarter of its
    /// life (at most 11 minutes) remains. The client core puts a fresh
    /// token 10 minutes, or a fifth of the remaining life, before expiry; a
    /// token this stale at that moment is fetched anew instead of put again.
    pub fn is_fresh(&self, now_unix: u64) -> bool {
        if self.refresh_on.is_some_and(|r| now_unix >= r) {
            return false;
        }
        let life = self.expires_on.saturating_sub(self.obtained_at);
        let margin = (life / 4).min(11 * 60);
        now_unix + margin < self.expires_on
    }
}

/// Reads a token endpoint's answer: a token for a 2xx status, else the
/// endpoint's error. `now_unix` is when the response arrived.
pub fn parse_token_response(
    endpoint: TokenEndpoint,
    status: u16,
    body: &[u8],
    now_unix: u64,
) -> Result<AccessToken, CredentialError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        return Err(error_from_body(endpoint, status, json.as_ref(), body));
    }
    let invalid = |reason: String| CredentialError::InvalidResponse {
        endpoint,
        status,
        reason,
    };
    let Some(Value::Object(map)) = json else {
        return Err(invalid("the body is not a JSON object".into()));
    };
    let token = match map.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err(invalid("access_token is not a non-empty string".into())),
        None => return Err(invalid("no access_token".into())),
    };
    let expires_on = match map.get("expires_on") {
        None | Some(Value::Null) => None,
        Some(v) => Some(timestamp(v).ok_or_else(|| {
            invalid(format!(
                "expires_on {} is not a time",
                shorten(&v.to_string())
            ))
        })?),
    };
    let expires_in = match map.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(seconds(v).ok_or_else(|| {
            invalid(format!(
                "expires_in {} is not a number of seconds",
                shorten(&v.to_string())
            ))
        })?),
    };
    let expires_on = match (expires_on, expires_in) {
        (Some(on), _) => on,
        (None, Some(secs)) => now_unix.saturating_add(secs),
        (None, None) => return Err(invalid("neither expires_on nor expires_in".into())),
    };
    let refresh_on = map
        .get("refresh_in")
        .and_then(seconds)
        .map(|s| now_unix.saturating_add(s));
    Ok(AccessToken {
        token,
        expires_on,
        refresh_on,
        obtained_at: now_unix,
    })
}

/// The error an unsuccessful answer carries.
fn error_from_body(
    endpoint: TokenEndpoint,
    status: u16,
    json: Option<&Value>,
    body: &[u8],
) -> CredentialError {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let (error, description, error_codes) = match json {
        Some(Value::Object(m)) => match m.get("error") {
            // {"error":{"code":…,"message":…}}
            Some(Value::Object(inner)) => (
                text(inner.get("code")),
                text(inner.get("message")),
                Vec::new(),
            ),
            e => (
                text(e),
                text(m.get("error_description"))
                    .or_else(|| text(m.get("message")))
                    .or_else(|| text(m.get("Message"))),
                m.get("error_codes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            ),
        },
        _ => {
            let quoted = String::from_utf8_lossy(body);
            let quoted = quoted.trim();
            (
                None,
                (!quoted.is_empty()).then(|| shorten(quoted)),
                Vec::new(),
            )
        }
    };
    let error = CredentialError::Refused {
        endpoint,
        status,
        error,
        description,
        error_codes,
    };
    managed_identity_unavailable(endpoint, status, &error).unwrap_or(error)
}

/// The managed identity answers that mean "no identity here", which a chain
/// passes over (as azure-identity and azidentity do): IMDS 400 (no such
/// identity assigned) and a 403 naming an unreachable network (Docker
/// Desktop's answer for 169.254.169.254).
fn managed_identity_unavailable(
    endpoint: TokenEndpoint,
    status: u16,
    error: &CredentialError,
) -> Option<CredentialError> {
    let CredentialError::Refused { description, .. } = error else {
        return None;
    };
    let unreachable = description
        .as_deref()
        .is_some_and(|d| d.to_ascii_lowercase().contains("unreachable"));
    let reason = match (endpoint, status) {
        (TokenEndpoint::Imds, 400) => {
            "IMDS answered 400: the requested identity is not assigned to this resource"
        }
        (TokenEndpoint::Imds, 403) if unreachable => "IMDS is unreachable from this network",
        _ => return None,
    };
    Some(CredentialError::Unavailable {
        credential: "ManagedIdentityCredential",
        reason: format!("{reason} ({error})"),
    })
}

fn shorten(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match clean.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

/// Seconds as a JSON number or numeric string.
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

/// An `expires_on`: Unix seconds (number or numeric string), or one of the
/// date forms.
fn timestamp(v: &Value) -> Option<u64> {
    seconds(v).or_else(|| match v {
        Value::String(s) => parse_date(s.trim()),
        _ => None,
    })
}

/// `M/d/yyyy h:mm:ss [AM|PM] +HH:MM` (App Service 2017-09-01, US culture)
/// or RFC 3339 (`2017-09-01T10:00:00Z`, `…+02:00`, fractions ignored).
pub fn parse_date(s: &str) -> Option<u64> {
    if s.contains('/') {
        parse_us_date(s)
    } else {
        parse_rfc3339(s)
    }
}

fn parse_us_date(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let mut rest: Vec<&str> = parts.collect();
    let mut d = date.split('/');
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let year: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let (mut hour, minute, second) = hms(time)?;
    if let Some(i) = rest
        .iter()
        .position(|p| p.eq_ignore_ascii_case("AM") || p.eq_ignore_ascii_case("PM"))
    {
        let pm = rest.remove(i).eq_ignore_ascii_case("PM");
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
    }
    let offset = match rest.as_slice() {
        [] => 0,
        [o] => utc_offset(o)?,
        _ => return None,
    };
    unix(year, month, day, hour, minute, second, offset)
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        (&time[..i], utc_offset(&time[i..])?)
    };
    let clock = clock.split('.').next()?;
    let (hour, minute, second) = hms(clock)?;
    unix(year, month, day, hour, minute, second, offset)
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut t = s.split(':');
    let h = t.next()?.parse().ok()?;
    let m = t.next()?.parse().ok()?;
    let sec = t.next().map_or(Some(0), |x| x.parse().ok())?;
    if t.next().is_some() {
        return None;
    }
    Some((h, m, sec))
}

/// `+HH:MM`, `-HHMM`, `+HH` as seconds east of UTC.
fn utc_offset(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 2 && digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Unix seconds of a civil UTC time minus `offset` (days from civil:
/// H. Hinnant's algorithm).
fn unix(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset: i64,
) -> Option<u64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset;
    u64::try_from(secs).ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}
