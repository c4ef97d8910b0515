//! Which source columns become which cache columns, with what types.
//!
//! The cache always names the kline columns canonically (`symbol`,
//! `trade_date`, `open`, `high`, `low`, `close`, `volume`, and `amount` when
//! the source has it) so kiln-featurize and kiln-train find them whatever the
//! table called them; every other column passes through under its own name.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use kiln_contracts::ColumnType;

use crate::error::PreheatError;

pub const SYMBOL: &str = "symbol";
pub const DATE: &str = "trade_date";
/// Columns every kline source must have, by canonical name.
pub const REQUIRED: [&str; 7] = [SYMBOL, DATE, "open", "high", "low", "close", "volume"];
/// Canonical columns that are mapped when present.
pub const OPTIONAL: [&str; 1] = ["amount"];

/// `--column canonical=source` mappings plus `--exclude` names.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    renames: Vec<(String, String)>,
    pub exclude: Vec<String>,
}

impl ColumnMap {
    pub fn new(mappings: &[String], exclude: Vec<String>) -> Result<Self, PreheatError> {
        let mut renames = Vec::new();
        for m in mappings {
            let (canonical, source) = m.split_once('=').ok_or_else(|| {
                PreheatError::Usage(format!("--column '{m}': expected CANONICAL=SOURCE"))
            })?;
            let canonical = canonical.trim();
            if !REQUIRED.contains(&canonical) && !OPTIONAL.contains(&canonical) {
                return Err(PreheatError::Usage(format!(
                    "--column '{m}': '{canonical}' is not a kline column (one of {})",
                    REQUIRED
                        .iter()
                        .chain(&OPTIONAL)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            renames.push((canonical.to_owned(), source.trim().to_owned()));
        }
        Ok(Self { renames, exclude })
    }

    /// The source column for a canonical name.
    pub fn source_of<'a>(&'a self, canonical: &'a str) -> &'a str {
        self.renames
            .iter()
            .rev()
            .find(|(c, _)| c == canonical)
            .map_or(canonical, |(_, s)| s.as_str())
    }

    /// The mapping as recorded in the cache's manifest.
    pub fn describe(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = REQUIRED
            .iter()
            .chain(&OPTIONAL)
            .map(|c| ((*c).to_owned(), self.source_of(c).into()))
            .collect();
        serde_json::json!({ "columns": map, "exclude": self.exclude })
    }
}

/// One column of the cache and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    /// Name in the source table or dump.
    pub source: String,
    /// Name in the cache.
    pub name: String,
    pub ty: ColumnType,
}

/// The cache's columns, in source order, with the symbol and date located.
#[derive(Debug, Clone)]
pub struct KlineSchema {
    pub columns: Vec<SourceColumn>,
    pub symbol: usize,
    pub date: usize,
    arrow: SchemaRef,
}

impl KlineSchema {
    /// Build from the source's columns (name, type or why it has none).
    /// `what` names the source in messages ("table test.kline", "dump.csv").
    pub fn resolve(
        what: &str,
        described: Vec<(String, Result<ColumnType, String>)>,
        map: &ColumnMap,
    ) -> Result<Self, PreheatError> {
        let names: Vec<&str> = described.iter().map(|(n, _)| n.as_str()).collect();
        let mut columns = Vec::new();
        let canonical_of = |source: &str| {
            REQUIRED
                .iter()
                .chain(&OPTIONAL)
                .find(|c| map.source_of(c) == source)
                .copied()
        };
        for wanted in REQUIRED {
            let source = map.source_of(wanted);
            if !names.contains(&source) {
                return Err(PreheatError::Source(format!(
                    "{what} has no column '{source}' (the {wanted} column{}); it has: {}",
                    if source == wanted {
                        format!(", map another with --column {wanted}=NAME")
                    } else {
                        String::new()
                    },
                    names.join(", ")
                )));
            }
        }
        for excluded in &map.exclude {
            if !names.contains(&excluded.as_str()) {
                return Err(PreheatError::Usage(format!(
                    "--exclude {excluded}: {what} has no such column"
                )));
            }
            if let Some(c) = canonical_of(excluded) {
                if REQUIRED.contains(&c) {
                    return Err(PreheatError::Usage(format!(
                        "--exclude {excluded}: the {c} column cannot be excluded"
                    )));
                }
            }
        }
        for (source, ty) in described {
            if map.exclude.contains(&source) {
                continue;
            }
            let name = canonical_of(&source).unwrap_or(&source).to_owned();
            let ty = ty.map_err(|why| {
                PreheatError::Source(format!(
                    "{what}: column '{source}' {why}; leave it out with --exclude {source}"
                ))
            })?;
            if columns.iter().any(|c: &SourceColumn| c.name == name) {
                return Err(PreheatError::Source(format!(
                    "{what}: two columns would be called '{name}' in the cache; \
                     leave one out with --exclude"
                )));
            }
            columns.push(SourceColumn { source, name, ty });
        }
        let position = |n: &str| columns.iter().position(|c| c.name == n).expect("required");
        let (symbol, date) = (position(SYMBOL), position(DATE));
        if !columns[date].ty.is_temporal() {
            return Err(PreheatError::Source(format!(
                "{what}: the date column '{}' is {}, not a DATE or DATETIME",
                columns[date].source, columns[date].ty
            )));
        }
        // Symbols are text in the cache even where the table stores numbers:
        // `000001` must keep its zeros and name its file.
        columns[symbol].ty = ColumnType::Utf8;
        let arrow = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(&c.name, c.ty.arrow(), i != symbol && i != date))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            columns,
            symbol,
            date,
            arrow,
        })
    }

    pub fn arrow(&self) -> SchemaRef {
        self.arrow.clone()
    }

    pub fn date_type(&self) -> ColumnType {
        self.columns[self.date].ty
    }

    /// The columns as the keyed-dataset manifest lists them.
    pub fn manifest_columns(&self) -> Vec<kiln_contracts::manifest::Column> {
        self.columns
            .iter()
            .map(|c| kiln_contracts::manifest::Column {
                name: c.name.clone(),
                column_type: c.ty,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(names: &[&str]) -> Vec<(String, Result<ColumnType, String>)> {
        names
            .iter()
            .map(|n| {
                let ty = match *n {
                    "symbol" | "code" => ColumnType::Utf8,
                    "trade_date" | "day" => ColumnType::Date32,
                    "volume" => ColumnType::Int64,
                    _ => ColumnType::Float64,
                };
                ((*n).to_owned(), Ok(ty))
            })
            .collect()
    }

    #[test]
    fn mapped_columns_get_canonical_names_and_extras_pass_through() {
        let map = ColumnMap::new(&["symbol=code".into(), "trade_date=day".into()], vec![]).unwrap();
        let cols = described(&[
            "code", "day", "open", "high", "low", "close", "volume", "vwap",
        ]);
        let schema = KlineSchema::resolve("t", cols, &map).unwrap();
        let names: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "symbol",
                "trade_date",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "vwap"
            ]
        );
        assert_eq!(schema.columns[0].source, "code");
    }

    #[test]
    fn missing_and_clashing_columns_are_named() {
        let map = ColumnMap::default();
        let err = KlineSchema::resolve("table test.k", described(&["symbol", "trade_date"]), &map)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column 'open'"), "{err}");
        let map = ColumnMap::new(&["close=adj_close".into()], vec![]).unwrap();
        let cols = described(&[
            "symbol",
            "trade_date",
            "open",
            "high",
            "low",
            "close",
            "adj_close",
            "volume",
        ]);
        let err = KlineSchema::resolve("t", cols, &map)
            .unwrap_err()
            .to_string();
        assert!(err.contains("two columns would be called 'close'"), "{err}");
        assert!(ColumnMap::new(&["price=x".into()], vec![]).is_err());
    }
}
