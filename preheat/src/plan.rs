//! What to do with each symbol: skip it (fresh), fetch everything, or fetch
//! only the rows after its last cached date.

use std::collections::HashMap;
use std::time::Duration;

use kiln_contracts::ColumnType;

/// Which rows of a symbol to fetch. Dates are in the date column's unit
/// (days since 1970 for DATE, microseconds for DATETIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// All rows (within `--start-date/--end-date`); replaces the cached file.
    Full,
    /// Rows dated after this value, merged over the cached rows up to it.
    After(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Younger than the TTL.
    Fresh,
    Fetch(Fetch),
}

/// What the cache knows about a symbol.
#[derive(Debug, Clone, Copy)]
pub struct Cached {
    pub last_date: i64,
    /// When the source was last asked for this symbol, µs since the epoch.
    pub fetched_at_us: i64,
}

/// Date limits of every fetch: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// `days` in the units of a date column of type `ty` (days for DATE,
/// microseconds for DATETIME/TIMESTAMP).
pub fn days_as(days: i64, ty: ColumnType) -> i64 {
    match ty {
        ColumnType::TimestampUs => days * 86_400_000_000,
        _ => days,
    }
}

impl Bounds {
    /// From `--start-date/--end-date` (days since 1970, both inclusive).
    pub fn from_days(start: Option<i32>, end: Option<i32>, ty: ColumnType) -> Self {
        Self {
            start: start.map(|d| days_as(i64::from(d), ty)),
            end: end.map(|d| days_as(i64::from(d) + 1, ty)),
        }
    }

    pub fn contains(&self, date: i64) -> bool {
        self.start.is_none_or(|s| date >= s) && self.end.is_none_or(|e| date < e)
    }
}

/// Fetched less than `ttl` before `now_us` (a fetch time in the future, a
/// clock set back, counts as stale).
pub fn is_fresh(fetched_at_us: i64, now_us: i64, ttl: Duration) -> bool {
    let age_us = now_us.saturating_sub(fetched_at_us);
    age_us >= 0 && (age_us as u128) < ttl.as_micros()
}

/// Decides per symbol from the cache, the TTL and the flags.
#[derive(Debug, Clone)]
pub struct Planner {
    pub cached: HashMap<String, Cached>,
    pub now_us: i64,
    pub ttl: Duration,
    pub force: bool,
    pub overlap_days: u32,
    pub date_type: ColumnType,
}

impl Planner {
    pub fn decide(&self, symbol: &str) -> Decision {
        let Some(cached) = self.cached.get(symbol) else {
            return Decision::Fetch(Fetch::Full);
        };
        if self.force {
            return Decision::Fetch(Fetch::Full);
        }
        if is_fresh(cached.fetched_at_us, self.now_us, self.ttl) {
            return Decision::Fresh;
        }
        let overlap = days_as(i64::from(self.overlap_days), self.date_type);
        Decision::Fetch(Fetch::After(cached.last_date - overlap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner() -> Planner {
        let mut cached = HashMap::new();
        let hour = 3_600_000_000;
        cached.insert(
            "fresh".to_string(),
            Cached {
                last_date: 100,
                fetched_at_us: 10 * hour,
            },
        );
        cached.insert(
            "stale".to_string(),
            Cached {
                last_date: 100,
                fetched_at_us: 0,
            },
        );
        Planner {
            cached,
            now_us: 30 * hour,
            ttl: Duration::from_secs(24 * 3600),
            force: false,
            overlap_days: 0,
            date_type: ColumnType::Date32,
        }
    }

    #[test]
    fn ttl_overlap_and_force() {
        let mut p = planner();
        assert_eq!(p.decide("fresh"), Decision::Fresh);
        assert_eq!(p.decide("stale"), Decision::Fetch(Fetch::After(100)));
        assert_eq!(p.decide("new"), Decision::Fetch(Fetch::Full));
        p.overlap_days = 3;
        assert_eq!(p.decide("stale"), Decision::Fetch(Fetch::After(97)));
        p.date_type = ColumnType::TimestampUs;
        assert_eq!(
            p.decide("stale"),
            Decision::Fetch(Fetch::After(100 - 3 * 86_400_000_000))
        );
        p.force = true;
        assert_eq!(p.decide("fresh"), Decision::Fetch(Fetch::Full));
        p.force = false;
        p.ttl = Duration::ZERO;
        p.overlap_days = 0;
        p.date_type = ColumnType::Date32;
        assert_eq!(p.decide("fresh"), Decision::Fetch(Fetch::After(100)));
    }

    #[test]
    fn bounds_are_inclusive_days() {
        let b = Bounds::from_days(Some(10), Some(20), ColumnType::Date32);
        assert!(!b.contains(9) && b.contains(10) && b.contains(20) && !b.contains(21));
        let b = Bounds::from_days(Some(1), Some(1), ColumnType::TimestampUs);
        let day = 86_400_000_000;
        assert!(b.contains(day) && b.contains(2 * day - 1) && !b.contains(2 * day));
    }
}
