//! Bad manifests: each problem is reported as FILE:LINE:COL before any stage
//! runs (exit status 2), and nothing is run or written.

mod common;

use common::*;

/// Runs `validate` and `run` on `text`; both must fail with status 2 and
/// the same message, and the `marker` stage must not have run.
fn rejected(text: &str) -> String {
    let p = Project::new();
    p.manifest(text);
    let out = p.cmd(&["validate", "p.yaml"]).output().unwrap();
    let validate = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "validate accepted it: {validate}"
    );
    let out = p.cmd(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "run accepted it: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), validate);
    assert!(!p.path("ran").exists(), "a stage ran");
    assert!(!p.path(".kiln").exists(), "state was written");
    validate
}

const MARK: &str = "  marker:\n    cmd: [touch, ran]\n    outs: [ran]\n";

#[test]
fn unknown_key() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: [\"true\"]\n    dpes: [x]\n"
    ));
    assert!(
        e.starts_with("kiln-pipeline: p.yaml:8:5: stages.a: unknown field `dpes`"),
        "{e}"
    );
}

#[test]
fn undefined_variable() {
    let e = rejected(&format!(
        "name: t\nvars:\n  DATA: ${{KILN_TEST_NOT_SET_ANYWHERE}}/x\nstages:\n{MARK}"
    ));
    assert!(
        e.contains("p.yaml:3:3: undefined variable 'KILN_TEST_NOT_SET_ANYWHERE'"),
        "{e}"
    );
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: cp ${{NOPE_X}} y\n"
    ));
    assert!(e.contains("p.yaml:7:5: undefined variable 'NOPE_X'"), "{e}");
}

#[test]
fn cycle() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: [\"true\"]\n    deps: [b.out]\n    outs: [a.out]\n  b:\n    cmd: [\"true\"]\n    deps: [a.out]\n    outs: [b.out]\n"
    ));
    assert!(e.contains("p.yaml:6:3: cycle: a → b → a"), "{e}");
}

#[test]
fn two_stages_writing_one_out() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: [\"true\"]\n    outs: [data/split]\n  b:\n    cmd: [\"true\"]\n    outs:\n      - data/split/extra.parquet\n"
    ));
    assert!(
        e.contains("p.yaml:11:5: stages 'a' and 'b' both write 'data/split'"),
        "{e}"
    );
}

#[test]
fn missing_executable() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: kiln-no-such-stage --x\n  b:\n    cmd: [./bin/tool]\n"
    ));
    assert!(
        e.contains("p.yaml:7:5: stage 'a': program 'kiln-no-such-stage' not found beside kiln-pipeline or on PATH"),
        "{e}"
    );
    assert!(
        e.contains("p.yaml:9:5: stage 'b': program './bin/tool' does not exist"),
        "{e}"
    );
}

#[test]
fn duplicate_key() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: x\n  a:\n    cmd: y\n"
    ));
    assert!(e.contains("p.yaml:8:3: duplicate key 'stages.a'"), "{e}");
}

#[test]
fn bad_values() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: [\"true\"]\n    memory_limit: lots\n    timeout: soon\n"
    ));
    assert!(e.contains("p.yaml:8:5: memory_limit 'lots'"), "{e}");
    assert!(e.contains("p.yaml:9:5: timeout 'soon'"), "{e}");
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: \"cp 'x y\"\n"
    ));
    assert!(
        e.contains("p.yaml:7:5: unbalanced quotes in the command"),
        "{e}"
    );
}

#[test]
fn a_source_nobody_writes() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: [cp, in.csv, out.csv]\n    deps:\n      - in.csv\n    outs: [out.csv]\n"
    ));
    assert!(
        e.contains("p.yaml:9:9: stage 'a': dep 'in.csv' does not exist and no stage writes it"),
        "{e}"
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let e = rejected(&format!(
        "name: t\nstages:\n{MARK}  a:\n    cmd: kiln-no-such-stage\n    memory_limit: 0\n  b:\n    cmd: ${{NOPE_Y}}\n"
    ));
    assert_eq!(e.lines().count(), 3, "{e}");
}

#[test]
fn shipped_manifests_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    stage_binaries();
    for name in ["demo.yaml", "hydro.yaml", "nightly.yaml"] {
        let mut cmd = assert_cmd::Command::cargo_bin("kiln-pipeline").unwrap();
        // graph checks the manifest, programs and graph, not the sources
        // (hydro's input is the user's).
        let out = cmd
            .args(["graph", root.join(name).to_str().unwrap()])
            .env("KILN_MYSQL_URL", "mysql://reader@127.0.0.1/test")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
}
