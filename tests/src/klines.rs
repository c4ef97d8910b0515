//! Daily stock klines shaped like an A-share table (`stock_kline_data`):
//! symbols with leading zeros, trading days only, listings that start late,
//! suspensions (missing days), ±10 % daily price limits, prices and amounts
//! exact to the cent (DECIMAL), and a `turnover` that is sometimes NULL.
//!
//! Everything is integers underneath (cents, 1/10,000 of a percent), so a
//! dump, a MySQL table and a parquet cache can be compared exactly.

use std::io::{self, Write};

use crate::rng::SplitMix64;

/// What to generate.
#[derive(Debug, Clone)]
pub struct KlineSpec {
    pub symbols: usize,
    /// Trading days (Mon–Fri) from `start_day` on.
    pub days: usize,
    /// Days since 1970-01-01 of the first calendar day.
    pub start_day: i32,
    pub seed: u64,
    /// Share of (symbol, day) rows missing because the symbol was suspended.
    pub suspended_share: f64,
    /// Share of rows whose `turnover` is NULL.
    pub null_turnover_share: f64,
}

impl Default for KlineSpec {
    fn default() -> Self {
        Self {
            symbols: 10,
            days: 250,
            start_day: 18_631, // 2021-01-04, a Monday
            seed: 42,
            suspended_share: 0.01,
            null_turnover_share: 0.002,
        }
    }
}

/// One row. Prices and `amount` in cents; `turnover` in 1/10,000 percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kline {
    pub symbol: String,
    pub trade_date: i32,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i64,
    pub amount: i64,
    pub turnover: Option<i64>,
}

pub const KLINE_COLUMNS: [&str; 9] = [
    "symbol",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "amount",
    "turnover",
];

impl KlineSpec {
    /// The i-th symbol: exchange-like prefixes, zero-padded (`000001`,
    /// `600012`); unique for up to ~90,000 symbols.
    pub fn symbol(&self, i: usize) -> String {
        const PREFIXES: [usize; 7] = [0, 2, 300, 600, 601, 603, 688];
        let n = i / PREFIXES.len() + 1;
        if n < 1000 {
            format!("{:06}", PREFIXES[i % PREFIXES.len()] * 1000 + n)
        } else {
            format!("{:06}", 900_000 + i)
        }
    }

    /// The calendar day (days since 1970-01-01) of the d-th trading day.
    pub fn trading_day(&self, d: usize) -> i32 {
        // 1970-01-01 was a Thursday: weekday 0 = Monday.
        let weekday = |day: i32| (day + 3).rem_euclid(7);
        let mut day = self.start_day;
        while weekday(day) > 4 {
            day += 1;
        }
        let start_weekday = weekday(day) as usize;
        let weeks = (start_weekday + d) / 5;
        let in_week = (start_weekday + d) % 5;
        day - start_weekday as i32 + weeks as i32 * 7 + in_week as i32
    }

    /// Every row of one symbol, in date order.
    pub fn symbol_rows(&self, i: usize) -> Vec<Kline> {
        let symbol = self.symbol(i);
        let mut rng = SplitMix64::derive(self.seed, i as u64);
        // One symbol in five lists after the start.
        let listed = if i % 5 == 4 {
            (rng.uniform() * self.days as f64 * 0.5) as usize
        } else {
            0
        };
        let mut close = 500 + (rng.uniform() * 20_000.0) as i64; // 5.00 .. 205.00
        let float_shares = 50_000_000 + (rng.uniform() * 2e9) as i64;
        let mut suspended_left = 0usize;
        let mut rows = Vec::with_capacity(self.days - listed);
        for d in listed..self.days {
            if suspended_left > 0 {
                suspended_left -= 1;
                continue;
            }
            // Suspensions come in runs of 1..=10 days.
            if d > listed && rng.uniform() < self.suspended_share / 5.5 {
                suspended_left = (rng.uniform() * 10.0) as usize;
                continue;
            }
            let prev = close as f64;
            let limit = |p: f64| p.clamp(prev * 0.9, prev * 1.1);
            let change = (rng.normal() * 0.02).exp();
            let close_f = limit(prev * change);
            let open_f = limit(prev * (1.0 + rng.normal() * 0.006));
            let high_f = limit(open_f.max(close_f) * (1.0 + rng.normal().abs() * 0.008));
            let low_f = limit(open_f.min(close_f) * (1.0 - rng.normal().abs() * 0.008));
            let cents = |p: f64| (p.round() as i64).max(1);
            let (open, close_c) = (cents(open_f), cents(close_f));
            let high = cents(high_f).max(open).max(close_c);
            let low = cents(low_f).min(open).min(close_c);
            let volume = ((rng.normal() * 0.6 + 14.5).exp() as i64 / 100).max(1) * 100;
            let typical = (open + high + low + close_c) / 4;
            let amount = volume * typical;
            let turnover = (rng.uniform() >= self.null_turnover_share)
                .then(|| volume * 1_000_000 / float_shares);
            close = close_c;
            rows.push(Kline {
                symbol: symbol.clone(),
                trade_date: self.trading_day(d),
                open,
                high,
                low,
                close,
                volume,
                amount,
                turnover,
            });
        }
        rows
    }

    /// A CSV dump, symbol by symbol (a table's primary-key order): header,
    /// ISO dates, decimals with 2 (prices, amount) and 4 (turnover) places,
    /// empty for NULL. Returns the row count.
    pub fn write_csv<W: Write>(&self, out: W) -> io::Result<u64> {
        let mut out = io::BufWriter::with_capacity(1 << 20, out);
        writeln!(out, "{}", KLINE_COLUMNS.join(","))?;
        let mut rows = 0;
        for i in 0..self.symbols {
            for k in self.symbol_rows(i) {
                writeln!(out, "{}", k.csv_line())?;
                rows += 1;
            }
        }
        out.flush()?;
        Ok(rows)
    }
}

impl Kline {
    /// Each column as text, in [`KLINE_COLUMNS`] order: ISO date, 2 places
    /// for prices and amount, 4 for turnover; `None` for NULL.
    pub fn text_fields(&self) -> [Option<String>; 9] {
        [
            Some(self.symbol.clone()),
            Some(kiln_contracts::dates::format_date(self.trade_date)),
            Some(decimal(self.open, 2)),
            Some(decimal(self.high, 2)),
            Some(decimal(self.low, 2)),
            Some(decimal(self.close, 2)),
            Some(self.volume.to_string()),
            Some(decimal(self.amount, 2)),
            self.turnover.map(|t| decimal(t, 4)),
        ]
    }

    /// The row as the CSV dump writes it (no newline; NULL is empty).
    pub fn csv_line(&self) -> String {
        self.text_fields().map(Option::unwrap_or_default).join(",")
    }
}

/// `12345, 2` → `123.45`.
pub fn decimal(value: i64, places: u32) -> String {
    let scale = 10i64.pow(places);
    let sign = if value < 0 { "-" } else { "" };
    let v = value.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        v / scale as u64,
        v % scale as u64,
        width = places as usize
    )
}

#[cfg(test)]
mod tests {
    use super::{decimal, KlineSpec};

    #[test]
    fn trading_days_skip_weekends() {
        let spec = KlineSpec::default(); // starts Monday 2021-01-04
        let dates: Vec<String> = (0..7)
            .map(|d| kiln_contracts::dates::format_date(spec.trading_day(d)))
            .collect();
        assert_eq!(
            dates,
            [
                "2021-01-04",
                "2021-01-05",
                "2021-01-06",
                "2021-01-07",
                "2021-01-08",
                "2021-01-11",
                "2021-01-12"
            ]
        );
        let saturday = KlineSpec {
            start_day: 18_636, // 2021-01-09
            ..KlineSpec::default()
        };
        assert_eq!(
            kiln_contracts::dates::format_date(saturday.trading_day(0)),
            "2021-01-11"
        );
    }

    #[test]
    fn rows_are_consistent_and_deterministic() {
        let spec = KlineSpec {
            symbols: 20,
            days: 300,
            suspended_share: 0.05,
            null_turnover_share: 0.05,
            ..KlineSpec::default()
        };
        let mut nulls = 0;
        let mut total = 0;
        for i in 0..spec.symbols {
            let rows = spec.symbol_rows(i);
            assert_eq!(rows, spec.symbol_rows(i));
            assert!(rows.windows(2).all(|w| w[0].trade_date < w[1].trade_date));
            for pair in rows.windows(2) {
                let (prev, k) = (pair[0].close, &pair[1]);
                assert!(k.low <= k.open.min(k.close) && k.high >= k.open.max(k.close));
                assert!(
                    k.close * 10 <= prev * 11 + 10 && k.close * 10 >= prev * 9 - 10,
                    "±10 %"
                );
                assert!(k.volume > 0 && k.volume % 100 == 0 && k.low > 0);
            }
            nulls += rows.iter().filter(|k| k.turnover.is_none()).count();
            total += rows.len();
        }
        assert!(total < 20 * 300, "suspensions and late listings drop rows");
        assert!(nulls > 0, "some turnover is NULL");
        let symbols: Vec<String> = (0..8).map(|i| spec.symbol(i)).collect();
        assert_eq!(symbols[0], "000001");
        assert_eq!(symbols[3], "600001");
        assert_eq!(symbols[7], "000002");
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(12345, 2), "123.45");
        assert_eq!(decimal(5, 4), "0.0005");
        assert_eq!(decimal(-250, 2), "-2.50");
    }
}
