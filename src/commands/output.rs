//! What a run tells people: one summary line on stderr by default, a line
//! per address with -v, nothing but errors with -q; changes and refusals
//! also go to syslog.

use std::fmt;

use crate::syslog::{Severity, Syslog};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Human messages: stderr by verbosity, and syslog for changes and refusals.
pub struct Report {
    verbosity: Verbosity,
    syslog: Syslog,
}

impl Report {
    pub fn new(verbosity: Verbosity, syslog: Syslog) -> Self {
        Report { verbosity, syslog }
    }

    /// A change made to the kernel: syslog always, stderr with -v.
    pub fn change(&mut self, message: fmt::Arguments<'_>) {
        if self.verbosity == Verbosity::Verbose {
            let text = message.to_string();
            self.syslog.log(Severity::Notice, format_args!("{text}"));
            say(&text);
        } else {
            self.syslog.log(Severity::Notice, message);
        }
    }

    /// A refusal: syslog always (the error line itself goes to stderr).
    pub fn refusal(&mut self, message: fmt::Arguments<'_>) {
        self.syslog.log(Severity::Warning, message);
    }

    /// A warning that changed nothing: syslog and stderr, unless -q.
    pub fn warning(&mut self, message: &str) {
        self.syslog
            .log(Severity::Warning, format_args!("{message}"));
        if self.verbosity != Verbosity::Quiet {
            say(message);
        }
    }

    /// Something worth knowing that changed nothing: stderr with -v.
    pub fn detail(&mut self, message: fmt::Arguments<'_>) {
        if self.verbosity == Verbosity::Verbose {
            say(&message.to_string());
        }
    }

    /// The end of one request of a resident run (`serve`): as `summary`,
    /// but nothing on stderr (the answer carries the summary), and the next
    /// request gets its own budget of syslog lines, as a run of its own.
    pub fn answered(&mut self, summary: &str) {
        self.syslog.finish(summary);
        self.syslog.next_run();
    }

    /// The one line a run prints by default.
    pub fn summary(&mut self, message: &str) {
        self.syslog.finish(message);
        if self.verbosity != Verbosity::Quiet {
            say(message);
        }
    }
}

/// One line on stderr in one write (stderr is unbuffered).
pub fn say(message: &str) {
    use std::io::Write;
    let line = format!("f2b-route: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// "1 address" / "3 addresses".
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if what.ends_with('s') {
        format!("{n} {what}es")
    } else {
        format!("{n} {what}s")
    }
}
