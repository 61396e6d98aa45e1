//! fail2ban's control socket, as `fail2ban-client` speaks it
//! (fail2ban/client/csocket.py, server/asyncserver.py): a request is a
//! pickled list of strings followed by `<F2B_END_COMMAND>`; the answer is
//! a pickle of `(code, value)` followed by the same terminator, code 0 for
//! success; `<F2B_CLOSE_COMMAND>` + terminator ends the connection.
//!
//! The exchange is bounded: one deadline for the whole conversation and a
//! limit on the size of an answer.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_pickle::{DeOptions, SerOptions, Value};

use super::{Active, Error, Origin};
use crate::trusted::{self, TrustError};

const END: &[u8] = b"<F2B_END_COMMAND>";
const CLOSE: &[u8] = b"<F2B_CLOSE_COMMAND>";

/// The largest answer read: `get JAIL banned` of a million IPv6 bans is
/// about 50 MB.
pub const MAX_ANSWER: usize = 64 << 20;

/// How long the whole conversation may take (fail2ban's own client waits
/// 30 s; f2b-route holds its ledger's lock meanwhile, which a ban waits 10 s
/// for).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to fail2ban's server.
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    timeout: Duration,
    deadline: Instant,
}

impl Client {
    /// Connect; `Error::NotRunning` when nobody listens there. The socket
    /// must be ours (root's) in a directory nobody else can change, as
    /// every file f2b-route trusts (src/trusted.rs): it is reached through
    /// the directory opened after those checks, so no one can put another
    /// listener in its place between the check and the connect.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, Error> {
        let (dir, name) = trusted_socket(path)?;
        let via = Path::new("/proc/self/fd")
            .join(dir.raw_fd().to_string())
            .join(name);
        let stream = match UnixStream::connect(&via) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(Error::NotRunning {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => return Err(socket_error(path, "cannot connect", e)),
        };
        Ok(Client {
            stream,
            path: path.to_path_buf(),
            timeout,
            deadline: Instant::now() + timeout,
        })
    }

    fn left(&self) -> Result<Duration, Error> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Socket {
                path: self.path.clone(),
                what: format!("no answer within {:?}", self.timeout),
                source: None,
            });
        }
        Ok(left)
    }

    /// Send one command, return the value of a successful answer.
    pub fn command(&mut self, words: &[&str]) -> Result<Value, Error> {
        let request = Value::List(words.iter().map(|w| Value::String((*w).into())).collect());
        let mut bytes =
            serde_pickle::value_to_vec(&request, SerOptions::new()).map_err(|e| Error::Answer {
                path: self.path.clone(),
                what: format!("cannot encode the request: {e}"),
            })?;
        bytes.extend_from_slice(END);
        self.send(&bytes)?;
        let answer = self.receive()?;
        decode(&answer).map_err(|what| Error::Answer {
            path: self.path.clone(),
            what: format!("{}: {what}", words.join(" ")),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let left = self.left()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|()| self.stream.write_all(bytes))
            .map_err(|e| socket_error(&self.path, "cannot send", e))
    }

    fn receive(&mut self) -> Result<Vec<u8>, Error> {
        let mut answer = Vec::with_capacity(4096);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let left = self.left()?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| socket_error(&self.path, "cannot read", e))?;
            let n = match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(Error::Socket {
                        path: self.path.clone(),
                        what: "fail2ban closed the connection before its answer ended".into(),
                        source: None,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Socket {
                        path: self.path.clone(),
                        what: format!("no answer within {:?}", self.timeout),
                        source: None,
                    })
                }
                Err(e) => return Err(socket_error(&self.path, "cannot read", e)),
            };
            answer.extend_from_slice(&buf[..n]);
            if answer.ends_with(END) {
                answer.truncate(answer.len() - END.len());
                return Ok(answer);
            }
            if answer.len() > MAX_ANSWER + END.len() {
                return Err(Error::Answer {
                    path: self.path.clone(),
                    what: format!("an answer larger than {} MiB", MAX_ANSWER >> 20),
                });
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // As fail2ban-client does; the answer is not waited for.
        let _ = self
            .stream
            .set_write_timeout(Some(Duration::from_millis(100)));
        let mut bye = CLOSE.to_vec();
        bye.extend_from_slice(END);
        let _ = self.stream.write_all(&bye);
    }
}

/// The socket's directory, opened after the trust checks, and its name in
/// it: `NotRunning` when either is missing.
fn trusted_socket(path: &Path) -> Result<(trusted::Dir, &std::ffi::OsStr), Error> {
    let not_running = |e: io::Error| Error::NotRunning {
        path: path.to_path_buf(),
        source: e,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Answer {
            path: path.to_path_buf(),
            what: "not a path to a socket".into(),
        });
    };
    let dir = match trusted::open_dir(parent, false) {
        Ok(d) => d,
        Err(TrustError::NotFound { .. }) => {
            return Err(not_running(io::ErrorKind::NotFound.into()));
        }
        Err(source) => {
            return Err(Error::UntrustedSocket {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let refuse = |why: String| Error::UntrustedSocket {
        path: path.to_path_buf(),
        source: TrustError::Untrusted {
            path: path.to_path_buf(),
            reason: why,
        },
    };
    match dir.stat(name) {
        Ok(None) => Err(not_running(io::ErrorKind::NotFound.into())),
        Ok(Some(st)) if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK => {
            Err(refuse("not a socket".into()))
        }
        Ok(Some(st)) if st.st_uid != nix::unistd::geteuid().as_raw() => Err(refuse(format!(
            "a socket of uid {}, not of this user's (fail2ban runs as root)",
            st.st_uid
        ))),
        Ok(Some(_)) => Ok((dir, name)),
        Err(e) => Err(socket_error(path, "cannot look at it", e)),
    }
}

fn socket_error(path: &Path, what: &str, e: io::Error) -> Error {
    Error::Socket {
        path: path.to_path_buf(),
        what: what.into(),
        source: Some(e),
    }
}

/// The value of an answer `(0, value)`; fail2ban's error answers as text.
fn decode(bytes: &[u8]) -> Result<Value, String> {
    // keep_restore_state: an object fail2ban pickles by reduction (its
    // IPAddr becomes `str(...)`, an exception its class and arguments)
    // comes out as the tuple of its arguments instead of an error.
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state())
        .map_err(|e| format!("an answer that is not a pickle f2b-route reads: {e}"))?;
    match value {
        Value::Tuple(mut pair) | Value::List(mut pair) if pair.len() == 2 => {
            let value = pair.pop().unwrap_or(Value::None);
            match pair.pop() {
                Some(Value::I64(0)) => Ok(value),
                Some(Value::I64(code)) => {
                    Err(format!("fail2ban answered error {code}: {}", text(&value)))
                }
                other => Err(format!("an answer with the code {other:?}")),
            }
        }
        // The server's own failure ("ERROR: ...").
        Value::String(s) => Err(format!("fail2ban answered {:?}", cut(&s))),
        other => Err(format!(
            "an answer of an unexpected shape: {}",
            cut(&format!("{other:?}"))
        )),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A value as one line of text (an exception's arguments, a string).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => cut(s),
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        other => cut(&format!("{other:?}")),
    }
}

/// A string, or an object reduced to one (fail2ban's IPAddr).
fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Tuple(items) if items.len() == 1 => as_str(&items[0]),
        _ => None,
    }
}

/// The jail names in `status`'s answer: `[("Number of jail", n), ("Jail list", "a, b")]`.
fn jail_list(v: &Value) -> Result<Vec<String>, String> {
    let Value::List(items) = v else {
        return Err("status: not a list".into());
    };
    for item in items {
        if let Value::Tuple(pair) | Value::List(pair) = item {
            if pair.len() == 2 && as_str(&pair[0]) == Some("Jail list") {
                let list = as_str(&pair[1]).ok_or("status: a jail list that is not text")?;
                return Ok(list
                    .split(',')
                    .map(str::trim)
                    .filter(|j| !j.is_empty())
                    .map(String::from)
                    .collect());
            }
        }
    }
    Err("status: no \"Jail list\"".into())
}

/// The bans fail2ban's server has now: of `jail`, or of every jail it runs.
pub fn read(path: &Path, jail: Option<&str>) -> Result<Active, Error> {
    let mut client = Client::connect(path, TIMEOUT)?;
    let bad = |what: String| Error::Answer {
        path: path.to_path_buf(),
        what,
    };
    let jails = match jail {
        Some(j) => vec![j.to_owned()],
        None => jail_list(&client.command(&["status"])?).map_err(bad)?,
    };
    let mut active = Active::new(Origin::Socket(path.to_path_buf()));
    for j in &jails {
        let banned = client.command(&["get", j, "banned"])?;
        let Value::List(ids) = banned else {
            return Err(bad(format!("get {j} banned: not a list")));
        };
        active.jails.entry(j.clone()).or_default();
        for id in &ids {
            let id = as_str(id)
                .ok_or_else(|| bad(format!("get {j} banned: an entry that is not text")))?;
            active.ban(j, id);
        }
    }
    Ok(active)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as fail2ban 1.0.2's server pickled them (protocol 5, from
    /// `pickle.dumps((0, [IPAddr(...), ...]), HIGHEST_PROTOCOL)`).
    const BANNED: &[u8] = b"\x80\x05\x95\x4c\x00\x00\x00\x00\x00\x00\x00\x4b\x00\x5d\x94\x28\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x03\x73\x74\x72\x94\x93\x94\x8c\x0c\x31\x39\x38\x2e\x35\x31\x2e\x31\x30\x30\x2e\x37\x94\x85\x94\x52\x94\x68\x03\x8c\x0b\x32\x30\x30\x31\x3a\x64\x62\x38\x3a\x3a\x31\x94\x85\x94\x52\x94\x8c\x06\x72\x61\x77\x2d\x69\x64\x94\x65\x86\x94\x2e";
    const STATUS: &[u8] = b"\x80\x05\x95\x33\x00\x00\x00\x00\x00\x00\x00\x4b\x00\x5d\x94\x28\x8c\x0e\x4e\x75\x6d\x62\x65\x72\x20\x6f\x66\x20\x6a\x61\x69\x6c\x94\x4b\x02\x86\x94\x8c\x09\x4a\x61\x69\x6c\x20\x6c\x69\x73\x74\x94\x8c\x04\x61\x2c\x20\x62\x94\x86\x94\x65\x86\x94\x2e";

    #[test]
    fn decodes_fail2bans_answers() {
        let v = decode(BANNED).unwrap();
        let Value::List(ids) = v else { panic!("{v:?}") };
        let ids: Vec<_> = ids.iter().map(|i| as_str(i).unwrap()).collect();
        assert_eq!(ids, ["198.51.100.7", "2001:db8::1", "raw-id"]);
        assert_eq!(jail_list(&decode(STATUS).unwrap()).unwrap(), ["a", "b"]);
    }

    #[test]
    fn error_answers_are_errors() {
        let err = Value::Tuple(vec![
            Value::I64(1),
            Value::Tuple(vec![Value::String("nosuch".into())]),
        ]);
        let bytes = serde_pickle::value_to_vec(&err, SerOptions::new()).unwrap();
        assert_eq!(
            decode(&bytes).unwrap_err(),
            "fail2ban answered error 1: nosuch"
        );
        let bytes =
            serde_pickle::value_to_vec(&Value::String("ERROR: x".into()), SerOptions::new())
                .unwrap();
        assert!(decode(&bytes).unwrap_err().contains("ERROR: x"));
        assert!(decode(b"not a pickle").is_err());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn an_empty_jail_list() {
        let v = Value::List(vec![
            Value::Tuple(vec![Value::String("Number of jail".into()), Value::I64(0)]),
            Value::Tuple(vec![
                Value::String("Jail list".into()),
                Value::String("".into()),
            ]),
        ]);
        assert!(jail_list(&v).unwrap().is_empty());
    }

    #[test]
    fn a_server_that_never_answers_times_out_and_one_that_floods_is_cut() {
        let dir = std::env::temp_dir().join(format!("f2b-route-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // First: read and say nothing. Second: an endless answer.
            let (mut a, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = a.read(&mut buf);
            let (mut b, _) = listener.accept().unwrap();
            let _ = b.read(&mut buf);
            let chunk = vec![b'x'; 1 << 20];
            while b.write_all(&chunk).is_ok() {}
            drop(a);
        });
        let mut c = Client::connect(&path, Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        let e = c.command(&["ping"]).err().unwrap();
        assert!(e.to_string().contains("no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(c);
        let mut c = Client::connect(&path, Duration::from_secs(30)).unwrap();
        let e = c.command(&["ping"]).err().unwrap();
        assert!(e.to_string().contains("larger than"), "{e}");
        drop(c);
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = read(&path, None).err().unwrap();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    /// A socket another user could have put there, or that is another
    /// user's, is never spoken to.
    #[test]
    fn another_users_socket_is_refused() {
        if !nix::unistd::Uid::effective().is_root() {
            return; // chown needs root; tests/run runs this as root
        }
        let dir = std::env::temp_dir().join(format!("f2b-route-sock-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = Client::connect(&path, TIMEOUT).err().unwrap();
        let why = std::error::Error::source(&e).map(ToString::to_string);
        assert!(why.unwrap_or_default().contains("uid 65534"), "{e}");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Client::connect(&path, TIMEOUT).err().unwrap();
        assert!(matches!(e, Error::UntrustedSocket { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
