//! A sink's record: each notification kept in memory and appended as one JSON line to a file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::Notification;

pub(super) struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    received: Mutex<Vec<Notification>>,
}

impl Journal {
    /// Opens (creating, appending to) `<dir>/sinks/<name>.jsonl`.
    pub fn open(dir: &Path, name: &str) -> Result<Journal> {
        let sinks = dir.join("sinks");
        std::fs::create_dir_all(&sinks)
            .with_context(|| format!("cannot create {}", sinks.display()))?;
        let path = sinks.join(format!("{name}.jsonl"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Journal {
            path,
            file: Mutex::new(file),
            received: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one notification. The line is written with one `write_all` on an append-mode
    /// file, so a reader sees whole lines, or a last line still without its newline.
    pub fn record(&self, notification: Notification) {
        if let Ok(mut line) = serde_json::to_string(&notification) {
            line.push('\n');
            let mut file = self
                .file
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if let Err(error) = file.write_all(line.as_bytes()) {
                eprintln!(
                    "lab sink: cannot append to {}: {error}",
                    self.path.display()
                );
            }
        }
        self.received
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(notification);
    }

    pub fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}
