//! Where JSON lines go: stdout, or a file rotated by size.
//!
//! The active file is the configured path. When a line would take it past `max_file_bytes`,
//! the file is synced and renamed to `<path>.<N>` (`N` = 000001, 000002, … , never reused) and a
//! new one is started; a line is never split across files. On open, a last line cut short by a
//! crash (no `\n` at the end) is removed, so every line in the files is a complete object (the
//! change is written again after the restart, since it was not acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::destination::Error;

/// A destination for lines.
pub enum Output {
    Stdout,
    File(RotatingFile),
}

impl Output {
    /// Writes whole lines (each ending in `\n`).
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => io::stdout().lock().write_all(lines),
            Output::File(file) => file.write_lines(lines),
        }
    }

    /// Makes everything written so far durable (stdout: flushed).
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout => io::stdout().lock().flush(),
            Output::File(file) => file.sync(),
        }
    }
}

/// A file that moves aside when it reaches its size limit.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: Option<u64>,
    file: File,
    size: u64,
    next_number: u32,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: Option<u64>) -> io::Result<RotatingFile> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let size = drop_partial_line(&mut file)?;
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.filter(|m| *m > 0),
            file,
            size,
            next_number: next_rotation_number(path)?,
        })
    }

    /// The name the active file gets when it is rotated as number `n`.
    pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n:06}"));
        PathBuf::from(name)
    }

    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        let Some(max) = self.max_bytes else {
            self.file.write_all(lines)?;
            self.size += lines.len() as u64;
            return Ok(());
        };
        let mut start = 0;
        while start < lines.len() {
            // Take as many whole lines as fit; at least one in an empty file.
            let mut end = start;
            while end < lines.len() {
                let line_end = lines[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |i| end + i + 1);
                let fits = self.size + (line_end - start) as u64 <= max;
                if !fits && (end > start || self.size > 0) {
                    break;
                }
                end = line_end;
            }
            if end == start {
                self.rotate()?;
                continue;
            }
            self.file.write_all(&lines[start..end])?;
            self.size += (end - start) as u64;
            start = end;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let rotated = Self::rotated_path(&self.path, self.next_number);
        std::fs::rename(&self.path, &rotated)?;
        self.next_number += 1;
        self.file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        sync_directory(&self.path)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Truncates the file after its last `\n`; returns the resulting size.
fn drop_partial_line(file: &mut File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    let mut keep = size;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let start = keep.saturating_sub(buffer.len() as u64);
        let len = (keep - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buffer[..len])?;
        if let Some(i) = buffer[..len].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        if start == 0 {
            keep = 0;
            break;
        }
        keep = start;
    }
    if keep < size {
        tracing::warn!(
            dropped_bytes = size - keep,
            "jsonl: removed a line cut short by a crash"
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

/// One more than the highest `<path>.NNNNNN` present.
fn next_rotation_number(path: &Path) -> io::Result<u32> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(1);
    };
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|digits| digits.len() == 6)
            .and_then(|digits| digits.parse::<u32>().ok());
        if let Some(number) = number {
            highest = highest.max(number);
        }
    }
    Ok(highest + 1)
}

fn sync_directory(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Reads the JSON value in `path`; `None` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::fatal(format!("cannot read {}", path.display()), e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::fatal(format!("{} holds no valid identity", path.display()), e))
}

/// Replaces `path` with `value` as JSON, atomically and durably (a temporary file renamed over
/// it, then the directory synced).
pub fn replace_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let fail = |e: io::Error| Error::fatal(format!("cannot write {}", path.display()), e);
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::fatal(format!("cannot encode {}", path.display()), e))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary).map_err(fail)?;
    file.write_all(&text).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    sync_directory(path).map_err(fail)
}
