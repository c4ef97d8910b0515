//! Bad input: one clear line naming file, line and column; a non-zero exit;
//! and no output directory (nor any staging leftover) afterwards.

mod common;

use std::path::Path;

use common::*;
use kiln_contracts::KeyedDataset;

/// Run on `text` and return (exit code, stderr); assert nothing was written.
fn fails(text: &[u8], args: &[&str]) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    std::fs::write(&input, text).unwrap();
    let out = tmp.path().join("out");
    let output = kiln_split()
        .arg(&input)
        .args(["--key", "id", "--date", "date", "--out"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(!out.exists(), "no output dir after a failure");
    assert_eq!(listing(tmp.path()), ["in.csv"], "no staging leftovers");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {stderr}");
    (output.status.code().unwrap(), stderr)
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for p in parts {
        assert!(stderr.contains(p), "expected {p:?} in: {stderr}");
    }
}

const GOOD: &str = "id,date,x,y\na,2020-01-01,1,2\nb,2020-01-01,3,4\n";

#[test]
fn missing_key_or_date_column() {
    let (code, e) = fails(GOOD.as_bytes(), &["--key", "ID"]);
    assert_eq!(code, 2, "clap rejects the repeated --key: {e}");
    let tmp = tempfile::tempdir().unwrap();
    let input = write(&tmp.path().join("in.csv"), GOOD);
    for (key, date, want) in [
        ("ID", "date", "no key column 'ID'"),
        ("id", "day", "no date column 'day'"),
    ] {
        let a = kiln_split()
            .arg(&input)
            .args(["--key", key, "--date", date, "--out"])
            .arg(tmp.path().join("o"))
            .assert()
            .code(3);
        let e = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert_mentions(&e, &["in.csv", want, "columns are: id, date, x, y"]);
        assert!(!tmp.path().join("o").exists());
    }
}

#[test]
fn ragged_row() {
    let (code, e) = fails(b"id,date,x,y\na,2020-01-01,1,2\nb,2020-01-01,3\n", &[]);
    assert_eq!(code, 3);
    assert_mentions(&e, &["in.csv:3:", "expected 4 fields, found 3"]);
}

#[test]
fn unparsable_number_names_line_and_column() {
    let (code, e) = fails(
        b"id,date,x,y\na,2020-01-01,1,2\nb,2020-01-01,3,oops\n",
        &["--type", "y=float64"],
    );
    assert_eq!(code, 3);
    assert_mentions(
        &e,
        &[
            "in.csv:3:",
            "column 'y' (field 4)",
            "\"oops\" is not a float64",
        ],
    );
}

#[test]
fn value_beyond_the_inference_sample_suggests_an_override() {
    // 150,000 numeric rows (more than the sample), then text.
    let mut text = String::from("id,date,x,y\n");
    for i in 0..150_000 {
        text.push_str(&format!(
            "k{},{},1.5,2\n",
            i % 100,
            20_000_101 + i / 100 % 28
        ));
    }
    text.push_str("k9,2020-02-01,1.5,oops\n");
    let (code, e) = fails(
        text.as_bytes(),
        &["--duplicates", "keep-last", "--type", "date=date"],
    );
    assert_eq!(code, 3);
    assert_mentions(
        &e,
        &[
            "in.csv:150002:",
            "column 'y' (field 4)",
            "\"oops\" is not a float64",
            "inferred from the first",
            "--type y=string",
        ],
    );
}

#[test]
fn unparsable_date() {
    let (code, e) = fails(b"id,date,x\na,2020-01-01,1\na,2020-13-45,2\n", &[]);
    assert_eq!(code, 3);
    assert_mentions(
        &e,
        &[
            "in.csv:3:",
            "column 'date' (field 2)",
            "\"2020-13-45\" is not a date",
        ],
    );
    let (_, e) = fails(b"id,date,x\na,,1\n", &[]);
    assert_mentions(&e, &["in.csv:2:", "empty date"]);
}

#[test]
fn empty_file_and_header_only() {
    let (code, e) = fails(b"", &[]);
    assert_eq!(code, 3);
    assert_mentions(&e, &["in.csv", "empty input"]);
    let (code, e) = fails(b"id,date,x\n", &[]);
    assert_eq!(code, 3);
    assert_mentions(&e, &["in.csv", "no data rows after the header"]);
}

#[test]
fn non_utf8() {
    let (code, e) = fails(b"id,date,x\na,2020-01-01,1\n\xff\xfe,2020-01-02,2\n", &[]);
    assert_eq!(code, 3);
    assert_mentions(
        &e,
        &["in.csv:3:", "column 'id' (field 1)", "not valid UTF-8"],
    );
    let (_, e) = fails(
        b"id,date,x\na,2020-01-01,1\na,2020-01-02,\xe9t\xe9\n",
        &["--type", "x=string"],
    );
    assert_mentions(
        &e,
        &["in.csv:3:", "column 'x' (field 3)", "not valid UTF-8"],
    );
    let (_, e) = fails(b"id,date,\xffx\na,2020-01-01,1\n", &[]);
    assert_mentions(&e, &["in.csv:1:", "header field 3 is not valid UTF-8"]);
}

#[test]
fn empty_and_unsafe_keys_when_asked_to_refuse_them() {
    let (_, e) = fails(b"id,date,x\na,2020-01-01,1\n,2020-01-01,2\n", &[]);
    assert_mentions(&e, &["in.csv:3:", "column 'id' (field 1)", "empty key"]);
    let (code, e) = fails(
        b"id,date,x\na,2020-01-01,1\n../etc,2020-01-01,2\n",
        &["--unsafe-keys", "error"],
    );
    assert_eq!(code, 3);
    assert_mentions(&e, &["in.csv:3:", "\"../etc\" is not a safe file name"]);
}

#[test]
fn duplicate_header_and_bad_type_override() {
    let (_, e) = fails(b"id,date,x,x\na,2020-01-01,1,2\n", &[]);
    assert_mentions(&e, &["column name 'x' appears twice"]);
    let (code, e) = fails(GOOD.as_bytes(), &["--type", "x=complex"]);
    assert_eq!(code, 2);
    assert_mentions(&e, &["unknown type 'complex'"]);
    let (_, e) = fails(GOOD.as_bytes(), &["--type", "nope=float32"]);
    assert_mentions(&e, &["--type names column 'nope'"]);
}

#[test]
fn unbalanced_quote() {
    let (code, e) = fails(b"id,date,x\na,2020-01-01,\"1\nb,2020-01-02,2\n", &[]);
    assert_eq!(code, 3);
    assert_mentions(&e, &["in.csv:2:", "quoted field never closed"]);
}

#[test]
fn bad_rows_skip_writes_rejects_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        &tmp.path().join("in.csv"),
        "id,date,x\na,2020-01-01,1\nb,2020-01-01,zz\nc,2020-01-01\na,2020-01-02,2\n,2020-01-03,3\n",
    );
    let out = tmp.path().join("out");
    let a = kiln_split()
        .arg(&input)
        .args([
            "--key",
            "id",
            "--date",
            "date",
            "--bad-rows",
            "skip",
            "--type",
            "x=float64",
            "--json",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let s: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(s["rows"], 2);
    assert_eq!(s["rejected_rows"], 3);
    let rejects = std::fs::read_to_string(out.join("_rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "line,column,error,record");
    assert!(
        lines[1].starts_with("3,3,") && lines[1].contains("zz"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("4,,") && lines[2].contains("expected 3 fields"),
        "{rejects}"
    );
    assert!(
        lines[3].starts_with("6,1,") && lines[3].contains("empty key"),
        "{rejects}"
    );
    let ds = KeyedDataset::open(&out).unwrap();
    assert_eq!(ds.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn existing_output_needs_force_and_force_only_replaces_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(&tmp.path().join("in.csv"), GOOD);
    let out = tmp.path().join("out");
    let split = |extra: &[&str]| {
        kiln_split()
            .arg(&input)
            .args(["--key", "id", "--date", "date", "--out"])
            .arg(&out)
            .args(extra)
            .assert()
    };
    split(&[]).success();
    let e = split(&[]).code(4).get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&e).contains("pass --force"));
    write(&input, "id,date,x,y\nz,2020-01-01,1,2\n");
    split(&["--force"]).success();
    assert_eq!(
        KeyedDataset::open(&out).unwrap().keys().collect::<Vec<_>>(),
        ["z"]
    );

    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    write(&precious.join("thesis.tex"), "x");
    let a = kiln_split()
        .arg(&input)
        .args(["--key", "id", "--date", "date", "--force", "--out"])
        .arg(&precious)
        .assert()
        .code(4);
    assert!(String::from_utf8_lossy(&a.get_output().stderr).contains("not a Kiln dataset"));
    assert!(Path::new(&precious.join("thesis.tex")).exists());
}

#[test]
fn bad_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(&tmp.path().join("in.csv"), GOOD);
    for args in [
        vec!["--memory", "lots"],
        vec!["--memory", "1MiB"],
        vec!["--delimiter", ";;"],
        vec!["--start", "yesterday"],
        vec!["--compression", "rar"],
    ] {
        kiln_split()
            .arg(&input)
            .args(["--key", "id", "--date", "date", "--out"])
            .arg(tmp.path().join("o"))
            .args(&args)
            .assert()
            .code(2);
    }
    kiln_split()
        .arg(tmp.path().join("missing.csv"))
        .args(["--key", "id", "--date", "date", "--out", "o"])
        .assert()
        .code(1);
}
