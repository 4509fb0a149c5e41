//! Report periods: a calendar month (`2026-11`), an ISO week (`2026-W45`), or a custom range
//! of days (`2026-11-01..2026-11-15`, both days included). All in UTC, as `[start, end)`
//! in Unix milliseconds.

use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 86_400_000;

/// The half-open time range a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// As given: `2026-11`, `2026-W45`, `2026-11-01..2026-11-15`.
    pub label: String,
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("period {0:?}: expected a month (2026-11), an ISO week (2026-W45) or a range of days (2026-11-01..2026-11-15)")]
pub struct PeriodError(pub String);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-24 10:07:17` (UTC) for a Unix time in milliseconds.
pub fn format_ts(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, PeriodError> {
        let t = s.trim();
        let err = || PeriodError(s.to_string());
        let (start, end) = if let Some((a, b)) = t.split_once("..") {
            let a = parse_day(a).ok_or_else(err)?;
            let b = parse_day(b).ok_or_else(err)?;
            if b < a {
                return Err(err());
            }
            (a, b + 1)
        } else if let Some((y, w)) = t.split_once("-W") {
            let y: i64 = y.parse().map_err(|_| err())?;
            let w: i64 = w.parse().map_err(|_| err())?;
            // ISO week 1 is the week with the year's first Thursday; weeks start on Monday.
            let jan4 = days_from_civil(y, 1, 4);
            let weekday = (jan4 + 3).rem_euclid(7); // 0 = Monday
            let week1 = jan4 - weekday;
            let weeks_in_year = {
                let next = days_from_civil(y + 1, 1, 4);
                (next - (next + 3).rem_euclid(7) - week1) / 7
            };
            if !(1..=weeks_in_year).contains(&w) {
                return Err(err());
            }
            let start = week1 + (w - 1) * 7;
            (start, start + 7)
        } else {
            let (y, m) = t.split_once('-').ok_or_else(err)?;
            let y: i64 = y.parse().map_err(|_| err())?;
            let m: u32 = m.parse().map_err(|_| err())?;
            if !(1..=12).contains(&m) {
                return Err(err());
            }
            let start = days_from_civil(y, m, 1);
            (start, start + i64::from(days_in_month(y, m)))
        };
        Ok(Period { label: t.to_string(), start_ms: start * DAY_MS, end_ms: end * DAY_MS })
    }

    pub fn contains(&self, ts_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn periods() {
        let p = Period::parse("2026-11").unwrap();
        assert_eq!(format_ts(p.start_ms), "2026-11-01 00:00:00");
        assert_eq!(format_ts(p.end_ms), "2026-12-01 00:00:00");
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(format_ts(p.end_ms), "2027-01-01 00:00:00");
        // ISO week 1 of 2026 starts on Monday 2025-12-29.
        let p = Period::parse("2026-W01").unwrap();
        assert_eq!(format_ts(p.start_ms), "2025-12-29 00:00:00");
        let p = Period::parse("2026-W48").unwrap();
        assert_eq!(format_ts(p.start_ms), "2026-11-23 00:00:00");
        assert_eq!(format_ts(p.end_ms), "2026-11-30 00:00:00");
        let p = Period::parse("2026-11-01..2026-11-15").unwrap();
        assert_eq!(format_ts(p.end_ms), "2026-11-16 00:00:00");
        for bad in ["2026-13", "2026", "2026-W54", "2026-02-30..2026-03-01", "2026-11-15..2026-11-01", "x"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format_ts(1_795_000_000_123), "2026-11-18 11:06:40");
    }
}
