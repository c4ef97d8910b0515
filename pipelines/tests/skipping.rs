//! What runs and what is skipped: the second run skips everything, a touch
//! is not a change, changed bytes rerun that stage and its dependents only,
//! a changed command or param reruns, a deleted out reruns, --force reruns all.

mod common;

use common::*;

/// upper ← in.txt; count ← upper.txt; other ← other.txt. Each stage also
/// appends its name to ran.log (not an out), so runs can be counted.
const MANIFEST: &str = r#"
name: t
stages:
  upper:
    cmd: [sh, -c, "echo upper >> ran.log; tr a-z A-Z < in.txt > upper.txt"]
    deps: [in.txt]
    outs: [upper.txt]
  count:
    cmd: [sh, -c, "echo count >> ran.log; wc -c < upper.txt > count.txt"]
    deps: [upper.txt]
    outs: [count.txt]
  other:
    cmd: sh -c "echo other >> ran.log; cp other.txt other.out"
    params:
      level: 3
    deps: [other.txt]
    outs: [other.out]
"#;

fn project() -> Project {
    let p = Project::new();
    p.manifest(MANIFEST);
    p.write("in.txt", "hello\n");
    p.write("other.txt", "x\n");
    p
}

fn ran(p: &Project) -> Vec<String> {
    let log = p.read("ran.log");
    let _ = std::fs::remove_file(p.path("ran.log"));
    log.lines().map(String::from).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn second_run_skips_everything() {
    let p = project();
    let first = p.run_ok(&[]);
    assert!(statuses(&first).iter().all(|(_, s)| s == "ran"), "{first}");
    assert_eq!(ran(&p), ["upper", "count", "other"]);
    assert_eq!(p.read("upper.txt"), "HELLO\n");
    assert_eq!(p.read("count.txt").trim(), "6");

    p.settle();
    let second = p.run_ok(&[]);
    assert!(
        statuses(&second).iter().all(|(_, s)| s == "skipped"),
        "{second}"
    );
    assert!(ran(&p).is_empty());
    // Files fingerprinted less than a second after they were written are
    // read once more (a write in the same mtime tick would not show)...
    assert_eq!(second["fingerprints"]["files_hashed"], 6, "{second}");
    // ...and from then on nothing changed costs one stat per file.
    let third = p.run_ok(&[]);
    assert!(
        statuses(&third).iter().all(|(_, s)| s == "skipped"),
        "{third}"
    );
    assert_eq!(third["fingerprints"]["files_hashed"], 0, "{third}");
    assert_eq!(third["fingerprints"]["files_stat"], 6, "{third}");
}

#[test]
fn touching_a_dep_without_changing_bytes_skips_and_is_remembered() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    p.settle();
    p.run_ok(&[]);
    set_mtime(&p.path("in.txt"), 30);
    let touched = p.run_ok(&[]);
    assert!(
        statuses(&touched).iter().all(|(_, s)| s == "skipped"),
        "{touched}"
    );
    assert!(ran(&p).is_empty());
    assert_eq!(
        touched["fingerprints"]["files_hashed"], 1,
        "only in.txt is read: {touched}"
    );
    // The lock took the new stat: the next run reads nothing.
    let again = p.run_ok(&[]);
    assert_eq!(again["fingerprints"]["files_hashed"], 0, "{again}");
}

#[test]
fn changed_bytes_rerun_the_stage_and_its_dependents_only() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    p.write("in.txt", "hello world\n");
    let r = p.run_ok(&[]);
    assert_eq!(sorted(ran(&p)), ["count", "upper"]);
    assert_eq!(status_of(&r, "other"), "skipped");
    assert!(
        stage_of(&r, "upper")["reason"]
            .as_str()
            .unwrap()
            .contains("dep in.txt changed (size 6 → 12)"),
        "{r}"
    );
    assert_eq!(p.read("count.txt").trim(), "12");

    // Same length, other bytes: the hash decides, not the size.
    p.write("in.txt", "HELLO WORLD\n");
    p.run_ok(&[]);
    // upper ran, but wrote the same bytes: count is up to date.
    assert_eq!(ran(&p), ["upper"]);
}

#[test]
fn a_changed_command_or_param_reruns_that_stage() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    p.manifest(&MANIFEST.replace("wc -c < upper.txt", "wc -c <upper.txt"));
    let r = p.run_ok(&[]);
    assert_eq!(ran(&p), ["count"]);
    assert_eq!(
        stage_of(&r, "count")["reason"],
        r#"command changed (word 3: "echo count >> ran.log; wc -c <upper.txt > count.txt" was "echo count >> ran.log; wc -c < upper.txt > count.txt")"#
    );

    p.manifest(
        &MANIFEST
            .replace("wc -c < upper.txt", "wc -c <upper.txt")
            .replace("level: 3", "level: 4"),
    );
    let r = p.run_ok(&[]);
    assert_eq!(ran(&p), ["other"]);
    assert_eq!(stage_of(&r, "other")["reason"], "params changed: level");
}

#[test]
fn a_deleted_or_edited_out_reruns_its_stage() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    std::fs::remove_file(p.path("count.txt")).unwrap();
    let r = p.run_ok(&[]);
    assert_eq!(ran(&p), ["count"]);
    assert_eq!(stage_of(&r, "count")["reason"], "out count.txt is missing");
    assert_eq!(p.read("count.txt").trim(), "6");

    p.write("other.out", "edited by hand\n");
    p.run_ok(&[]);
    assert_eq!(ran(&p), ["other"]);
    assert_eq!(p.read("other.out"), "x\n");
}

#[test]
fn force_reruns_everything_and_selection_limits_it() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    let r = p.run_ok(&["--force"]);
    assert!(statuses(&r).iter().all(|(_, s)| s == "ran"), "{r}");
    assert_eq!(ran(&p), ["upper", "count", "other"]);

    let r = p.run_ok(&["--force", "--stage", "count"]);
    assert_eq!(ran(&p), ["count"]);
    assert_eq!(status_of(&r, "upper"), "not_selected");

    let r = p.run_ok(&["--force", "--from", "upper"]);
    assert_eq!(ran(&p), ["upper", "count"]);
    assert_eq!(status_of(&r, "other"), "not_selected");
}

#[test]
fn status_and_dry_run_explain_without_running() {
    let p = project();
    p.run_ok(&[]);
    ran(&p);
    p.write("in.txt", "changed\n");

    let out = p.cmd(&["status", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("2 of 3 stages stale"), "{text}");
    assert!(text.contains("stale: dep in.txt changed"), "{text}");
    assert!(
        text.contains("stale: upstream stage 'upper' runs first"),
        "{text}"
    );
    assert!(text.contains("other  up to date"), "{text}");

    let lock_before = p.read(".kiln/t/lock.json");
    let out = p.cmd(&["run", "p.yaml", "--dry-run"]).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("would run: dep in.txt changed"), "{err}");
    assert!(
        err.contains("$ sh -c 'echo upper >> ran.log; tr a-z A-Z < in.txt > upper.txt'"),
        "{err}"
    );
    assert!(ran(&p).is_empty(), "a dry run runs nothing");
    assert_eq!(p.read(".kiln/t/lock.json"), lock_before);
    assert_eq!(p.read("upper.txt"), "HELLO\n");
}

#[test]
fn graph_prints_text_and_dot() {
    let p = project();
    let out = p.cmd(&["graph", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("count\n  after: upper\n  dep:   upper.txt"),
        "{text}"
    );
    let out = p.cmd(&["graph", "p.yaml", "--dot"]).output().unwrap();
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph \"t\" {"), "{dot}");
    assert!(
        dot.contains("\"upper\" -> \"count\" [label=\"upper.txt\"];"),
        "{dot}"
    );
    assert!(!dot.contains("\"other\" ->"), "{dot}");
}
