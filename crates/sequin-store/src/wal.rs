//! The write-ahead log: an event counts as accepted only once its block is in the log and
//! the log is synced to disk.
//!
//! The log is a directory of segment files named by the sequence number of their first
//! event. A record is `magic, payload length, crc32, first sequence number, payload` where
//! the payload is a [`crate::codec`] block. On open every segment is replayed; a record cut
//! short by a crash at the tail of the last segment is truncated away (it was never
//! acknowledged, because acknowledgement waits for the sync that would have covered it).
//! A bad record anywhere else is corruption and is reported, never skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sequin_core::Event;

use crate::codec::{decode_events, encode_events};
use crate::error::{IoContext, StoreError};

const MAGIC: u32 = 0x5351_574c; // "SQWL"
const HEADER: usize = 4 + 4 + 4 + 8;
/// A segment is closed and a new one started past this size, so that flushed segments can
/// be deleted whole.
const SEGMENT_BYTES: u64 = 256 << 20;

/// The open log.
pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    bytes: u64,
    buf: Vec<u8>,
    /// First sequence numbers of the segments, in order (the last one is being written).
    segments: Vec<u64>,
}

/// A block recovered from the log.
pub struct Recovered {
    /// Sequence number of the first event.
    pub first_seq: u64,
    /// The events, in sequence order.
    pub events: Vec<Event>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, replaying every intact record. `next_seq` names
    /// the segment to create if there is none.
    pub fn open(dir: &Path, next_seq: u64) -> Result<(Wal, Vec<Recovered>), StoreError> {
        fs::create_dir_all(dir).at(dir)?;
        let mut segments: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".wal")
                && let Ok(seq) = stem.parse::<u64>()
            {
                segments.push(seq);
            }
        }
        segments.sort_unstable();
        let mut recovered = Vec::new();
        for (i, &first) in segments.iter().enumerate() {
            let path = segment_path(dir, first);
            let last = i + 1 == segments.len();
            let good_len = replay_segment(&path, last, &mut recovered)?;
            if last {
                let f = OpenOptions::new().write(true).open(&path).at(&path)?;
                f.set_len(good_len).at(&path)?;
                f.sync_all().at(&path)?;
            }
        }
        if segments.is_empty() {
            segments.push(next_seq);
        }
        let first = *segments.last().expect("at least one segment");
        let path = segment_path(dir, first);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        let bytes = file.metadata().at(&path)?.len();
        sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                file,
                path,
                bytes,
                buf: Vec::new(),
                segments,
            },
            recovered,
        ))
    }

    /// Appends a block (not yet durable: call [`Wal::sync`]).
    pub fn append<'a, I>(&mut self, first_seq: u64, events: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = &'a Event>,
        I::IntoIter: Clone,
    {
        if self.bytes >= SEGMENT_BYTES {
            self.rotate(first_seq)?;
        }
        let mut payload = std::mem::take(&mut self.buf);
        payload.clear();
        payload.resize(HEADER, 0);
        encode_events(events, &mut payload);
        let len = (payload.len() - HEADER) as u32;
        payload[12..20].copy_from_slice(&first_seq.to_le_bytes());
        let crc = crc32fast::hash(&payload[12..]);
        payload[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        payload[4..8].copy_from_slice(&len.to_le_bytes());
        payload[8..12].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&payload).at(&self.path)?;
        self.bytes += payload.len() as u64;
        self.buf = payload;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().at(&self.path)
    }

    /// Closes the current segment and starts a new one whose first event is `next_seq`.
    pub fn rotate(&mut self, next_seq: u64) -> Result<(), StoreError> {
        // Nothing written yet, or a segment of that name is the current one: keep it (two
        // entries for one file would let `remove_below` delete the live segment).
        if self.bytes == 0 || self.segments.last() == Some(&next_seq) {
            return Ok(());
        }
        self.sync()?;
        let path = segment_path(&self.dir, next_seq);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        self.path = path;
        self.bytes = 0;
        self.segments.push(next_seq);
        sync_dir(&self.dir)
    }

    /// Deletes the segments all of whose events have sequence numbers below `seq` (they are
    /// in history now). The segment being written is kept.
    pub fn remove_below(&mut self, seq: u64) -> Result<(), StoreError> {
        while self.segments.len() > 1 && self.segments[1] <= seq {
            let path = segment_path(&self.dir, self.segments[0]);
            fs::remove_file(&path).at(&path)?;
            self.segments.remove(0);
        }
        sync_dir(&self.dir)
    }
}

/// Replays one segment, returning the length of its intact prefix.
fn replay_segment(path: &Path, is_last: bool, out: &mut Vec<Recovered>) -> Result<u64, StoreError> {
    let mut data = Vec::new();
    File::open(path).at(path)?.read_to_end(&mut data).at(path)?;
    let mut pos = 0usize;
    let corrupt = |pos: usize, why: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("{why} at byte {pos}"),
    };
    while pos < data.len() {
        let rest = &data[pos..];
        let intact = rest.len() >= HEADER && {
            let magic = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            magic == MAGIC
                && rest.len() >= HEADER + len
                && crc32fast::hash(&rest[12..HEADER + len])
                    == u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"))
        };
        if !intact {
            if is_last {
                break; // torn tail of an unacknowledged write
            }
            return Err(corrupt(pos, "bad log record"));
        }
        let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        let first_seq = u64::from_le_bytes(rest[12..20].try_into().expect("8 bytes"));
        let events = decode_events(&rest[HEADER..HEADER + len])
            .map_err(|_| corrupt(pos, "undecodable block"))?;
        out.push(Recovered { first_seq, events });
        pos += HEADER + len;
    }
    Ok(pos as u64)
}

/// Syncs a directory so that created, renamed and deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).at(dir)?.sync_all().at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_dropped_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, rec) = Wal::open(dir.path(), 0).unwrap();
            assert!(rec.is_empty());
            wal.append(0, &[Event::new("u", 1, "a"), Event::new("u", 2, "b")])
                .unwrap();
            wal.append(2, &[Event::new("v", 3, "c")]).unwrap();
            wal.sync().unwrap();
        }
        // Simulate a crash in the middle of writing a third record.
        let path = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&MAGIC.to_le_bytes()).unwrap();
        f.write_all(&[200, 0, 0]).unwrap();
        drop(f);
        let (_wal, rec) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(rec.len(), 2);
        assert_eq!(rec[1].first_seq, 2);
        assert_eq!(rec[1].events[0].name, "c");
    }
}
