//! The prefetch of an incremental refresh: a thread of its own asks the
//! disk at the start for what each incremental symbol's writer will read of
//! its published file (see [`kiln_contracts::append::prefetch_tail`]),
//! opens its staging file (which the writer overwrites in whole pages, so
//! nothing of it is read), and hands the files to the writers, which would
//! otherwise open them again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use kiln_contracts::append::{prefetch_tail, BaseGroup};

use crate::cache::StagingView;

/// One symbol's files as the prefetch opened them (none: the writer opens
/// them itself).
#[derive(Debug, Default)]
pub struct Opened {
    /// The published file, for reading.
    pub published: Option<File>,
    /// The staging copy's file, for writing.
    pub staged: Option<File>,
}

/// What one symbol's prefetch should read: its published file, that
/// file's name in the staging copy, and the published file's length and
/// base group (by the index).
pub struct Wanted {
    pub symbol: String,
    pub published: PathBuf,
    pub file: String,
    pub len: u64,
    pub base: Option<BaseGroup>,
}

enum Slot {
    /// Opened while the staging copy was at this generation.
    Opened(u64, Opened),
    /// Its writer came first and opened the files itself.
    Taken,
}

#[derive(Default)]
struct Slots {
    by_symbol: HashMap<String, Slot>,
    /// How many `Slot::Opened` there are (two files each).
    open: usize,
    /// The prefetch has gone through its list: nothing more comes.
    finished: bool,
}

/// Files opened by the prefetch, waiting for their writers.
pub struct Prefetch {
    slots: Mutex<Slots>,
    /// Symbols whose files may wait open at once: beyond it, published
    /// files are only advised (their writers open both files themselves).
    limit: usize,
}

impl Prefetch {
    /// A prefetch that has nothing to hand over.
    pub fn none() -> Self {
        Self {
            slots: Mutex::new(Slots {
                finished: true,
                ..Slots::default()
            }),
            limit: 0,
        }
    }

    /// A prefetch whose files wait open within the open-files limit: two
    /// per symbol, leaving room for everything else the run opens
    /// (connections, the writers' files, indexes), at most 4,096 symbols.
    pub fn within_limits() -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        Self::keeping((soft.saturating_sub(256) / 2).min(4096) as usize)
    }

    /// A prefetch that keeps the files of at most `limit` symbols open.
    fn keeping(limit: usize) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            limit,
        }
    }

    /// Go through `wanted` in order (the prefetch thread): advise each
    /// symbol's published file and keep it and its staging file open for
    /// its writer, unless the writer already came; beyond the limit, only
    /// advise the published file.
    pub fn run(&self, wanted: Vec<Wanted>, staging: &RwLock<StagingView>) {
        for w in wanted {
            let keep = {
                let mut slots = self.slots.lock().expect("prefetch lock");
                if matches!(slots.by_symbol.get(&w.symbol), Some(Slot::Taken)) {
                    slots.by_symbol.remove(&w.symbol);
                    continue;
                }
                slots.open < self.limit
            };
            if !keep {
                // Nothing of the staging file is read (its writer writes
                // whole pages): opening it would be for nothing.
                prefetch_tail(&w.published, w.len, w.base);
                continue;
            }
            // Read under the staging lock: a checkpoint (which takes it for
            // writing) cannot move the staging copy between reading its
            // generation and opening its file.
            let (generation, opened) = {
                let view = staging.read().expect("staging lock");
                let opened = Opened {
                    published: prefetch_tail(&w.published, w.len, w.base),
                    staged: OpenOptions::new()
                        .write(true)
                        .open(view.dir.join(&w.file))
                        .ok(),
                };
                (view.generation, opened)
            };
            let mut slots = self.slots.lock().expect("prefetch lock");
            if slots.by_symbol.remove(&w.symbol).is_none() {
                slots
                    .by_symbol
                    .insert(w.symbol, Slot::Opened(generation, opened));
                slots.open += 1;
            }
        }
        let mut slots = self.slots.lock().expect("prefetch lock");
        slots.finished = true;
        slots
            .by_symbol
            .retain(|_, slot| matches!(slot, Slot::Opened(..)));
    }

    /// `symbol`'s files, if the prefetch opened them while the staging
    /// copy was at `generation` (the writer's, which holds the staging
    /// lock): after a checkpoint they may be other files than the names
    /// now say. Either way the prefetch will not open them for it later.
    pub fn take(&self, symbol: &str, generation: u64) -> Option<Opened> {
        let mut slots = self.slots.lock().expect("prefetch lock");
        match slots.by_symbol.remove(symbol) {
            Some(Slot::Opened(at, opened)) => {
                slots.open -= 1;
                (at == generation).then_some(opened)
            }
            Some(Slot::Taken) => None,
            None => {
                if !slots.finished {
                    slots.by_symbol.insert(symbol.to_owned(), Slot::Taken);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Symbols `names`, each with a published file and a staging file
    /// holding its name (published) or its name uppercased (staged).
    fn setup(names: &[&str]) -> (tempfile::TempDir, Vec<Wanted>, RwLock<StagingView>) {
        let root = tempfile::tempdir().unwrap();
        let (published, staging) = (root.path().join("p"), root.path().join("s"));
        std::fs::create_dir_all(&published).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let wanted = names
            .iter()
            .map(|name| {
                let file = format!("{name}.parquet");
                std::fs::write(published.join(&file), name).unwrap();
                std::fs::write(staging.join(&file), name.to_uppercase()).unwrap();
                Wanted {
                    symbol: name.to_string(),
                    published: published.join(&file),
                    file,
                    len: name.len() as u64,
                    base: None,
                }
            })
            .collect();
        let view = RwLock::new(StagingView {
            dir: staging,
            spare: Default::default(),
            twin: None,
            generation: 3,
        });
        (root, wanted, view)
    }

    fn read(mut file: &File) -> String {
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn a_writer_gets_its_symbols_files_once_and_only_from_its_generation() {
        let (_root, wanted, view) = setup(&["a", "b"]);
        let prefetch = Prefetch::keeping(10);
        prefetch.run(wanted, &view);
        let a = prefetch.take("a", 3).expect("opened");
        assert_eq!(read(a.published.as_ref().unwrap()), "a");
        // The staging file, open for writing (only).
        let mut staged = a.staged.unwrap();
        staged.write_all(b"!").expect("open for writing");
        let staged_path = view.read().unwrap().dir.join("a.parquet");
        assert_eq!(std::fs::read_to_string(staged_path).unwrap(), "!");
        assert!(prefetch.take("a", 3).is_none(), "handed over once");
        // After a checkpoint the names may mean other files.
        assert!(prefetch.take("b", 4).is_none());
        assert!(prefetch.take("b", 3).is_none(), "and dropped");
        assert!(prefetch.slots.lock().unwrap().by_symbol.is_empty());
        assert_eq!(prefetch.slots.lock().unwrap().open, 0);
    }

    #[test]
    fn symbols_whose_writer_came_first_are_not_kept_open() {
        let (_root, wanted, view) = setup(&["a", "b", "c"]);
        let prefetch = Prefetch::keeping(10);
        assert!(prefetch.take("b", 3).is_none(), "nothing opened yet");
        prefetch.run(wanted, &view);
        let slots = prefetch.slots.lock().unwrap();
        let kept: Vec<&String> = {
            let mut kept: Vec<&String> = slots.by_symbol.keys().collect();
            kept.sort();
            kept
        };
        assert_eq!(kept, ["a", "c"]);
        assert_eq!(slots.open, 2);
        drop(slots);
        // Once the prefetch has finished, a writer leaves no trace.
        assert!(prefetch.take("z", 3).is_none());
        assert!(!prefetch.slots.lock().unwrap().by_symbol.contains_key("z"));
    }

    #[test]
    fn beyond_the_limit_files_are_advised_and_closed() {
        let (_root, wanted, view) = setup(&["a", "b", "c"]);
        let prefetch = Prefetch::keeping(2);
        prefetch.run(wanted, &view);
        assert!(prefetch.take("a", 3).is_some());
        assert!(prefetch.take("b", 3).is_some());
        assert!(prefetch.take("c", 3).is_none());
        // Nothing to hand over: every writer opens its own files.
        let none = Prefetch::none();
        assert!(none.take("a", 0).is_none());
        assert!(none.slots.lock().unwrap().by_symbol.is_empty());
    }
}
