//! The data path against an independent computation: every window the loader
//! yields, its scaled values, the scaler and the skip counts are recomputed
//! here the obvious way from the generated rows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kiln_testkit::dataset::write_dataset;
use kiln_testkit::KeyedSpec;
use kiln_train_data::config::{GapPolicy, TrainConfig};
use kiln_train_data::loader::{Item, Loader, LoaderOptions};
use kiln_train_data::plan::{self, TRAIN};

const WINDOW: usize = 5;

fn spec() -> KeyedSpec {
    KeyedSpec {
        keys: 12,
        days: 80,
        features: 3,
        targets: 1,
        target_density: 0.6,
        ..KeyedSpec::default()
    }
}

/// Generated rows with holes: whole days dropped (date gaps) and input
/// values blanked (missing inputs), different per key.
fn series_with_holes() -> Vec<(String, Vec<(i32, kiln_testkit::keyed::Row)>)> {
    let mut series = spec().series();
    for (k, (_, rows)) in series.iter_mut().enumerate() {
        rows.retain(|(d, _)| (d + k as i32) % 17 != 0);
        for (i, (_, r)) in rows.iter_mut().enumerate() {
            if (i * 7 + k) % 23 == 0 {
                r.features[i % 3] = f64::NAN;
            }
        }
    }
    // A key shorter than the window: contributes nothing, crosses nothing.
    series[3].1.truncate(WINDOW - 1);
    series
}

fn config() -> TrainConfig {
    TrainConfig {
        features: vec!["feat_01".into(), "feat_02".into(), "feat_03".into()],
        targets: vec!["target_1".into()],
        window: WINDOW,
        batch_size: 7,
        keys_per_load: 5,
        max_step: Some(1),
        input_gaps: GapPolicy::Skip,
        split: "time:0.6,0.2,0.2".parse().unwrap(),
        ..TrainConfig::default()
    }
}

#[test]
fn windows_scaler_and_skips_equal_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let series = series_with_holes();
    write_dataset(dir.path(), &spec(), &series).unwrap();
    let cfg = config();
    let plan = Arc::new(plan::open_plan(dir.path(), &cfg).unwrap());
    let rules = plan::rules(&cfg, true);
    let fitted = plan::fit(&plan, &rules, 2).unwrap();

    // Scaler: two-pass mean / population std over each key's first 60 % rows.
    let train_rows = |n: usize| (0.6 * n as f64).round() as usize;
    for (j, scale) in fitted.scaler.features.iter().enumerate() {
        let vals: Vec<f64> = series
            .iter()
            .flat_map(|(_, rows)| {
                rows[..train_rows(rows.len())]
                    .iter()
                    .map(move |(_, r)| r.features[j])
            })
            .filter(|v| !v.is_nan())
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        assert!(
            (scale.mean - mean).abs() < 1e-9 * mean.abs().max(1.0),
            "mean {j}"
        );
        assert!((scale.std - std).abs() < 1e-9 * std, "std {j}");
        assert_eq!(scale.count, vals.len() as u64);
    }

    // Windows of the train part, the obvious way.
    let mut expected: BTreeMap<(String, i32), Vec<f64>> = BTreeMap::new();
    let (mut missing_target, mut missing_input, mut date_gap) = (0u64, 0u64, 0u64);
    for (key, rows) in &series {
        for e in WINDOW - 1..train_rows(rows.len()) {
            let w = &rows[e + 1 - WINDOW..=e];
            if w[WINDOW - 1].1.targets[0].is_none() {
                missing_target += 1;
            } else if w.iter().any(|(_, r)| r.features.iter().any(|v| v.is_nan())) {
                missing_input += 1;
            } else if w.windows(2).any(|p| p[1].0 - p[0].0 > 1) {
                date_gap += 1;
            } else {
                let x = w
                    .iter()
                    .flat_map(|(_, r)| {
                        r.features
                            .iter()
                            .zip(&fitted.scaler.features)
                            .map(|(v, s)| (v - s.mean) / s.std)
                    })
                    .collect();
                expected.insert((key.clone(), w[WINDOW - 1].0), x);
            }
        }
    }
    assert!(
        expected.len() > 100,
        "the fixture should leave plenty of windows"
    );
    assert_eq!(fitted.counts.windows[TRAIN], expected.len() as u64);
    let s = fitted.counts.skipped[TRAIN];
    assert_eq!(
        (s.missing_target, s.missing_input, s.date_gap),
        (missing_target, missing_input, date_gap)
    );
    assert!(missing_input > 0 && date_gap > 0 && missing_target > 0);

    // Stream them, shuffled, and check each arrives once with its values.
    let scaler = Arc::new(fitted.scaler.clone());
    let opts = LoaderOptions {
        part: Some(TRAIN),
        rules,
        keys_per_load: cfg.keys_per_load,
        batch_size: cfg.batch_size,
        shuffle_seed: Some(7),
        readers: 2,
        with_refs: true,
    };
    let mut loader = Loader::start(plan.clone(), scaler, opts, 1);
    let mut seen = HashSet::new();
    let f = cfg.features.len();
    loop {
        match loader.recv().unwrap().unwrap() {
            Item::Batch(mb) => {
                assert!(mb.size <= cfg.batch_size);
                for (w, r) in mb.refs.iter().enumerate() {
                    let key = plan.ds.entries()[r.entry as usize].key.clone();
                    let id = (key, r.date as i32);
                    let want = expected
                        .get(&id)
                        .unwrap_or_else(|| panic!("unexpected window {id:?}"));
                    let got = &mb.x[w * WINDOW * f..(w + 1) * WINDOW * f];
                    for (g, e) in got.iter().zip(want) {
                        assert!((f64::from(*g) - e).abs() < 1e-5, "{id:?}: {g} vs {e}");
                    }
                    assert!(seen.insert(id.clone()), "window {id:?} twice");
                    let observed = series
                        .iter()
                        .find(|(k, _)| *k == id.0)
                        .unwrap()
                        .1
                        .iter()
                        .find(|(d, _)| *d == id.1)
                        .unwrap()
                        .1
                        .targets[0];
                    assert_eq!(Some(mb.observed[w]), observed);
                }
            }
            Item::Done { skipped } => {
                assert_eq!(skipped, s);
                break;
            }
        }
    }
    assert_eq!(seen.len(), expected.len());
}

#[test]
fn shuffle_is_seeded_and_mixes_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &spec(), &spec().series()).unwrap();
    let cfg = config();
    let plan = Arc::new(plan::open_plan(dir.path(), &cfg).unwrap());
    let rules = plan::rules(&cfg, true);
    let scaler = Arc::new(plan::fit(&plan, &rules, 1).unwrap().scaler);
    let order = |seed: u64, epoch: u64| {
        let opts = LoaderOptions {
            part: Some(TRAIN),
            rules,
            keys_per_load: 6,
            batch_size: 16,
            shuffle_seed: Some(seed),
            readers: 2,
            with_refs: true,
        };
        let mut loader = Loader::start(plan.clone(), scaler.clone(), opts, epoch);
        let mut refs = Vec::new();
        while let Some(Ok(Item::Batch(mb))) = loader.recv() {
            refs.extend(mb.refs);
        }
        refs
    };
    let a = order(1, 1);
    assert_eq!(a, order(1, 1), "same seed and epoch, same order");
    assert_ne!(a, order(1, 2), "a new epoch reshuffles");
    assert_ne!(a, order(2, 1));
    let first_batch_keys: HashSet<u32> = a[..16].iter().map(|r| r.entry).collect();
    assert!(
        first_batch_keys.len() >= 4,
        "a minibatch mixes keys: {first_batch_keys:?}"
    );
}
