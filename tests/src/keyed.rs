//! The daily keyed table (and its static attributes table).

use std::io::{self, Write};

use crate::rng::SplitMix64;

/// How keys are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// COMID-like integers: `10000000`, `10000013`, …
    Numeric,
    /// USGS-gauge-like strings with leading zeros: `01000000`, `01000037`, …
    /// (a reader that parses them as numbers loses the zero).
    Padded,
}

#[derive(Debug, Clone)]
pub struct KeyedSpec {
    pub keys: usize,
    pub days: usize,
    pub features: usize,
    pub targets: usize,
    /// Share of (key, day) rows on which each target is observed.
    pub target_density: f64,
    /// First day, as days since 1970-01-01.
    pub start_day: i32,
    pub key_style: KeyStyle,
    pub seed: u64,
    pub key_column: String,
    pub date_column: String,
}

impl Default for KeyedSpec {
    fn default() -> Self {
        Self {
            keys: 100,
            days: 365,
            features: 20,
            targets: 2,
            target_density: 0.05,
            start_day: kiln_contracts::dates::parse_date(b"2000-01-01").expect("valid"),
            key_style: KeyStyle::Numeric,
            seed: 42,
            key_column: "COMID".into(),
            date_column: "date".into(),
        }
    }
}

/// Static attributes of one key, drawn once from the seed.
#[derive(Debug, Clone, Copy)]
pub struct Attributes {
    pub area_km2: f64,
    pub elevation_m: f64,
    pub slope: f64,
    pub forest_frac: f64,
    pub urban_frac: f64,
}

impl Attributes {
    pub const NAMES: [&'static str; 5] = [
        "area_km2",
        "elevation_m",
        "slope",
        "forest_frac",
        "urban_frac",
    ];

    fn draw(seed: u64, key_index: usize) -> Self {
        let mut g = SplitMix64::derive(seed ^ 0xA77B, key_index as u64);
        let forest = g.uniform() * 0.9;
        Self {
            area_km2: 10f64.powf(1.0 + 3.0 * g.uniform()),
            elevation_m: 3000.0 * g.uniform(),
            slope: 0.3 * g.uniform(),
            forest_frac: forest,
            urban_frac: (1.0 - forest) * g.uniform() * 0.5,
        }
    }

    pub fn values(&self) -> [f64; 5] {
        [
            self.area_km2,
            self.elevation_m,
            self.slope,
            self.forest_frac,
            self.urban_frac,
        ]
    }

    /// The attribute's effect on every target: standardized log area.
    pub fn target_effect(&self) -> f64 {
        (self.area_km2.log10() - 2.5) / 0.87
    }
}

impl KeyedSpec {
    pub fn key(&self, i: usize) -> String {
        match self.key_style {
            KeyStyle::Numeric => (10_000_000 + i * 13).to_string(),
            KeyStyle::Padded => format!("{:08}", 1_000_000 + i * 37),
        }
    }

    pub fn feature_name(j: usize) -> String {
        format!("feat_{:02}", j + 1)
    }

    pub fn target_name(j: usize) -> String {
        format!("target_{}", j + 1)
    }

    pub fn header(&self) -> Vec<String> {
        let mut h = vec![self.date_column.clone(), self.key_column.clone()];
        h.extend((0..self.features).map(Self::feature_name));
        h.extend((0..self.targets).map(Self::target_name));
        h
    }

    pub fn rows(&self) -> u64 {
        (self.keys * self.days) as u64
    }

    pub fn attributes(&self, key_index: usize) -> Attributes {
        Attributes::draw(self.seed, key_index)
    }

    /// Write the table as CSV, date-major. Returns the number of data rows.
    pub fn write_csv<W: Write>(&self, out: W) -> io::Result<u64> {
        let mut out = io::BufWriter::with_capacity(1 << 20, out);
        writeln!(out, "{}", self.header().join(","))?;
        let mut rows = 0;
        let mut line = Vec::with_capacity(512);
        let mut state = SeriesState::new(self);
        let keys: Vec<String> = (0..self.keys).map(|i| self.key(i)).collect();
        for day in 0..self.days {
            let date = kiln_contracts::dates::format_date(self.start_day + day as i32);
            for (k, key) in keys.iter().enumerate() {
                line.clear();
                line.extend_from_slice(date.as_bytes());
                line.push(b',');
                line.extend_from_slice(key.as_bytes());
                let row = state.step(k, day);
                for v in &row.features {
                    line.push(b',');
                    push_fixed4(&mut line, *v);
                }
                for t in &row.targets {
                    line.push(b',');
                    if let Some(v) = t {
                        push_fixed4(&mut line, *v);
                    }
                }
                line.push(b'\n');
                out.write_all(&line)?;
                rows += 1;
            }
        }
        out.flush()?;
        Ok(rows)
    }

    /// Every key's rows as `(day, row)`, day as days since the epoch, in date
    /// order — the same values `write_csv` prints, before rounding.
    pub fn series(&self) -> Vec<(String, Vec<(i32, Row)>)> {
        let mut state = SeriesState::new(self);
        let mut out: Vec<(String, Vec<(i32, Row)>)> = (0..self.keys)
            .map(|k| (self.key(k), Vec::with_capacity(self.days)))
            .collect();
        for day in 0..self.days {
            for (k, (_, rows)) in out.iter_mut().enumerate() {
                rows.push((self.start_day + day as i32, state.step(k, day)));
            }
        }
        out
    }

    /// Write the static attributes table (`key, area_km2, …`) as CSV.
    pub fn write_attributes_csv<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = io::BufWriter::new(out);
        writeln!(out, "{},{}", self.key_column, Attributes::NAMES.join(","))?;
        for k in 0..self.keys {
            let mut line = self.key(k).into_bytes();
            for v in self.attributes(k).values() {
                line.push(b',');
                push_fixed4(&mut line, v);
            }
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }
}

/// One generated row, as the numbers that will be printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub features: Vec<f64>,
    pub targets: Vec<Option<f64>>,
}

/// Per-key series state: AR(1) noise per feature and the last three
/// standardized values of the features the targets depend on.
struct SeriesState<'a> {
    spec: &'a KeyedSpec,
    rng: SplitMix64,
    ar: Vec<f64>,
    lags: Vec<[f64; 3]>,
    phase: Vec<f64>,
    effect: Vec<f64>,
}

const LAGGED: usize = 3;

impl<'a> SeriesState<'a> {
    fn new(spec: &'a KeyedSpec) -> Self {
        let mut g = SplitMix64::derive(spec.seed, u64::MAX);
        Self {
            spec,
            rng: SplitMix64::new(spec.seed),
            ar: vec![0.0; spec.keys * spec.features],
            lags: vec![[0.0; 3]; spec.keys * LAGGED],
            phase: (0..spec.keys).map(|_| g.uniform() * 365.25).collect(),
            effect: (0..spec.keys)
                .map(|k| spec.attributes(k).target_effect())
                .collect(),
        }
    }

    fn step(&mut self, k: usize, day: usize) -> Row {
        let spec = self.spec;
        let t = (spec.start_day as f64 + day as f64 + self.phase[k]) / 365.25;
        let mut features = Vec::with_capacity(spec.features);
        for j in 0..spec.features {
            let ar = &mut self.ar[k * spec.features + j];
            *ar = 0.8 * *ar + 0.35 * self.rng.normal();
            let z = (std::f64::consts::TAU * t + j as f64).sin() + *ar;
            if j < LAGGED {
                let lag = &mut self.lags[k * LAGGED + j];
                lag.rotate_right(1);
                lag[0] = z;
            }
            // Heterogeneous scales so that a missing scaler would show.
            let (mean, scale) = (10.0 * (j as f64 + 1.0), 1.0 + j as f64);
            features.push(mean + scale * z);
        }
        let lag = |j: usize, d: usize| self.lags.get(k * LAGGED + j).map_or(0.0, |l| l[d]);
        let base = if spec.features >= LAGGED {
            0.6 * lag(0, 0) + 0.3 * lag(1, 1) - 0.2 * lag(2, 2)
        } else {
            0.6 * lag(0, 0)
        };
        let mut targets = Vec::with_capacity(spec.targets);
        for j in 0..spec.targets {
            let observed = self.rng.uniform() < spec.target_density;
            let noise = 0.05 * self.rng.normal();
            let y = (1.0 + 0.5 * j as f64) * base + 0.5 * self.effect[k] + noise;
            targets.push(observed.then_some(y));
        }
        Row { features, targets }
    }
}

/// Append `v` with exactly four decimals (fast; the generator prints ~10^8
/// numbers for the benchmark).
pub fn push_fixed4(buf: &mut Vec<u8>, v: f64) {
    let scaled = (v * 10_000.0).round() as i64;
    if scaled < 0 {
        buf.push(b'-');
    }
    let abs = scaled.unsigned_abs();
    let mut ib = itoa::Buffer::new();
    buf.extend_from_slice(ib.format(abs / 10_000).as_bytes());
    buf.push(b'.');
    let frac = abs % 10_000;
    let s = ib.format(frac);
    buf.extend(std::iter::repeat_n(b'0', 4 - s.len()));
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed4() {
        let mut b = Vec::new();
        for v in [0.0, 1.5, -0.00004, -2.25, 123.45678, 0.0001] {
            push_fixed4(&mut b, v);
            b.push(b' ');
        }
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "0.0000 1.5000 0.0000 -2.2500 123.4568 0.0001 "
        );
    }

    #[test]
    fn deterministic_date_major_with_leading_zeros() {
        let spec = KeyedSpec {
            keys: 3,
            days: 2,
            features: 2,
            targets: 1,
            target_density: 0.5,
            key_style: KeyStyle::Padded,
            ..Default::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(spec.write_csv(&mut a).unwrap(), 6);
        spec.write_csv(&mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "date,COMID,feat_01,feat_02,target_1");
        assert!(lines[1].starts_with("2000-01-01,01000000,"));
        assert!(lines[2].starts_with("2000-01-01,01000037,"));
        assert!(lines[4].starts_with("2000-01-02,01000000,"));
    }
}
