//! Counters of what f2b-route did since the state dir was made: one small
//! text file, `counters`, rewritten under the ledger's lock by the run that
//! changes it, read by `stats` and `metrics`.
//!
//! ```text
//! created 1796136821
//! bans 12
//! ...
//! ```

use std::fmt::Write as _;
use std::io::{self, Read};

use nix::fcntl::OFlag;

use crate::trusted::{Dir, Names};

pub const FILE: &str = "counters";

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Holds taken (a jail banning an address).
    Bans,
    /// Holds released.
    Unbans,
    /// Addresses the guard refused.
    Refusals,
    /// Addresses refused for someone else's unicast route.
    Conflicts,
    /// Changes the kernel refused, and runs that failed.
    Failures,
}

impl Counter {
    pub const ALL: [Counter; 5] = [
        Counter::Bans,
        Counter::Unbans,
        Counter::Refusals,
        Counter::Conflicts,
        Counter::Failures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Bans => "bans",
            Counter::Unbans => "unbans",
            Counter::Refusals => "refusals",
            Counter::Conflicts => "conflicts",
            Counter::Failures => "failures",
        }
    }
}

/// The counters, and when counting began (unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub since: u64,
    values: [u64; 5],
}

impl Counts {
    /// Nothing counted yet, counting from `since`.
    pub fn starting(since: u64) -> Counts {
        Counts {
            since,
            values: [0; 5],
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    pub fn add(&mut self, c: Counter, n: u64) {
        let v = &mut self.values[c as usize];
        *v = v.saturating_add(n);
    }

    pub fn is_zero(&self) -> bool {
        self.values.iter().all(|v| *v == 0)
    }

    fn parse(text: &str) -> Option<Counts> {
        let mut counts = Counts::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            let value: u64 = value.parse().ok()?;
            if key == "created" {
                counts.since = value;
            } else {
                let c = Counter::ALL.into_iter().find(|c| c.name() == key)?;
                counts.values[c as usize] = value;
            }
        }
        Some(counts)
    }

    fn text(&self) -> String {
        let mut text = format!("created {}\n", self.since);
        for c in Counter::ALL {
            let _ = writeln!(text, "{} {}", c.name(), self.get(c));
        }
        text
    }
}

/// The counters in `state`; zero (counting from `now`) where there are none
/// yet or the file cannot be read.
pub fn read(state: &Dir, now: u64) -> io::Result<Counts> {
    let fresh = Counts {
        since: now,
        ..Counts::default()
    };
    let mut file = match state.open(std::ffi::OsStr::new(FILE), OFlag::O_RDONLY, 0, Names::One) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(fresh),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return Ok(fresh);
    }
    Ok(Counts::parse(&text).unwrap_or(fresh))
}

/// Open (making it if needed) the counters in `state` for [`add`].
pub fn open(state: &Dir) -> io::Result<std::fs::File> {
    state.open(
        std::ffi::OsStr::new(FILE),
        OFlag::O_RDWR | OFlag::O_CREAT,
        0o600,
        Names::One,
    )
}

/// Add `delta` to the counters in `file`, opened by [`open`] (the caller
/// holds the ledger's exclusive lock).
pub fn add(file: &std::fs::File, delta: &Counts, now: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    // The file is a few dozen bytes: one read, one write.
    let mut buf = [0u8; 512];
    let n = file.read_at(&mut buf, 0)?;
    let mut counts = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(Counts::parse)
        .filter(|c| c.since != 0)
        .unwrap_or(Counts::starting(now));
    for c in Counter::ALL {
        counts.add(c, delta.get(c));
    }
    let text = counts.text();
    file.write_all_at(text.as_bytes(), 0)?;
    if text.len() < n {
        file.set_len(text.len() as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let mut c = Counts {
            since: 42,
            ..Counts::default()
        };
        c.add(Counter::Bans, 3);
        c.add(Counter::Failures, 1);
        assert_eq!(Counts::parse(&c.text()), Some(c));
        assert_eq!(Counts::parse("bans x\n"), None);
        assert_eq!(Counts::parse("colour 1\n"), None);
    }
}
