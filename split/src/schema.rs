//! Which column is the key, which the date, and what type every other column
//! gets: inferred from a sample of the input, overridable per column.

use std::collections::HashMap;

use kiln_contracts::dates::{self, Temporal};
use kiln_contracts::ColumnType;

/// Tokens read as a missing value (pandas' defaults, minus the exotic ones).
pub fn is_null_token(field: &[u8]) -> bool {
    matches!(
        field,
        b"" | b"NA"
            | b"N/A"
            | b"n/a"
            | b"NaN"
            | b"nan"
            | b"-NaN"
            | b"-nan"
            | b"NULL"
            | b"null"
            | b"None"
            | b"#N/A"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Key,
    Date,
    Value,
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ColumnType,
    pub role: Role,
    /// Whether the type came from inference (so an error can suggest `--type`).
    pub inferred: bool,
}

/// The input's columns with their roles and output types.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub columns: Vec<ColumnPlan>,
    pub key_idx: usize,
    pub date_idx: usize,
    /// Indices (into `columns`) of the value columns, in input order.
    pub value_idx: Vec<usize>,
    /// How many rows the inference looked at.
    pub sample_rows: usize,
}

impl TablePlan {
    pub fn date_type(&self) -> ColumnType {
        self.columns[self.date_idx].ty
    }

    pub fn key_name(&self) -> &str {
        &self.columns[self.key_idx].name
    }

    pub fn date_name(&self) -> &str {
        &self.columns[self.date_idx].name
    }

    pub fn value_types(&self) -> Vec<ColumnType> {
        self.value_idx.iter().map(|&i| self.columns[i].ty).collect()
    }
}

/// What the user asked for about types.
#[derive(Debug, Clone, Default)]
pub struct TypeOptions {
    pub key: String,
    pub date: String,
    /// Store inferred float columns as float32.
    pub float32: bool,
    /// Per-column types (`--type col=float32`).
    pub overrides: HashMap<String, ColumnType>,
}

/// Parse `--type` values: `col=type[,col=type…]`.
pub fn parse_type_overrides(specs: &[String]) -> Result<HashMap<String, ColumnType>, String> {
    let mut out = HashMap::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let (col, ty) = spec
            .split_once('=')
            .ok_or_else(|| format!("--type '{spec}': expected COLUMN=TYPE"))?;
        let parsed = ColumnType::parse(ty.trim()).ok_or_else(|| {
            format!(
                "--type '{spec}': unknown type '{ty}' (use float64, float32, int64, date, timestamp or string)"
            )
        })?;
        out.insert(col.trim().to_owned(), parsed);
    }
    Ok(out)
}

/// Running evidence about one column while sampling.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    non_null: usize,
    numbers: usize,
    dates: usize,
    datetimes: usize,
}

impl Evidence {
    fn new() -> Self {
        Self {
            non_null: 0,
            numbers: 0,
            dates: 0,
            datetimes: 0,
        }
    }

    fn see(&mut self, field: &[u8]) {
        let field = field.trim_ascii();
        if is_null_token(field) {
            return;
        }
        self.non_null += 1;
        if fast_float2::parse::<f64, _>(field).is_ok() {
            self.numbers += 1;
        } else {
            match dates::classify(field) {
                Some(Temporal::Date) => self.dates += 1,
                Some(Temporal::DateTime) => self.datetimes += 1,
                None => {}
            }
        }
    }

    fn verdict(&self, float: ColumnType) -> ColumnType {
        if self.non_null == 0 || self.numbers == self.non_null {
            // A column empty in the whole sample is a sparse measurement far
            // more often than anything else.
            float
        } else if self.dates == self.non_null {
            ColumnType::Date32
        } else if self.dates + self.datetimes == self.non_null {
            ColumnType::TimestampUs
        } else {
            ColumnType::Utf8
        }
    }
}

/// Find the key and date columns in `header`, with a message naming what is there.
fn locate(header: &[String], name: &str, what: &str) -> Result<usize, String> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        let near = header
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
            .map(|h| format!(" (did you mean '{h}'? names are case-sensitive)"))
            .unwrap_or_default();
        format!(
            "no {what} column '{name}'{near}; columns are: {}",
            header.join(", ")
        )
    })
}

/// Build the plan for a CSV input from its header and sampled records.
pub fn infer_csv<'a>(
    header: &[String],
    sample: impl Iterator<Item = &'a csv::ByteRecord>,
    opts: &TypeOptions,
) -> Result<TablePlan, String> {
    let mut evidence = vec![Evidence::new(); header.len()];
    let mut sample_rows = 0;
    for record in sample {
        sample_rows += 1;
        for (e, field) in evidence.iter_mut().zip(record.iter()) {
            e.see(field);
        }
    }
    let float = if opts.float32 {
        ColumnType::Float32
    } else {
        ColumnType::Float64
    };
    let inferred: Vec<ColumnType> = evidence.iter().map(|e| e.verdict(float)).collect();
    plan(header, inferred, sample_rows, opts)
}

/// Build the plan from column names and their natural types (inferred from a
/// CSV sample, or read from a parquet schema), applying the user's options.
pub fn plan(
    header: &[String],
    natural: Vec<ColumnType>,
    sample_rows: usize,
    opts: &TypeOptions,
) -> Result<TablePlan, String> {
    let mut seen = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(prev) = seen.insert(h.as_str(), i) {
            return Err(format!(
                "column name '{h}' appears twice (fields {} and {})",
                prev + 1,
                i + 1
            ));
        }
    }
    for col in opts.overrides.keys() {
        if !seen.contains_key(col.as_str()) {
            return Err(format!(
                "--type names column '{col}', which the input does not have; columns are: {}",
                header.join(", ")
            ));
        }
    }
    let key_idx = locate(header, &opts.key, "key")?;
    let date_idx = locate(header, &opts.date, "date")?;
    if key_idx == date_idx {
        return Err("the key and date columns must differ".into());
    }
    let mut columns = Vec::with_capacity(header.len());
    let mut value_idx = Vec::new();
    for (i, (name, natural)) in header.iter().zip(natural).enumerate() {
        let over = opts.overrides.get(name).copied();
        let (role, ty, inferred) = if i == key_idx {
            // Keys are kept exactly as written: 01022500 stays 01022500.
            if over.is_some_and(|t| t != ColumnType::Utf8) {
                return Err(format!(
                    "the key column '{name}' is always stored as string (keys are kept exactly as written)"
                ));
            }
            (Role::Key, ColumnType::Utf8, false)
        } else if i == date_idx {
            let ty = match over {
                Some(t) if t.is_temporal() => t,
                Some(t) => {
                    return Err(format!(
                        "the date column '{name}' must be date or timestamp, not {t}"
                    ))
                }
                None if natural == ColumnType::TimestampUs => ColumnType::TimestampUs,
                None => ColumnType::Date32,
            };
            (Role::Date, ty, over.is_none())
        } else {
            value_idx.push(i);
            let natural = if opts.float32 && natural == ColumnType::Float64 {
                ColumnType::Float32
            } else {
                natural
            };
            (Role::Value, over.unwrap_or(natural), over.is_none())
        };
        columns.push(ColumnPlan {
            name: name.clone(),
            ty,
            role,
            inferred,
        });
    }
    Ok(TablePlan {
        columns,
        key_idx,
        date_idx,
        value_idx,
        sample_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    fn opts() -> TypeOptions {
        TypeOptions {
            key: "id".into(),
            date: "d".into(),
            ..Default::default()
        }
    }

    #[test]
    fn infers_types_from_sample() {
        let header: Vec<String> = ["id", "d", "x", "empty", "when", "name", "stamp"]
            .map(String::from)
            .into();
        let rows = [
            rec(&[
                "01",
                "2020-01-01",
                "1",
                "",
                "2020-02-01",
                "a",
                "2020-01-01 10:00:00",
            ]),
            rec(&[
                "02",
                "2020-01-02",
                "2.5e3",
                "NA",
                "2020-02-02",
                "7",
                "2020-01-01",
            ]),
        ];
        let p = infer_csv(&header, rows.iter(), &opts()).unwrap();
        let types: Vec<_> = p.columns.iter().map(|c| c.ty).collect();
        use ColumnType::*;
        assert_eq!(
            types,
            [Utf8, Date32, Float64, Float64, Date32, Utf8, TimestampUs]
        );
        assert_eq!(p.value_idx, [2, 3, 4, 5, 6]);
    }

    #[test]
    fn overrides_and_float32() {
        let header: Vec<String> = ["id", "d", "x", "y"].map(String::from).into();
        let mut o = opts();
        o.float32 = true;
        o.overrides = parse_type_overrides(&["y=int64".into()]).unwrap();
        let p = infer_csv(&header, [rec(&["1", "2020-01-01", "1.5", "2"])].iter(), &o).unwrap();
        assert_eq!(p.columns[2].ty, ColumnType::Float32);
        assert_eq!(p.columns[3].ty, ColumnType::Int64);
    }

    #[test]
    fn clear_errors() {
        let header: Vec<String> = ["ID", "d", "d"].map(String::from).into();
        let e = plan(&header, vec![ColumnType::Utf8; 3], 0, &opts()).unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
        let header: Vec<String> = ["ID", "d"].map(String::from).into();
        let e = plan(&header, vec![ColumnType::Utf8; 2], 0, &opts()).unwrap_err();
        assert!(e.contains("did you mean 'ID'"), "{e}");
        assert!(parse_type_overrides(&["x=complex".into()]).is_err());
        assert!(parse_type_overrides(&["x".into()]).is_err());
    }
}
