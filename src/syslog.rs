//! Each change and refusal also goes to syslog, when a syslog socket exists.
//! The local socket protocol: `<PRI>TAG[PID]: MESSAGE`; the daemon stamps
//! the time.

use std::fmt;
use std::os::unix::net::UnixDatagram;

const SOCKET: &str = "/dev/log";
const FACILITY_AUTH: u8 = 4;
/// Lines one run sends before it only counts (bulk runs of 100,000 addresses
/// would otherwise flood the log); the rest is summed up in one line.
const LINES_PER_RUN: usize = 100;

#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Warning = 4,
    Notice = 5,
}

pub struct Syslog {
    socket: Option<UnixDatagram>,
    sent: usize,
    held_back: usize,
}

impl Syslog {
    /// Connect to the local syslog socket; without one, logging is a no-op.
    pub fn open() -> Self {
        // Non-blocking: a stuck syslog daemon must not stall a ban; a line
        // that does not fit into the socket's queue is dropped.
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.connect(SOCKET).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Syslog {
            socket,
            sent: 0,
            held_back: 0,
        }
    }

    pub fn disabled() -> Self {
        Syslog {
            socket: None,
            sent: 0,
            held_back: 0,
        }
    }

    /// Log one line; it is only formatted when it is sent (a flush of
    /// 100,000 routes should not format 100,000 lines nobody reads).
    pub fn log(&mut self, severity: Severity, message: fmt::Arguments<'_>) {
        if self.socket.is_none() {
            return;
        }
        if self.sent >= LINES_PER_RUN {
            self.held_back += 1;
            return;
        }
        self.send(severity, &message.to_string());
    }

    /// Say how many lines were held back, if any.
    pub fn finish(&mut self, summary: &str) {
        if self.held_back > 0 {
            let line = format!(
                "{summary} ({} more lines not logged one by one)",
                self.held_back
            );
            self.send(Severity::Notice, &line);
            self.held_back = 0;
        }
    }

    /// Start counting lines afresh: a resident process counts per request.
    pub fn next_run(&mut self) {
        self.sent = 0;
        self.held_back = 0;
    }

    fn send(&mut self, severity: Severity, message: &str) {
        if let Some(socket) = &self.socket {
            let line = format_line(severity, std::process::id(), message);
            // Logging must never make a ban fail.
            let _ = socket.send(line.as_bytes());
            self.sent += 1;
        }
    }
}

fn format_line(severity: Severity, pid: u32, message: &str) -> String {
    let pri = FACILITY_AUTH * 8 + severity as u8;
    format!("<{pri}>f2b-route[{pid}]: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        assert_eq!(
            format_line(Severity::Notice, 42, "added blackhole 198.51.100.7"),
            "<37>f2b-route[42]: added blackhole 198.51.100.7"
        );
        assert_eq!(
            format_line(Severity::Warning, 1, "x"),
            "<36>f2b-route[1]: x"
        );
    }

    #[test]
    fn sends_to_a_socket_and_holds_back_floods() {
        let dir = std::env::temp_dir().join(format!("f2b-route-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.connect(&path).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut log = Syslog {
            socket: Some(client),
            sent: 0,
            held_back: 0,
        };
        let mut buf = [0u8; 512];
        let mut lines = Vec::new();
        let mut drain = |lines: &mut Vec<String>| {
            while let Ok(n) = server.recv(&mut buf) {
                lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        };
        for i in 0..LINES_PER_RUN + 5 {
            log.log(Severity::Notice, format_args!("line {i}"));
            drain(&mut lines);
        }
        log.finish("added 105");
        drain(&mut lines);
        assert_eq!(lines.len(), LINES_PER_RUN + 1);
        assert!(lines.last().unwrap().contains("added 105 (5 more lines"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
