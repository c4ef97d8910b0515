//! Dates as users' exports write them, parsed fast: the date column is parsed
//! once per row of a 20 GB file, so the common `YYYY-MM-DD` layout takes a
//! hand-checked fast path and everything else goes through chrono.

use chrono::{NaiveDate, NaiveDateTime};

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), or `None` when the date does not exist.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    NaiveDate::from_ymd_opt(year, month, day)
        .map(|d| d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

use chrono::Datelike;

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parse a calendar date: `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD` or
/// `YYYYMMDD`. Returns days since 1970-01-01.
pub fn parse_date(s: &[u8]) -> Option<i32> {
    match s.len() {
        10 if s[4] == s[7] && matches!(s[4], b'-' | b'/' | b'.') => days_from_civil(
            digits(&s[0..4])? as i32,
            digits(&s[5..7])?,
            digits(&s[8..10])?,
        ),
        8 if s.iter().all(u8::is_ascii_digit) => days_from_civil(
            digits(&s[0..4])? as i32,
            digits(&s[4..6])?,
            digits(&s[6..8])?,
        ),
        // Unpadded months/days: 2020-1-5, 2020/01/5.
        8 | 9 => {
            let text = std::str::from_utf8(s).ok()?;
            ["%Y-%m-%d", "%Y/%m/%d"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
                .map(|d| d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
        }
        _ => None,
    }
}

/// Parse a date-time without time zone (`YYYY-MM-DD HH:MM[:SS[.f]]`, `T`
/// separator allowed, trailing `Z` accepted as UTC) or a plain date
/// (midnight). Returns microseconds since 1970-01-01T00:00:00.
pub fn parse_timestamp_us(s: &[u8]) -> Option<i64> {
    if let Some(days) = parse_date(s) {
        return Some(i64::from(days) * 86_400_000_000);
    }
    let text = std::str::from_utf8(s).ok()?;
    let text = text.strip_suffix('Z').unwrap_or(text);
    const LAYOUTS: [&str; 6] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
    ];
    LAYOUTS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|dt| dt.and_utc().timestamp_micros())
}

/// What a sampled text value looks like, for type inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporal {
    Date,
    DateTime,
}

/// Classify a value as a date or date-time. `YYYYMMDD` is not recognised here
/// because it is indistinguishable from a number; use it via an explicit type.
pub fn classify(s: &[u8]) -> Option<Temporal> {
    if !s.iter().all(u8::is_ascii_digit) && parse_date(s).is_some() {
        Some(Temporal::Date)
    } else if s.len() > 10 && parse_timestamp_us(s).is_some() {
        Some(Temporal::DateTime)
    } else {
        None
    }
}

/// `YYYY-MM-DD` for days since the epoch.
pub fn format_date(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day {days}"))
}

/// ISO 8601 for microseconds since the epoch (`YYYY-MM-DDTHH:MM:SS[.ffffff]`).
/// A value of a dataset's date column (days for `date32`, µs for
/// `timestamp_us`), formatted as the manifest and messages show it.
pub fn format_value(value: i64, date_type: crate::ColumnType) -> String {
    match date_type {
        crate::ColumnType::TimestampUs => format_timestamp_us(value),
        _ => format_date(value as i32),
    }
}

pub fn format_timestamp_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|dt| {
            let naive = dt.naive_utc();
            if us % 1_000_000 == 0 {
                naive.format("%Y-%m-%dT%H:%M:%S").to_string()
            } else {
                naive.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            }
        })
        .unwrap_or_else(|| format!("{us}us"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_common_layouts() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(parse_date(b"1970-01-02"), Some(1));
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_date(b"2000-03-01"), Some(11017));
        assert_eq!(parse_date(b"2000/03/01"), Some(11017));
        assert_eq!(parse_date(b"20000301"), Some(11017));
        assert_eq!(parse_date(b"2000-3-1"), Some(11017));
        assert_eq!(parse_date(b"2001-02-29"), None);
        assert_eq!(parse_date(b"2000-13-01"), None);
        assert_eq!(parse_date(b"2000-01/01"), None);
        assert_eq!(parse_date(b"abcd-ef-gh"), None);
        assert_eq!(format_date(11017), "2000-03-01");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_us(b"1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(
            parse_timestamp_us(b"1970-01-01T00:01:00.5"),
            Some(60_500_000)
        );
        assert_eq!(parse_timestamp_us(b"1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp_us(b"1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp_us(b"yesterday"), None);
        assert_eq!(
            format_timestamp_us(60_500_000),
            "1970-01-01T00:01:00.500000"
        );
    }

    #[test]
    fn classification_leaves_numbers_alone() {
        assert_eq!(classify(b"2020-01-31"), Some(Temporal::Date));
        assert_eq!(classify(b"2020-01-31 12:00:00"), Some(Temporal::DateTime));
        assert_eq!(classify(b"20200131"), None);
        assert_eq!(classify(b"3.25"), None);
    }
}
