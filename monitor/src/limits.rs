//! Memory amounts on the command line: `5GiB`, `512MiB`, `1.5G`, or `80%`
//! (a share of the machine's total memory).

use std::fmt;
use std::str::FromStr;

use kiln_contracts::mem::human_bytes;

/// An amount of memory as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    /// Percent of total memory, in (0, 100].
    Percent(f64),
}

impl Amount {
    /// Bytes, with percentages taken of `total`.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            Amount::Bytes(b) => b,
            Amount::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if let Some(number) = text.strip_suffix('%') {
            let p: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a percentage (e.g. 80%)"))?;
            if p.is_nan() || p <= 0.0 {
                return Err(format!("'{s}' must be more than 0%"));
            }
            if p > 100.0 {
                return Err(format!("'{s}' is more than 100% of the machine's memory"));
            }
            return Ok(Amount::Percent(p));
        }
        let bytes = parse_size::Config::new()
            .with_binary()
            .parse_size(text)
            .map_err(|e| {
                format!("'{s}': {e} (use a size like 512MiB, 5GiB, 1.5G, or a percentage like 80%)")
            })?;
        if bytes == 0 {
            return Err(format!("'{s}' must be more than 0"));
        }
        Ok(Amount::Bytes(bytes))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Bytes(b) => f.write_str(&human_bytes(*b)),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The thresholds a watch enforces, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Stop the command when its process tree's RSS reaches this.
    pub tree_limit: Option<u64>,
    /// Say so once when the tree's RSS reaches this.
    pub warn: Option<u64>,
    /// Stop the command when the system's available memory falls below this.
    pub min_available: Option<u64>,
}

impl Thresholds {
    /// Resolves the user's amounts against the machine's `total` memory and
    /// checks they make sense together.
    pub fn resolve(
        limit: Option<Amount>,
        warn: Option<Amount>,
        min_available: Option<Amount>,
        total: u64,
    ) -> Result<Self, String> {
        let tree_limit = limit.map(|a| a.resolve(total));
        let explicit_warn = warn.map(|a| a.resolve(total));
        if let (Some(w), Some(l)) = (explicit_warn, tree_limit) {
            if w >= l {
                return Err(format!(
                    "--warn {} ({}) must be below --limit {} ({})",
                    warn.expect("set"),
                    human_bytes(w),
                    limit.expect("set"),
                    human_bytes(l)
                ));
            }
        }
        // Without an explicit --warn, warn at 80 % of the limit.
        let warn = explicit_warn.or(tree_limit.map(|l| l / 5 * 4));
        let min_available = min_available.map(|a| a.resolve(total));
        if let Some(m) = min_available {
            if m >= total {
                return Err(format!(
                    "--min-available {} is not below the machine's total memory {}",
                    human_bytes(m),
                    human_bytes(total)
                ));
            }
        }
        Ok(Self {
            tree_limit,
            warn,
            min_available,
        })
    }

    /// Why the watch must stop the command at this sample, if it must.
    pub fn breach(&self, tree_rss: u64, system_available: u64) -> Option<String> {
        if let Some(limit) = self.tree_limit.filter(|&l| tree_rss >= l) {
            return Some(format!(
                "tree RSS {} reached the limit {}",
                human_bytes(tree_rss),
                human_bytes(limit)
            ));
        }
        if let Some(min) = self.min_available.filter(|&m| system_available < m) {
            return Some(format!(
                "system available memory {} fell below --min-available {}",
                human_bytes(system_available),
                human_bytes(min)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{Amount, Thresholds};

    const GIB: u64 = 1 << 30;

    #[test]
    fn parses_sizes_and_percentages() {
        assert_eq!("5GiB".parse(), Ok(Amount::Bytes(5 * GIB)));
        assert_eq!("512MiB".parse(), Ok(Amount::Bytes(512 << 20)));
        assert_eq!("1.5G".parse(), Ok(Amount::Bytes(1536 << 20)));
        assert_eq!("80%".parse(), Ok(Amount::Percent(80.0)));
        assert_eq!(Amount::Percent(25.0).resolve(8 * GIB), 2 * GIB);
    }

    #[test]
    fn rejects_nonsense() {
        for (input, says) in [
            ("0", "more than 0"),
            ("0%", "more than 0%"),
            ("150%", "more than 100%"),
            ("5XB", "use a size like"),
            ("lots", "use a size like"),
            ("x%", "not a percentage"),
        ] {
            let err = input.parse::<Amount>().unwrap_err();
            assert!(err.contains(says), "{input}: {err}");
        }
    }

    #[test]
    fn warn_defaults_to_80_percent_and_must_be_below_the_limit() {
        let t = Thresholds::resolve(Some(Amount::Bytes(10 * GIB)), None, None, 16 * GIB).unwrap();
        assert_eq!(t.warn, Some(8 * GIB));
        let err = Thresholds::resolve(
            Some(Amount::Bytes(GIB)),
            Some(Amount::Percent(70.0)),
            None,
            16 * GIB,
        )
        .unwrap_err();
        assert!(err.contains("must be below --limit"), "{err}");
    }

    #[test]
    fn breaches() {
        let t = Thresholds {
            tree_limit: Some(GIB),
            warn: None,
            min_available: Some(2 * GIB),
        };
        assert_eq!(t.breach(GIB - 1, 3 * GIB), None);
        assert!(t
            .breach(GIB, 3 * GIB)
            .unwrap()
            .contains("reached the limit"));
        assert!(t.breach(1, GIB).unwrap().contains("--min-available"));
    }
}
