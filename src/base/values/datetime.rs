//! Date/time text in `DateStyle=ISO` and `IntervalStyle=postgres`, as the replication session
//! sets them: `2024-02-29`, `0044-03-15 BC`, `13:45:00.5`, `13:45:00+05:30`,
//! `2024-02-29 13:45:00.123456+00`, `1 year 2 mons -3 days +04:05:06.7`, `±infinity`.

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_POSTGRES_DAYS: i64 = 10_957;

/// A date as days since 2000-01-01 (Postgres's own epoch, so every valid date fits;
/// proleptic Gregorian, year 0 = 1 BC), or ±infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateValue {
    Days(i32),
    Infinity,
    NegInfinity,
}

/// Microseconds since 2000-01-01 00:00:00 (UTC for timestamptz; Postgres's own epoch and
/// representation, so every valid value fits), or ±infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampValue {
    Micros(i64),
    Infinity,
    NegInfinity,
}

impl TimestampValue {
    /// Microseconds since the Unix epoch; `None` for ±infinity and for the last ~30 years
    /// before Postgres's maximum (294276 AD), which do not fit.
    pub fn unix_micros(self) -> Option<i64> {
        match self {
            TimestampValue::Micros(micros) => {
                micros.checked_add(UNIX_TO_POSTGRES_DAYS * MICROS_PER_DAY)
            }
            _ => None,
        }
    }
}

impl DateValue {
    /// Days since the Unix epoch; `None` for ±infinity (or beyond the `i32` range).
    pub fn unix_days(self) -> Option<i32> {
        match self {
            DateValue::Days(days) => i32::try_from(i64::from(days) + UNIX_TO_POSTGRES_DAYS).ok(),
            _ => None,
        }
    }
}

/// Days from 2000-01-01 to the given proleptic Gregorian date (astronomical year numbering).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468 - UNIX_TO_POSTGRES_DAYS
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(text: &str) -> Result<u32, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected digits");
    }
    text.parse().map_err(|_| "number out of range")
}

/// `Y-M-D` (year of at least 4 digits) with an optional ` BC` already removed.
fn civil_days(text: &str, bc: bool) -> Result<i64, &'static str> {
    let mut parts = text.splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected YYYY-MM-DD");
    };
    let (year, month, day) = (i64::from(digits(year)?), digits(month)?, digits(day)?);
    if year == 0 {
        return Err("year 0 does not exist (1 BC precedes 1 AD)");
    }
    let year = if bc { 1 - year } else { year };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err("no such day");
    }
    Ok(days_from_civil(year, month, day))
}

fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

pub(super) fn parse_date(text: &str) -> Result<DateValue, &'static str> {
    match text {
        "infinity" => return Ok(DateValue::Infinity),
        "-infinity" => return Ok(DateValue::NegInfinity),
        _ => {}
    }
    let (date, bc) = strip_bc(text);
    let days = civil_days(date, bc)?;
    i32::try_from(days)
        .map(DateValue::Days)
        .map_err(|_| "date out of range")
}

/// `HH:MM:SS[.ffffff]`, hours up to 24.
pub(super) fn parse_time(text: &str) -> Result<i64, &'static str> {
    let micros = clock(text)?;
    if micros > MICROS_PER_DAY {
        return Err("time after 24:00:00");
    }
    Ok(micros)
}

/// `H:MM:SS[.ffffff]` with any number of hours, as microseconds.
fn clock(text: &str) -> Result<i64, &'static str> {
    let mut parts = text.splitn(3, ':');
    let (Some(hours), Some(minutes), Some(seconds)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected HH:MM:SS");
    };
    let (seconds, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let (hours, minutes, seconds) = (
        i64::from(digits(hours)?),
        i64::from(digits(minutes)?),
        i64::from(digits(seconds)?),
    );
    if minutes > 59 || seconds > 60 {
        return Err("minutes or seconds out of range");
    }
    let mut micros = 0i64;
    if !fraction.is_empty() {
        if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err("bad fraction of a second");
        }
        micros = i64::from(digits(fraction)?) * 10i64.pow(6 - fraction.len() as u32);
    }
    hours
        .checked_mul(3600)
        .and_then(|h| h.checked_add(minutes * 60 + seconds))
        .and_then(|s| s.checked_mul(MICROS_PER_SECOND))
        .and_then(|m| m.checked_add(micros))
        .ok_or("time out of range")
}

/// `+HH`, `-HH:MM` or `+HH:MM:SS`, as seconds east of UTC.
fn offset(text: &str) -> Result<i32, &'static str> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err("expected a UTC offset"),
    };
    let mut seconds = 0i32;
    let mut count = 0;
    for (part, factor) in rest.split(':').zip([3600, 60, 1]) {
        let value = digits(part)?;
        if part.len() != 2 || value > 59 && factor != 3600 {
            return Err("bad UTC offset");
        }
        seconds += value as i32 * factor;
        count += 1;
    }
    if count == 0 || rest.split(':').count() > 3 || seconds > 16 * 3600 {
        return Err("bad UTC offset");
    }
    Ok(sign * seconds)
}

/// Splits `…+05:30` into the part before the offset and the offset.
fn split_offset(text: &str) -> Result<(&str, i32), &'static str> {
    let at = text.rfind(['+', '-']).ok_or("missing UTC offset")?;
    Ok((&text[..at], offset(&text[at..])?))
}

pub(super) fn parse_timetz(text: &str) -> Result<(i64, i32), &'static str> {
    let (time, offset) = split_offset(text)?;
    Ok((parse_time(time)?, offset))
}

pub(super) fn parse_timestamp(text: &str, with_zone: bool) -> Result<TimestampValue, &'static str> {
    match text {
        "infinity" => return Ok(TimestampValue::Infinity),
        "-infinity" => return Ok(TimestampValue::NegInfinity),
        _ => {}
    }
    let (text, bc) = strip_bc(text);
    let (date, rest) = text.split_once(' ').ok_or("expected a date and a time")?;
    let days = civil_days(date, bc)?;
    let (time, offset_seconds) = if with_zone {
        split_offset(rest)?
    } else {
        (rest, 0)
    };
    let time = parse_time(time)?;
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|m| m.checked_add(time))
        .and_then(|m| m.checked_sub(i64::from(offset_seconds) * MICROS_PER_SECOND))
        .map(TimestampValue::Micros)
        .ok_or("timestamp out of range")
}

/// `IntervalStyle=postgres`: `[N year[s]] [N mon[s]] [N day[s]] [[+-]H:MM:SS[.f]]`, or
/// `±infinity` (PostgreSQL 17). Returns (months, days, microseconds).
pub(super) fn parse_interval(text: &str) -> Result<(i32, i32, i64), &'static str> {
    match text {
        "infinity" => return Ok((i32::MAX, i32::MAX, i64::MAX)),
        "-infinity" => return Ok((i32::MIN, i32::MIN, i64::MIN)),
        _ => {}
    }
    let mut months = 0i64;
    let mut days = 0i64;
    let mut micros = 0i64;
    let mut tokens = text.split_whitespace();
    let mut any = false;
    while let Some(token) = tokens.next() {
        any = true;
        if token.contains(':') {
            let (negative, clock_text) = match token.as_bytes().first() {
                Some(b'-') => (true, &token[1..]),
                Some(b'+') => (false, &token[1..]),
                _ => (false, token),
            };
            let value = clock(clock_text)?;
            micros = micros
                .checked_add(if negative { -value } else { value })
                .ok_or("interval out of range")?;
            continue;
        }
        let number: i64 = token.parse().map_err(|_| "expected a number")?;
        let unit = tokens.next().ok_or("number without a unit")?;
        match unit {
            "year" | "years" => {
                months = number
                    .checked_mul(12)
                    .and_then(|n| months.checked_add(n))
                    .ok_or("interval out of range")?
            }
            "mon" | "mons" => months = months.checked_add(number).ok_or("interval out of range")?,
            "day" | "days" => days = days.checked_add(number).ok_or("interval out of range")?,
            _ => return Err("unknown interval unit"),
        }
    }
    if !any {
        return Err("empty interval");
    }
    let months = i32::try_from(months).map_err(|_| "months out of range")?;
    let days = i32::try_from(days).map_err(|_| "days out of range")?;
    Ok((months, days, micros))
}
