//! One symbol's output rows: the source columns passed through and the
//! spec's features, computed in full or — when the klines only gained rows —
//! from the saved indicator states onward.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, Float64Array, RecordBatch};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::indicators::{kernels, Kernel};
use crate::source::SymbolKlines;
use crate::spec::Spec;

/// Indicator states after a file's last row, stored in its footer
/// (`kiln.featurize.state`). Floats as their IEEE bits in hex, so a resumed
/// recurrence continues from exactly the value it stopped at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub rows: u64,
    pub kernels: Vec<Vec<String>>,
}

impl SavedState {
    fn of(kernels: &[Kernel], rows: usize) -> Self {
        Self {
            rows: rows as u64,
            kernels: kernels
                .iter()
                .map(|k| {
                    k.state()
                        .iter()
                        .map(|v| format!("{:016x}", v.to_bits()))
                        .collect()
                })
                .collect(),
        }
    }

    fn values(&self) -> Option<Vec<Vec<f64>>> {
        self.kernels
            .iter()
            .map(|k| {
                k.iter()
                    .map(|h| u64::from_str_radix(h, 16).ok().map(f64::from_bits))
                    .collect()
            })
            .collect()
    }
}

/// What an incremental computation continues from: the cached file's
/// feature columns and the states saved after its last row.
pub struct Resume {
    pub features: RecordBatch,
    pub state: SavedState,
}

pub struct Computed {
    pub batch: RecordBatch,
    pub state: SavedState,
}

/// The output schema: the source's columns, then one float64 per feature.
pub fn output_schema(source: &Schema, spec: &Spec) -> SchemaRef {
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        spec.columns()
            .into_iter()
            .map(|c| Field::new(c, DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

/// NaN marks "no value" while computing; in the file it is a null.
fn to_array(values: Vec<f64>) -> ArrayRef {
    // Almost always the NaNs are the warm-up rows, all at the start: then
    // the validity is two runs, set without testing each row's bit.
    let len = values.len();
    let first = values.iter().position(|v| !v.is_nan()).unwrap_or(len);
    // A fold without an early exit, which the compiler vectorizes.
    let nan_after = values[first..]
        .iter()
        .fold(false, |nan, v| nan | v.is_nan());
    let valid = if nan_after {
        BooleanBuffer::collect_bool(len, |i| !values[i].is_nan())
    } else {
        let mut bits = BooleanBufferBuilder::new(len);
        bits.append_n(first, false);
        bits.append_n(len - first, true);
        bits.finish()
    };
    let valid = NullBuffer::new(valid);
    let nulls = (valid.null_count() > 0).then_some(valid);
    Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
}

/// Compute `k`'s features. With `resume`, rows the cached file already has
/// are taken from it and the kernels continue from its saved states; `None`
/// is returned when the saved states do not fit this spec (compute in full).
pub fn compute(
    spec: &Spec,
    schema: &SchemaRef,
    k: &SymbolKlines,
    resume: Option<&Resume>,
) -> Option<Computed> {
    let len = k.rows();
    let x = k.klines();
    let mut kernels = kernels(&spec.features);
    let names = spec.columns();
    let saved = match resume {
        Some(r) => {
            let values = r.state.values()?;
            if values.len() != kernels.len() || r.features.num_rows() != r.state.rows as usize {
                return None;
            }
            Some((r, values))
        }
        None => None,
    };
    let mut columns: Vec<ArrayRef> = k.batch.columns().to_vec();
    let mut name_at = 0;
    for (i, kernel) in kernels.iter_mut().enumerate() {
        let width = kernel.width();
        let mut out = vec![vec![f64::NAN; len]; width];
        let mut from = 0;
        if let Some((r, values)) = &saved {
            if !kernel.restore(&values[i]) {
                return None;
            }
            let old_rows = r.features.num_rows().min(len);
            from = old_rows - kernel.lookahead().min(old_rows);
            for (c, col) in out.iter_mut().enumerate() {
                let old = r.features.column_by_name(&names[name_at + c])?;
                let old = old.as_primitive_opt::<Float64Type>()?;
                for (t, slot) in col.iter_mut().enumerate().take(from) {
                    if old.is_valid(t) {
                        *slot = old.value(t);
                    }
                }
            }
        }
        kernel.run(&x, from, &mut out);
        columns.extend(out.into_iter().map(to_array));
        name_at += width;
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).ok()?;
    Some(Computed {
        batch,
        state: SavedState::of(&kernels, len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_exactly_the_nan_rows() {
        let nan = f64::NAN;
        for values in [
            vec![1.0, 2.0, 3.0],
            vec![nan, nan, 3.0, 4.0],
            vec![nan, nan, nan],
            vec![nan, 2.0, nan, 4.0, nan],
            vec![1.0, nan, 3.0],
            vec![],
        ] {
            let array = to_array(values.clone());
            let array = array.as_primitive::<Float64Type>();
            let nulls: Vec<bool> = (0..array.len()).map(|i| array.is_null(i)).collect();
            let nans: Vec<bool> = values.iter().map(|v| v.is_nan()).collect();
            assert_eq!(nulls, nans, "{values:?}");
            assert_eq!(array.nulls().is_some(), nans.contains(&true));
        }
    }
}
