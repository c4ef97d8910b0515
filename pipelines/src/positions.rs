//! Where each node of a manifest is, so that errors found after serde has
//! done its part (a cycle, an undefined variable, a missing program) still
//! point at `file:line:col`.
//!
//! serde_yaml_ng keeps no spans, so the manifest is read a second time with
//! yaml-rust2's marked events into a map from a dotted path
//! (`stages.split.deps[1]`) to the position of that node: for a mapping
//! entry the position of its key, for a sequence item the item itself.

use std::collections::{HashMap, HashSet};
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Node positions by path, plus the duplicate keys found on the way (YAML
/// allows none, and serde would silently keep the last).
#[derive(Debug, Default)]
pub struct Positions {
    nodes: HashMap<String, Pos>,
    pub duplicates: Vec<(String, Pos)>,
}

impl Positions {
    /// Reads `text`; a YAML syntax error is serde's to report, so it only
    /// ends the walk early.
    pub fn read(text: &str) -> Positions {
        let mut walker = Walker::default();
        let _ = Parser::new_from_str(text).load(&mut walker, false);
        walker.positions
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn at(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(pos) = self.nodes.get(path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return Pos { line: 1, col: 1 },
            }
        }
    }
}

enum Frame {
    Mapping {
        path: String,
        key: Option<(String, Pos)>,
        seen: HashSet<String>,
    },
    Sequence {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    positions: Positions,
    stack: Vec<Frame>,
}

fn pos_of(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        col: mark.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walker {
    /// A value starts here: names it and records where it is. Returns the
    /// path, or None for a mapping key (which names the next value).
    fn value_path(&mut self, scalar_key: Option<&str>, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, index }) => {
                let item = format!("{path}[{index}]");
                *index += 1;
                self.positions.nodes.insert(item.clone(), pos);
                Some(item)
            }
            Some(Frame::Mapping { path, key, seen }) => match key.take() {
                Some((k, key_pos)) => {
                    let item = join(path, &k);
                    self.positions.nodes.insert(item.clone(), key_pos);
                    Some(item)
                }
                None => {
                    let k = scalar_key.unwrap_or("?").to_string();
                    if !seen.insert(k.clone()) {
                        self.positions.duplicates.push((join(path, &k), pos));
                    }
                    *key = Some((k, pos));
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(mark);
        match ev {
            Event::Scalar(value, ..) => {
                self.value_path(Some(&value), pos);
            }
            Event::Alias(_) => {
                self.value_path(Some("*alias"), pos);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(None, pos).unwrap_or_default();
                self.stack.push(Frame::Mapping {
                    path,
                    key: None,
                    seen: HashSet::new(),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(None, pos).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: demo\nstages:\n  split:\n    cmd: [a, b]\n    deps:\n      - x.csv\n      - y.csv\n  train:\n    cmd: t\n";

    #[test]
    fn paths_point_at_keys_and_items() {
        let p = Positions::read(TEXT);
        assert_eq!(p.at("name"), Pos { line: 1, col: 1 });
        assert_eq!(p.at("stages.split"), Pos { line: 3, col: 3 });
        assert_eq!(p.at("stages.split.deps[1]"), Pos { line: 7, col: 9 });
        assert_eq!(p.at("stages.train.cmd"), Pos { line: 9, col: 5 });
        // Unknown paths fall back to their nearest ancestor.
        assert_eq!(p.at("stages.train.outs[3]"), Pos { line: 8, col: 3 });
        assert!(p.duplicates.is_empty());
    }

    #[test]
    fn duplicate_keys_are_found() {
        let p = Positions::read("stages:\n  a:\n    cmd: x\n  a:\n    cmd: y\n");
        assert_eq!(
            p.duplicates,
            vec![("stages.a".to_string(), Pos { line: 4, col: 3 })]
        );
    }
}
