//! Where verdict lines go: stdout (apart from the agent's own logs on
//! stderr), or a file opened append-only and reopened on SIGHUP, so
//! logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// `--verdict-log-output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// An open output.
#[derive(Debug)]
pub struct Output {
    target: OutputTarget,
    file: Option<BufWriter<File>>,
}

impl Output {
    /// Opens `target` (a file is created if missing, never truncated).
    pub fn open(target: OutputTarget) -> io::Result<Self> {
        let file = match &target {
            OutputTarget::Stdout => None,
            OutputTarget::File(path) => Some(BufWriter::new(append(path)?)),
        };
        Ok(Self { target, file })
    }

    /// Closes and opens the file again (after logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let OutputTarget::File(path) = &self.target {
            if let Some(mut old) = self.file.take() {
                old.flush()?;
            }
            self.file = Some(BufWriter::new(append(path)?));
        }
        Ok(())
    }

    /// Writes one line (a newline is added).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        match &mut self.file {
            Some(file) => writeln!(file, "{line}"),
            None => writeln!(io::stdout().lock(), "{line}"),
        }
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => io::stdout().lock().flush(),
        }
    }
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
